// Reading and writing a conversation: avatars, grouping, day separators, the "new messages"
// line, "jump to latest", replies, and editing or deleting in the page.
//
// Messages stay one <li> each (other features and tests count them): separators and the
// new-messages line are CSS pseudo-elements of the message they stand above, set from
// data attributes here whenever the list changes (a MutationObserver, so history pages,
// live messages and deletions are all covered without hooks in chat.js).
import { page } from "../chat.js";

const GROUP_MS = 5 * 60 * 1000;
const list = page.messages;
const me = page.config.user;
const moderates = new Set(page.config.moderates || []);
const sources = new Map(); // message id -> its body as typed (what Edit starts from)
const avatars = new Map([[me, page.config.avatar || null]]); // username -> picture url (null: initials)
let lastRead = 0; // the open room's read seq when it was opened
let joinedSeq = 0; // the room's latest seq at join: later messages were read live
let replyTo = null; // {seq, name, excerpt} of the message the composer quotes

const composer = document.getElementById("composer");
const input = document.getElementById("body");

// --- avatars -----------------------------------------------------------------------

function hue(name) {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return h % 360;
}

function initials(name) {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  if (!parts.length) return "?";
  const first = [...parts[0]][0];
  const last = parts.length > 1 ? [...parts[parts.length - 1]][0] : "";
  return (first + last).toUpperCase();
}

function avatarNode(username, name) {
  const node = page.el("span", "avatar");
  node.setAttribute("aria-hidden", "true");
  const url = avatars.get(username);
  if (url) {
    const img = document.createElement("img");
    img.src = url;
    img.alt = "";
    node.append(img);
  } else {
    node.textContent = initials(name || username);
    node.style.setProperty("--avatar-hue", String(hue(username)));
  }
  return node;
}

// A new picture of one's own: uploaded, then shown on one's messages at once.
const avatarForm = document.getElementById("avatar-form");
avatarForm?.addEventListener("change", async () => {
  const status = document.getElementById("avatar-status");
  const file = avatarForm.picture.files[0];
  if (!file) return;
  status.textContent = "Uploading…";
  const response = await fetch(avatarForm.action, {
    method: "POST", body: new FormData(avatarForm), credentials: "same-origin",
    headers: { "X-CSRFToken": avatarForm.csrfmiddlewaretoken.value },
  }).catch(() => null);
  const reply = response ? await response.json().catch(() => ({})) : {};
  if (!response || !response.ok) { status.textContent = reply.detail || "The upload failed."; return; }
  status.textContent = "Saved.";
  avatars.set(me, reply.avatar);
  for (const li of list.querySelectorAll("li.message")) {
    if (li.dataset.author === me) li.querySelector(":scope > .avatar")?.replaceWith(avatarNode(me, li.querySelector(".author")?.textContent));
  }
});

// --- grouping, day separators, the new-messages line -----------------------------------

const dayFormat = new Intl.DateTimeFormat([], { weekday: "long", month: "long", day: "numeric" });

function dayLabel(date) {
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (date.toDateString() === today.toDateString()) return "Today";
  if (date.toDateString() === yesterday.toDateString()) return "Yesterday";
  const label = dayFormat.format(date);
  return date.getFullYear() === today.getFullYear() ? label : `${label}, ${date.getFullYear()}`;
}

let scheduled = false;
function schedule() {
  if (scheduled) return;
  scheduled = true;
  queueMicrotask(decorate);
}

function decorate() {
  scheduled = false;
  let prev = null;
  let prevTime = 0;
  let prevDay = "";
  let unreadMarked = false;
  for (const li of list.children) {
    if (!li.classList.contains("message")) { prev = null; continue; } // an announcement ends a group
    const author = li.dataset.author || "";
    if (!li.querySelector(":scope > .avatar")) {
      li.prepend(avatarNode(author, li.querySelector(".author")?.textContent));
    }
    const when = li.dataset.ts ? new Date(li.dataset.ts) : new Date();
    const day = when.toDateString();
    if (day !== prevDay) li.dataset.day = dayLabel(when);
    else delete li.dataset.day;
    const grouped = prev !== null && day === prevDay && prev.dataset.author === author
      && when - prevTime < GROUP_MS && !li.querySelector(":scope > .quote");
    li.classList.toggle("grouped", grouped);
    const seq = Number(li.dataset.seq);
    const firstUnread = !unreadMarked && lastRead > 0 && li.dataset.seq !== "" && seq > lastRead
      && seq <= joinedSeq && author !== me;
    li.classList.toggle("first-unread", firstUnread);
    unreadMarked ||= firstUnread;
    prev = li;
    prevTime = when;
    prevDay = day;
  }
  jumpButton.hidden = page.nearBottom();
}

