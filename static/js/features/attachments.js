// Attachments UI: attach by the button, by drag-and-drop onto the room and by paste into
// the composer; pending files show as chips (remove with ✕) until the message is sent.
// Pictures in messages show as thumbnails that open full size in a lightbox; other files
// as a card with name and size. Names reach the DOM as textContent only.
import { page } from "../chat.js";

const composer = document.getElementById("composer");
const body = document.getElementById("body");
const room = composer.closest(".room");
// Pending uploads of the open room, in the order added: {key, name, size, state, id?, xhr?}.
let pending = [];
let nextKey = 1;
const MAX_PER_MESSAGE = 10;
// Icons as inline SVG paths (no emoji font is needed to see them).
const ICONS = {
  clip: "M16.5 6.5v10a4.5 4.5 0 0 1-9 0V5a3 3 0 0 1 6 0v10.5a1.5 1.5 0 0 1-3 0V6.5",
  file: "M14 3H7a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2V8zM14 3v5h5",
};

function icon(name, cls) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("class", cls);
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", ICONS[name]);
  svg.append(path);
  return svg;
}

// --- the composer: button, chips, drop and paste ------------------------------------

const input = page.el("input");
input.type = "file";
input.multiple = true;
input.hidden = true;
input.id = "attach-input";
const button = page.el("button", "attach");
button.append(icon("clip", "icon"));
button.type = "button";
button.id = "attach";
button.title = "Attach files";
button.setAttribute("aria-label", "Attach files");
button.addEventListener("click", () => input.click());
input.addEventListener("change", () => { addFiles(input.files); input.value = ""; });
composer.prepend(button, input);

const chips = page.el("ul", "attachment-chips");
chips.id = "attachment-chips";
chips.setAttribute("aria-label", "Files to send");
chips.hidden = true;
composer.before(chips);

body.addEventListener("paste", (e) => {
  const files = [...(e.clipboardData?.files || [])];
  if (!files.length) return;
  e.preventDefault();
  addFiles(files);
});
let dragDepth = 0;
room.addEventListener("dragenter", (e) => {
  if (!hasFiles(e)) return;
  e.preventDefault();
  dragDepth += 1;
  room.classList.add("dropping");
});
room.addEventListener("dragover", (e) => { if (hasFiles(e)) e.preventDefault(); });
room.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (!dragDepth) room.classList.remove("dropping");
});
room.addEventListener("drop", (e) => {
  if (!hasFiles(e)) return;
  e.preventDefault();
  dragDepth = 0;
  room.classList.remove("dropping");
  addFiles(e.dataTransfer.files);
});

function hasFiles(e) { return [...(e.dataTransfer?.types || [])].includes("Files"); }

export function sizeText(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === "csrftoken") return decodeURIComponent(rest.join("="));
  }
  return document.querySelector("input[name=csrfmiddlewaretoken]")?.value || "";
}

function addFiles(files) {
  const slug = page.current();
  if (!slug) return;
  for (const file of files) {
    if (pending.length >= MAX_PER_MESSAGE) { notify(`At most ${MAX_PER_MESSAGE} files per message.`); break; }
    const item = { key: nextKey++, name: file.name || "pasted file", size: file.size, state: "uploading", room: slug };
    pending.push(item);
    upload(item, file);
  }
  renderChips();
}

function upload(item, file) {
  const form = new FormData();
  form.append("file", file, item.name);
  const xhr = new XMLHttpRequest(); // XHR for its upload progress events
  item.xhr = xhr;
  xhr.open("POST", `/api/rooms/${encodeURIComponent(item.room)}/uploads/`);
  xhr.setRequestHeader("X-CSRFToken", csrfToken());
  xhr.responseType = "json";
  xhr.upload.addEventListener("progress", (e) => {
    if (e.lengthComputable) { item.progress = e.loaded / e.total; renderChips(); }
  });
  xhr.addEventListener("load", () => {
    const reply = xhr.response || {};
    if (xhr.status === 201) Object.assign(item, { state: "ready", id: reply.id, name: reply.name, size: reply.size,
      thumbnail_url: reply.thumbnail_url });
    else Object.assign(item, { state: "failed", error: reply.detail || `Upload failed (${xhr.status})` });
    renderChips();
  });
  xhr.addEventListener("error", () => { Object.assign(item, { state: "failed", error: "Upload failed" }); renderChips(); });
  xhr.send(form);
}

function remove(item) {
  if (item.xhr && item.state === "uploading") item.xhr.abort();
  pending = pending.filter((p) => p !== item);
  renderChips();
  body.focus();
}

