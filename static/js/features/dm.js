// Direct messages and private rooms in the page: a "Message" action on people (presence
// list, authors' names), DMs listed apart with unread counts, live room-list changes
// (room.added / room.removed / room.muted / dm), the per-user mute and, in private
// rooms, the members panel (invite and remove). User text reaches the DOM as textContent.
import { page } from "../chat.js";

const $ = (id) => document.getElementById(id);
const csrf = () => document.querySelector("input[name=csrfmiddlewaretoken]")?.value || "";

async function api(method, url, body) {
  const response = await fetch(url, {
    method,
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrf() },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = response.status === 204 ? {} : await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.detail || data.error || `HTTP ${response.status}`);
  return data;
}

function notice(text) {
  const box = $("notice");
  box.textContent = text;
  box.hidden = !text;
}

function upsert(entry) {
  const known = page.rooms.get(entry.slug);
  page.rooms.set(entry.slug, known ? { ...known, ...entry, last_seq: Math.max(known.last_seq || 0, entry.last_seq || 0) } : { ...entry });
}

/** Open (or create) the DM with these usernames and switch to it. */
export async function openDm(users) {
  try {
    const data = await api("POST", "/api/dm/", { users });
    upsert(data.entry);
    page.renderRooms();
    page.openRoom(data.room);
  } catch (err) {
    notice(`Could not open the conversation: ${err.message}`);
  }
}

// --- "Message" on people -------------------------------------------------------------

function messageButton(user) {
  const button = page.el("button", "dm-action", "Message");
  button.type = "button";
  button.dataset.user = user;
  button.setAttribute("aria-label", `Message ${user}`);
  button.addEventListener("click", (e) => { e.stopPropagation(); closeMenu(); openDm([user]); });
  return button;
}

// A person's name (an author in the messages, an entry of the presence list) opens a
// small menu with "Message". Delegated, since chat.js redraws both; the menu goes after
// the name's list, so the entries' own text stays the name alone.
let menu = null;
function closeMenu() { if (menu) { menu.remove(); menu = null; } }

function showMenu(user, after) {
  closeMenu();
  menu = page.el("div", "person-menu");
  menu.setAttribute("role", "menu");
  menu.append(page.el("span", "who", user), messageButton(user));
  after.after(menu);
  menu.querySelector("button").focus();
}

page.messages.addEventListener("click", (e) => {
  const author = e.target.closest(".author[data-user]");
  if (author && author.dataset.user !== page.config.user) showMenu(author.dataset.user, author);
});

const presenceList = $("presence");
function decoratePresence() {
  for (const li of presenceList.children) {
    if (li.tabIndex === 0 || li.textContent === page.config.user) continue;
    li.tabIndex = 0;
    li.classList.add("person");
    li.title = `Message ${li.textContent}`;
  }
}
new MutationObserver(decoratePresence).observe(presenceList, { childList: true });
presenceList.addEventListener("click", (e) => {
  const li = e.target.closest("li.person");
  if (li) showMenu(li.textContent, presenceList);
});
presenceList.addEventListener("keydown", (e) => {
  const li = e.target.closest("li.person");
  if (li && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); showMenu(li.textContent, presenceList); }
});
document.addEventListener("click", (e) => {
  if (menu && !menu.contains(e.target) && !e.target.closest(".author, #presence li")) closeMenu();
});
document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeMenu(); });

// --- live room-list changes ------------------------------------------------------------

page.client.on("room.added", (e) => { upsert(e.entry); page.renderRooms(); });
page.client.on("room.removed", (e) => {
  page.rooms.delete(e.room);
  if (e.room === page.current()) notice("You were removed from this room.");
  page.renderRooms();
});
page.client.on("room.muted", (e) => {
  const room = page.rooms.get(e.room);
  if (room) room.muted = e.muted;
  page.renderRooms();
  renderTools();
});
page.client.on("dm", (e) => {
  const room = page.rooms.get(e.room);
  if (room) room.last_seq = Math.max(room.last_seq || 0, e.seq);
  else refreshOne();
  page.renderRooms();
});