new MutationObserver(schedule).observe(list, { childList: true });

// --- jump to latest --------------------------------------------------------------------

const jumpButton = page.el("button", "jump-latest", "Jump to latest ↓");
jumpButton.type = "button";
jumpButton.hidden = true;
jumpButton.addEventListener("click", () => {
  list.scrollTop = list.scrollHeight;
  jumpButton.hidden = true;
  input.focus();
});
list.after(jumpButton);
list.addEventListener("scroll", () => { jumpButton.hidden = page.nearBottom(); }, { passive: true });

// --- message actions: reply, edit, delete ---------------------------------------------------

function mayDelete(li) {
  return li.dataset.author === me || moderates.has(page.current());
}

function actionButton(label, cls, onClick) {
  const button = page.el("button", `act ${cls}`, label);
  button.type = "button";
  button.addEventListener("click", onClick);
  return button;
}

function actionsNode(li) {
  const bar = page.el("span", "actions");
  bar.setAttribute("role", "group");
  bar.setAttribute("aria-label", "Message actions");
  bar.append(actionButton("Reply", "reply", () => startReply(li)));
  if (li.dataset.author === me) bar.append(actionButton("Edit", "edit", () => startEdit(li)));
  if (mayDelete(li)) {
    const del = actionButton("Delete", "delete", () => {
      if (!del.classList.contains("confirm")) {
        // A second click confirms (no window.confirm: a dialog would block the page and tests).
        del.classList.add("confirm");
        del.textContent = "Delete?";
        setTimeout(() => { del.classList.remove("confirm"); del.textContent = "Delete"; }, 4000);
        return;
      }
      page.client.remove(page.current(), Number(li.dataset.id));
    });
    bar.append(del);
  }
  return bar;
}

function quoteNode(quote) {
  const node = page.el("button", quote.deleted ? "quote deleted" : "quote");
  node.type = "button";
  node.dataset.seq = quote.seq;
  fillQuote(node, quote);
  node.addEventListener("click", () => jumpTo(Number(node.dataset.seq)));
  return node;
}

function fillQuote(node, quote) {
  node.replaceChildren();
  node.classList.toggle("deleted", !!quote.deleted);
  if (quote.deleted) {
    node.append(page.el("span", "quote-text", "Original message was deleted"));
    node.title = "The message this replied to was deleted";
  } else {
    node.append(page.el("span", "quote-author", quote.author_name || quote.author),
      page.el("span", "quote-text", quote.excerpt));
    node.title = "Show the original message";
  }
}

async function jumpTo(seq) {
  let target = page.messageNode(seq);
  // Load older pages until the original is on the list (or it turns out to be gone).
  for (let pages = 0; !target && pages < 100; pages++) {
    const first = list.querySelector("li[data-seq]:not([data-seq=''])");
    if (!first || Number(first.dataset.seq) < seq) break;
    const more = await page.loadOlder();
    target = page.messageNode(seq);
    if (!more || list.querySelector("li[data-seq]:not([data-seq=''])") === first) break;
  }
  if (!target) return;
  target.scrollIntoView({ block: "center" });
  target.classList.remove("flash");
  void target.offsetWidth; // restart the highlight animation
  target.classList.add("flash");
}

// --- replying ----------------------------------------------------------------------------

const replyBar = page.el("div", "replying");
replyBar.hidden = true;
composer.before(replyBar);

function startReply(li) {
  const text = (li.querySelector(".body")?.textContent || "").replace(/\s+/g, " ").trim();
  replyTo = { seq: Number(li.dataset.seq), name: li.querySelector(".author")?.textContent || li.dataset.author };
  const cancel = actionButton("×", "cancel-reply", cancelReply);
  cancel.setAttribute("aria-label", "Cancel reply");
  replyBar.replaceChildren(page.el("span", "label", "Replying to "), page.el("strong", "", replyTo.name),
    page.el("span", "quote-text", text.length > 80 ? `${text.slice(0, 79)}…` : text), cancel);
  replyBar.hidden = false;
  input.focus();
}