function renderChips() {
  chips.replaceChildren();
  for (const item of pending) {
    const li = page.el("li", `chip ${item.state}`);
    li.dataset.state = item.state;
    if (item.thumbnail_url) {
      const img = page.el("img", "chip-thumb");
      img.src = item.thumbnail_url;
      img.alt = "";
      li.append(img);
    }
    li.append(page.el("span", "chip-name", item.name));
    const status = item.state === "uploading"
      ? `${Math.round((item.progress || 0) * 100)} %`
      : item.state === "failed" ? item.error : sizeText(item.size);
    li.append(page.el("span", "chip-size", status));
    if (item.state === "failed") li.title = item.error;
    const x = page.el("button", "chip-remove", "✕");
    x.type = "button";
    x.setAttribute("aria-label", `Remove ${item.name}`);
    x.addEventListener("click", () => remove(item));
    li.append(x);
    chips.append(li);
  }
  chips.hidden = pending.length === 0;
}

function notify(text) {
  const notice = document.getElementById("notice");
  notice.textContent = text;
  notice.hidden = !text;
}

// Sending: the composer asks the features for fields (chat.js's "chat:send").
document.addEventListener("chat:send", (e) => {
  const draft = e.detail;
  const mine = pending.filter((p) => p.room === draft.room);
  if (!mine.length) return;
  if (mine.some((p) => p.state === "uploading")) {
    draft.cancel = true;
    notify("Wait for the files to finish uploading.");
    return;
  }
  const ready = mine.filter((p) => p.state === "ready");
  if (!ready.length) return;
  draft.fields.attachments = ready.map((p) => p.id);
  if (!draft.body.trim()) draft.body = ready.map((p) => p.name).join(", ");
});
// The message left the composer (it is pending in the client): its files are no longer the composer's.
page.client.on("pending", (frame) => {
  if (!frame.attachments) return;
  const sent = new Set(frame.attachments);
  pending = pending.filter((p) => !(p.room === frame.room && sent.has(p.id)));
  renderChips();
});
document.addEventListener("chat:room", () => renderChips());

// --- messages: thumbnails, cards and the lightbox -------------------------------------

const lightbox = page.el("dialog", "lightbox");
lightbox.id = "lightbox";
lightbox.setAttribute("aria-label", "Picture");
const full = page.el("img", "lightbox-image");
const caption = page.el("p", "lightbox-caption");
const open = page.el("a", "lightbox-open", "Open in a new tab");
open.target = "_blank";
open.rel = "noopener";
const close = page.el("button", "lightbox-close", "✕");
close.type = "button";
close.setAttribute("aria-label", "Close");
close.addEventListener("click", () => lightbox.close());
lightbox.addEventListener("click", (e) => { if (e.target === lightbox) lightbox.close(); });
lightbox.append(close, full, caption, open);
document.body.append(lightbox);

function showFull(file) {
  full.src = file.url;
  full.alt = file.name;
  caption.textContent = `${file.name} · ${sizeText(file.size)}`;
  open.href = file.url;
  lightbox.showModal();
  close.focus();
}

function attachmentNode(file) {
  if (file.thumbnail_url) {
    const a = page.el("a", "attachment-image");
    a.href = file.url;
    a.target = "_blank";
    a.rel = "noopener";
    a.dataset.attachmentId = file.id;
    a.title = `${file.name} (${sizeText(file.size)})`;
    const img = page.el("img");
    img.src = file.thumbnail_url;
    img.alt = file.name;
    img.loading = "lazy";
    a.append(img);
    a.addEventListener("click", (e) => {
      if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return; // a new tab, as asked
      e.preventDefault();
      showFull(file);
    });
    return a;
  }
  const a = page.el("a", "attachment-file");
  a.href = file.url;
  a.download = file.name;
  a.dataset.attachmentId = file.id;
  a.append(icon("file", "attachment-icon"), page.el("span", "attachment-name", file.name),
    page.el("span", "attachment-size", sizeText(file.size)));
  a.setAttribute("aria-label", `Download ${file.name}, ${sizeText(file.size)}`);
  return a;
}

document.addEventListener("chat:message", (e) => {
  const { li, event } = e.detail;
  if (!event.attachments || !event.attachments.length || li.querySelector(".attachments")) return;
  const box = page.el("div", "attachments");
  for (const file of event.attachments) box.append(attachmentNode(file));
  li.querySelector(".body")?.after(box) ?? li.append(box);
});

page.client.on("attachment.removed", (e) => {
  if (e.room !== page.current()) return;
  page.messages.querySelector(`[data-attachment-id="${e.id}"]`)?.remove();
});