async function refreshOne() {
  // A DM this page has not heard of (opened while it was offline): reload the list.
  const response = await fetch("/api/rooms/", { credentials: "same-origin" });
  if (!response.ok) return;
  for (const entry of (await response.json()).rooms) if (!page.rooms.has(entry.slug)) upsert(entry);
  page.renderRooms();
}

// --- the room header: mute, members -----------------------------------------------------

const tools = $("room-tools");

function renderTools() {
  const room = page.rooms.get(page.current());
  tools.replaceChildren();
  if (!room) return;
  const mute = page.el("button", "tool mute", room.muted ? "Unmute" : "Mute");
  mute.type = "button";
  mute.title = room.muted ? "Notifications from this room are off" : "Turn off notifications from this room";
  mute.setAttribute("aria-pressed", String(Boolean(room.muted)));
  mute.addEventListener("click", async () => {
    try {
      const data = await api("POST", `/api/rooms/${encodeURIComponent(room.slug)}/mute/`, { muted: !room.muted });
      room.muted = data.muted;
      page.renderRooms();
      renderTools();
    } catch (err) { notice(err.message); }
  });
  tools.append(mute);
  if (!room.public && room.kind !== "dm") {
    const members = page.el("button", "tool members", "Members");
    members.type = "button";
    members.setAttribute("aria-expanded", "false");
    members.addEventListener("click", () => toggleMembers(room, members));
    tools.append(members);
  }
}

let panel = null;

async function toggleMembers(room, button) {
  if (panel) { panel.remove(); panel = null; button.setAttribute("aria-expanded", "false"); return; }
  panel = page.el("section", "members-panel");
  panel.setAttribute("aria-label", "Members");
  button.setAttribute("aria-expanded", "true");
  document.querySelector(".room-header").after(panel);
  await renderMembers(room);
}

async function renderMembers(room) {
  if (!panel) return;
  let data;
  try {
    data = await api("GET", `/api/rooms/${encodeURIComponent(room.slug)}/members/`);
  } catch (err) { panel.replaceChildren(page.el("p", "err", err.message)); return; }
  const manager = data.role === "owner" || data.role === "moderator";
  const list = page.el("ul", "members");
  for (const m of data.members) {
    const li = page.el("li");
    li.dataset.user = m.user;
    li.append(page.el("span", "name", m.name), page.el("span", "role", m.role === "member" ? "" : m.role));
    const removable = manager && m.user !== page.config.user && m.role !== "owner" && (data.role === "owner" || m.role === "member");
    if (removable) {
      const remove = page.el("button", "remove", "Remove");
      remove.type = "button";
      remove.setAttribute("aria-label", `Remove ${m.user}`);
      remove.addEventListener("click", async () => {
        try {
          await api("DELETE", `/api/rooms/${encodeURIComponent(room.slug)}/members/${encodeURIComponent(m.user)}/`);
          await renderMembers(room);
        } catch (err) { notice(err.message); }
      });
      li.append(remove);
    }
    list.append(li);
  }
  panel.replaceChildren(page.el("h2", "", "Members"), list);
  if (manager) {
    const form = page.el("form", "invite");
    const input = page.el("input");
    input.name = "user";
    input.placeholder = "Invite by username";
    input.setAttribute("aria-label", "Username to invite");
    input.autocomplete = "off";
    const submit = page.el("button", "", "Invite");
    submit.type = "submit";
    form.append(input, submit);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const user = input.value.trim();
      if (!user) return;
      try {
        await api("POST", `/api/rooms/${encodeURIComponent(room.slug)}/members/`, { user });
        notice("");
        await renderMembers(room);
      } catch (err) { notice(`Could not invite ${user}: ${err.message}`); }
    });
    panel.append(form);
  }
}

document.addEventListener("chat:room", () => {
  if (panel) { panel.remove(); panel = null; }
  renderTools();
});
renderTools();
