// Ctrl/Cmd+K: a switcher that finds rooms (this page's list) and people (GET /api/people/)
// as you type. Arrow keys move, Enter opens (a person: their DM), Esc closes.
import { page } from "../chat.js";
import { openDm } from "./dm.js";

let dialog = null;
let input = null;
let list = null;
let items = [];
let active = 0;
let asked = 0; // the newest people query, so a slow answer never overwrites a newer one

function label(room) {
  if (room.kind === "dm") return (room.people || []).map((p) => p.name).join(", ") || room.title;
  return `# ${room.title || room.slug}`;
}

function build() {
  dialog = page.el("dialog", "switcher");
  dialog.setAttribute("aria-label", "Jump to a room or a person");
  input = page.el("input");
  input.type = "search";
  input.placeholder = "Jump to a room or a person…";
  input.setAttribute("aria-label", "Room or person");
  input.setAttribute("aria-controls", "switcher-results");
  input.autocomplete = "off";
  list = page.el("ul", "switcher-results");
  list.id = "switcher-results";
  list.setAttribute("role", "listbox");
  dialog.append(input, list);
  document.body.append(dialog);
  input.addEventListener("input", () => search(input.value));
  input.addEventListener("keydown", (e) => {
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      if (items.length) active = (active + (e.key === "ArrowDown" ? 1 : items.length - 1)) % items.length;
      render();
    } else if (e.key === "Enter") {
      e.preventDefault();
      if (items[active]) choose(items[active]);
    }
  });
  dialog.addEventListener("click", (e) => { if (e.target === dialog) dialog.close(); });
}

function render() {
  list.replaceChildren();
  items.forEach((item, i) => {
    const li = page.el("li", i === active ? "active" : "");
    li.setAttribute("role", "option");
    li.setAttribute("aria-selected", String(i === active));
    li.dataset.kind = item.kind;
    li.dataset.value = item.value;
    li.append(page.el("span", "name", item.text), page.el("span", "kind", item.kind === "person" ? "person" : "room"));
    li.addEventListener("click", () => choose(item));
    list.append(li);
  });
  if (!items.length) list.append(page.el("li", "none", "Nothing found"));
}

function roomsMatching(q) {
  const needle = q.trim().toLowerCase();
  return [...page.rooms.values()]
    .filter((r) => !needle || label(r).toLowerCase().includes(needle) || r.slug.includes(needle))
    .slice(0, 8)
    .map((r) => ({ kind: "room", value: r.slug, text: label(r) }));
}

async function search(q) {
  const mine = ++asked;
  items = roomsMatching(q);
  active = 0;
  render();
  if (!q.trim()) return;
  try {
    const response = await fetch(`/api/people/?q=${encodeURIComponent(q.trim())}`, { credentials: "same-origin" });
    if (!response.ok || mine !== asked) return;
    const { people } = await response.json();
    if (mine !== asked) return;
    items = items.concat(people.map((p) => ({
      kind: "person", value: p.user, text: p.name === p.user ? p.user : `${p.name} (${p.user})`,
    })));
    render();
  } catch (e) { /* offline: rooms only */ }
}

function choose(item) {
  dialog.close();
  if (item.kind === "room") page.openRoom(item.value);
  else openDm([item.value]);
}

export function openSwitcher() {
  if (!dialog) build();
  if (dialog.open) return;
  input.value = "";
  search("");
  dialog.showModal();
  input.focus();
}

// A visible way in for the mouse and the phone, at the top of the room list.
const opener = page.el("button", "switcher-open", "Jump to…");
opener.type = "button";
opener.title = "Find a room or a person (Ctrl+K)";
opener.addEventListener("click", openSwitcher);
const head = document.querySelector(".rooms .drawer-head");
if (head) head.after(opener); else document.querySelector(".rooms h2")?.before(opener);

document.addEventListener("keydown", (e) => {
  if ((e.ctrlKey || e.metaKey) && !e.altKey && e.key.toLowerCase() === "k") {
    e.preventDefault();
    openSwitcher();
  }
});