function cancelReply() {
  replyTo = null;
  replyBar.hidden = true;
  replyBar.replaceChildren();
}

// chat.js asks the features for the frame's fields when a message is sent (chat:send).
document.addEventListener("chat:send", ({ detail: draft }) => {
  if (!replyTo || draft.cancel || !draft.body.trim() || draft.room !== page.current()) return;
  draft.fields.reply_to = replyTo.seq;
  cancelReply();
});

// --- editing ---------------------------------------------------------------------------------

function startEdit(li) {
  if (li.querySelector(".editor")) { li.querySelector(".editor textarea").focus(); return; }
  const body = li.querySelector(".body");
  const form = page.el("form", "editor");
  const area = document.createElement("textarea");
  area.value = sources.get(li.dataset.id) ?? body.textContent;
  area.rows = Math.min(8, area.value.split("\n").length + 1);
  area.setAttribute("aria-label", "Edit message");
  area.maxLength = page.config.maxBody;
  const hint = page.el("span", "hint", "Enter to save · Esc to cancel");
  const cancel = actionButton("Cancel", "cancel", () => stopEdit(li));
  const save = page.el("button", "save", "Save");
  save.type = "submit";
  form.append(area, hint, cancel, save);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = area.value;
    if (text.trim() && text !== sources.get(li.dataset.id)) {
      page.client.edit(page.current(), Number(li.dataset.id), text);
    }
    stopEdit(li);
  });
  area.addEventListener("keydown", (e) => {
    if (e.key === "Escape") { e.preventDefault(); stopEdit(li); }
    else if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
  });
  body.hidden = true;
  li.classList.add("editing");
  body.after(form);
  area.focus();
  area.setSelectionRange(area.value.length, area.value.length);
}

function stopEdit(li) {
  li.querySelector(".editor")?.remove();
  li.classList.remove("editing");
  const body = li.querySelector(".body");
  if (body) body.hidden = false;
  input.focus();
}

input.addEventListener("keydown", (e) => {
  if (e.key === "ArrowUp" && !input.value && !e.shiftKey && !e.altKey && !e.ctrlKey && !e.metaKey) {
    const mine = [...list.querySelectorAll(`li.message[data-id]`)].filter((li) => li.dataset.author === me);
    if (mine.length) { e.preventDefault(); startEdit(mine[mine.length - 1]); }
  } else if (e.key === "Escape" && replyTo) {
    cancelReply();
  }
});

// --- events ----------------------------------------------------------------------------------

document.addEventListener("chat:message", ({ detail: { li, event } }) => {
  if (event.id) sources.set(String(event.id), event.body);
  // (A socket keeps the URL it first read: one's own fresh upload is not undone by it.)
  if (event.author && "avatar" in event && (event.author !== me || event.avatar)) avatars.set(event.author, event.avatar);
  for (const mention of li.querySelectorAll(".body .mention")) {
    if (mention.textContent === `@${me}`) mention.classList.add("me");
  }
  if (event.reply_to) li.append(quoteNode(event.reply_to));
  li.append(actionsNode(li));
});

document.addEventListener("chat:room", (e) => {
  lastRead = page.readSeq[e.detail.room] || 0;
  joinedSeq = 0;
  cancelReply();
});

page.client.on("joined", (e) => {
  if (e.room !== page.current()) return;
  if (!joinedSeq || e.reset) joinedSeq = e.seq; // a rejoin after a reconnect keeps the line where it was
  schedule();
});

page.client.on("message.updated", (e) => {
  if (e.room !== page.current()) return;
  sources.set(String(e.id), e.body);
  const li = page.messageNode(e.seq);
  if (li && li.querySelector(".editor")) li.querySelector(".body").hidden = true;
});

page.client.on("message.deleted", (e) => {
  if (e.room !== page.current()) return;
  for (const node of list.querySelectorAll(`.quote[data-seq="${e.seq}"]`)) fillQuote(node, { deleted: true });
});

page.client.on("membership", (e) => {
  const was = moderates.has(e.room);
  if (e.role === "moderator") moderates.add(e.room);
  else moderates.delete(e.room);
  if (was === moderates.has(e.room) || e.room !== page.current()) return;
  for (const li of list.querySelectorAll("li.message[data-id]")) li.querySelector(".actions")?.replaceWith(actionsNode(li));
});
