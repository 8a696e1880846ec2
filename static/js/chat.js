// The chat page: room list with unread counts, messages, composer, presence, typing.
// All socket work is in realtime-client.js. User text is rendered with textContent only,
// except a message's `html`: the server rendered and sanitised it (chat/markup.py, nh3).

import { RealtimeClient } from "./realtime-client.js";
import { CloseCode, ErrorCode } from "./protocol-codes.js";
import { EdgeRouter } from "./edges.js";

const config = JSON.parse(document.getElementById("chat-config").textContent);
const $ = (id) => document.getElementById(id);
const els = {
  rooms: $("room-list"), title: $("room-title"), messages: $("messages"), presence: $("presence"),
  typing: $("typing"), composer: $("composer"), body: $("body"), conn: $("conn-status"),
  notice: $("notice"), older: $("older"), dms: $("dm-list"),
};

const READ_KEY = `chat.read.${config.user}`;
const readSeq = JSON.parse(localStorage.getItem(READ_KEY) || "{}");
const rooms = new Map(config.rooms.map((r) => [r.slug, { ...r }]));
let current = config.room;
let presence = new Set();
let typingTimers = new Map();
let baseTitle = document.title;

// ?encoding=json shows readable frames in DevTools; ?transport=longpoll forces the fallback.
const params = new URLSearchParams(window.location.search);
const edges = new EdgeRouter(); // the nearest regional edge; the page's own host locally
const client = new RealtimeClient({
  urlProvider: () => edges.url(),
  onGiveUpEdge: () => edges.giveUp(),
  pingMs: config.pingMs,
  encoding: params.get("encoding") || "msgpack",
  transport: params.get("transport") || "auto",
});

// --- rendering ------------------------------------------------------------------

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function timeOf(ts) {
  const d = ts ? new Date(ts) : new Date();
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function unread(slug) {
  const room = rooms.get(slug);
  return room ? Math.max(0, (room.last_seq || 0) - (readSeq[slug] || 0)) : 0;
}

// A DM is named by its other people (features/dm.js); a room by its title.
function roomLabel(room) {
  if (room.kind === "dm") return (room.people || []).map((p) => p.name).join(", ") || room.title;
  return `# ${room.title || room.slug}`;
}

function renderRooms() {
  // Re-rendering must not drop keyboard focus from the room list.
  const focused = document.activeElement?.closest?.("#room-list a, #dm-list a")?.dataset.room;
  els.rooms.replaceChildren();
  if (els.dms) els.dms.replaceChildren();
  let total = 0;
  for (const room of rooms.values()) {
    const li = el("li");
    const a = el("a", room.slug === current ? "active" : "");
    a.href = `?room=${encodeURIComponent(room.slug)}`;
    a.dataset.room = room.slug;
    if (room.muted) a.classList.add("muted");
    a.append(el("span", "name", roomLabel(room)));
    const n = room.slug === current ? 0 : unread(room.slug);
    if (!room.muted) total += n;
    if (n > 0) a.append(el("span", "unread", String(n)));
    if (room.mentioned && room.slug !== current) a.append(el("span", "mention-badge", "@"));
    a.addEventListener("click", (e) => { e.preventDefault(); openRoom(room.slug); });
    li.append(a);
    (room.kind === "dm" && els.dms ? els.dms : els.rooms).append(li);
    if (room.slug === focused) a.focus();
  }
  const own = document.hidden ? unread(current) : 0;
  const count = total + own;
  document.title = count > 0 ? `(${count}) ${baseTitle}` : baseTitle;
}

function markRead(slug, seq) {
  if (!slug || document.hidden) return;
  if ((readSeq[slug] || 0) < seq) {
    readSeq[slug] = seq;
    localStorage.setItem(READ_KEY, JSON.stringify(readSeq));
    document.dispatchEvent(new CustomEvent("chat:read", { detail: { room: slug, seq } }));
  }
}

function messageNode(event) {
  const li = el("li", "message");
  li.dataset.seq = event.seq ?? "";
  if (event.id) li.dataset.id = event.id;
  if (event.client_id) li.dataset.clientId = event.client_id;
  li.dataset.author = event.author || config.user;
  if (event.ts) li.dataset.ts = event.ts;
  const author = el("span", "author", event.author_name || event.author || config.user);
  author.dataset.user = li.dataset.author;
  li.append(el("span", "meta", timeOf(event.ts)), author);
  li.append(bodyNode(event));
  if (event.edited_ts) li.append(el("span", "edited", "(edited)"));
  return li;
}

function bodyNode(event) {
  // Server-rendered, nh3-sanitised HTML; a message without it (pending, older server) is text.
  if (!event.html) return el("span", "body", event.body);
  const body = el("div", "body html");
  body.innerHTML = event.html;
  return body;
}

function insertBySeq(node, seq) {
  // Keep the list in seq order whatever order events arrive in; pending ones stay last.
  for (const other of els.messages.children) {
    const s = Number(other.dataset.seq);
    if (other.dataset.seq !== "" && s > seq) { els.messages.insertBefore(node, other); return; }
    if (other.classList.contains("pending")) { els.messages.insertBefore(node, other); return; }
  }
  els.messages.append(node);
}

function showMessage(event) {
  if (event.room !== current) return;
  if (els.messages.querySelector(`li[data-seq="${event.seq}"]`)) return; // never twice
  const pending = event.client_id && els.messages.querySelector(`li.pending[data-client-id="${CSS.escape(event.client_id)}"]`);
  if (pending) pending.remove();
  const li = messageNode(event);
  insertBySeq(li, event.seq);
  document.dispatchEvent(new CustomEvent("chat:message", { detail: { li, event } }));
  if (nearBottom()) els.messages.scrollTop = els.messages.scrollHeight;
}

function nearBottom() {
  return els.messages.scrollHeight - els.messages.scrollTop - els.messages.clientHeight < 120;
}

function renderPresence() {
  els.presence.replaceChildren(...[...presence].sort().map((name) => el("li", "", name)));
}

function showNotice(text) {
  els.notice.textContent = text;
  els.notice.hidden = !text;
}

function renderConn({ state, rtt, delay, transport }) {
  els.conn.dataset.state = state;
  els.conn.dataset.transport = transport || "";
  let text = state;
  if (state === "connected") {
    text = rtt != null ? `connected (${rtt} ms)` : "connected";
    if (transport === "longpoll") text += " · long-polling";
  }
  if (state === "reconnecting" && delay != null) {
    const until = Date.now() + delay;
    const tick = () => {
      if (client.state !== "reconnecting") return;
      els.conn.textContent = `reconnecting in ${Math.max(0, Math.ceil((until - Date.now()) / 1000))} s`;
      if (Date.now() < until) setTimeout(tick, 250);
    };
    tick();
    return;
  }
  if (state === "connecting") text = "connecting…";
  els.conn.textContent = text;
}

// --- room switching -------------------------------------------------------------------

function openRoom(slug) {
  if (!slug) return;
  if (current && current !== slug) client.leave(current);
  current = slug;
  if (rooms.get(slug)) rooms.get(slug).mentioned = false;
  params.set("room", slug);
  history.replaceState(null, "", `?${params}`);
  els.messages.replaceChildren();
  presence = new Set();
  renderPresence();
  els.title.textContent = rooms.get(slug) ? roomLabel(rooms.get(slug)) : slug;
  els.older.hidden = true;
  showNotice("");
  client.join(slug);
  renderRooms();
  document.dispatchEvent(new CustomEvent("chat:room", { detail: { room: slug } }));
}

async function loadOlder() {
  const first = els.messages.querySelector("li[data-seq]:not([data-seq=''])");
  const before = first ? Number(first.dataset.seq) : undefined;
  const url = `/api/rooms/${encodeURIComponent(current)}/messages/` + (before ? `?before=${before}` : "");
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) return;
  const page = await response.json();
  for (const event of page.messages) if (event.type === "message") showMessage(event);
  els.older.hidden = !page.has_more;
  return page.has_more;
}

// --- client events ------------------------------------------------------------------

client.on("state", renderConn);
client.on("joined", (e) => {
  if (e.room !== current) return;
  if (e.reset) els.messages.replaceChildren();
  els.title.textContent = rooms.get(e.room)?.kind === "dm" ? roomLabel(rooms.get(e.room)) : (e.title || e.room);
  presence = new Set(e.presence);
  renderPresence();
  const room = rooms.get(e.room);
  if (room) room.last_seq = Math.max(room.last_seq || 0, e.seq);
  markRead(e.room, e.seq);
  renderRooms();
  // The older-page button appears once history is shown, if the room has more.
  setTimeout(() => {
    const first = els.messages.querySelector("li[data-seq]:not([data-seq=''])");
    els.older.hidden = !(first && Number(first.dataset.seq) > 1);
  }, 0);
});
client.on("message", (e) => {
  const room = rooms.get(e.room);
  if (room) room.last_seq = Math.max(room.last_seq || 0, e.seq);
  showMessage(e);
  if (e.room === current) markRead(e.room, e.seq);
  renderRooms();
  if (typingTimers.has(e.author)) clearTyping(e.author);
});
client.on("message.updated", (e) => {
  const li = els.messages.querySelector(`li[data-seq="${e.seq}"]`);
  if (!li || e.room !== current) return;
  li.querySelector(".body").replaceWith(bodyNode(e));
  if (!li.querySelector(".edited")) li.append(el("span", "edited", "(edited)"));
});
client.on("message.deleted", (e) => {
  if (e.room !== current) return;
  const li = els.messages.querySelector(`li[data-seq="${e.seq}"]`);
  if (li) li.remove();
});
client.on("pending", (frame) => {
  if (frame.room !== current) return;
  const li = messageNode({ ...frame, author: config.user });
  li.classList.add("pending");
  li.dataset.seq = "";
  li.title = "Sending…";
  els.messages.append(li);
  els.messages.scrollTop = els.messages.scrollHeight;
});
client.on("presence", (e) => {
  if (e.room !== current) return;
  for (const name of e.joined) presence.add(name);
  for (const name of e.left) presence.delete(name);
  renderPresence();
});
client.on("typing", (e) => {
  if (e.room !== current || e.user === config.user) return;
  clearTimeout(typingTimers.get(e.user));
  typingTimers.set(e.user, setTimeout(() => clearTyping(e.user), 4000));
  renderTyping();
});
client.on("removed", (e) => {
  if (e.room === current) showNotice(`You were removed from this room (${e.reason}).`);
  rooms.delete(e.room);
  renderRooms();
});
client.on("error", (e) => {
  if (e.client_id) {
    const li = els.messages.querySelector(`li.pending[data-client-id="${CSS.escape(e.client_id)}"]`);
    if (li && e.code !== ErrorCode.RATE_LIMITED && e.code !== ErrorCode.UNAVAILABLE) {
      li.classList.replace("pending", "failed");
      li.title = e.detail;
    }
  }
  showNotice(e.detail || e.code);
});
client.on("announcement", (e) => {
  const li = el("li", "announcement");
  li.dataset.announcement = e.id;
  li.append(el("span", "meta", timeOf(e.ts)), el("span", "author", "📣 Announcement"), el("span", "body", e.body));
  els.messages.append(li);
  els.messages.scrollTop = els.messages.scrollHeight;
});
client.on("mention", (e) => {
  const toast = el("div", "toast");
  toast.append(el("strong", "", `${e.author} mentioned you in #${e.room}: `), el("span", "body", e.body));
  toast.addEventListener("click", () => { openRoom(e.room); toast.remove(); });
  $("toasts").append(toast);
  setTimeout(() => toast.remove(), 15000);
  const room = rooms.get(e.room);
  if (room) room.mentioned = true;
  renderRooms();
});
client.on("disconnected", ({ code }) => {
  if (code === CloseCode.SESSION_ENDED) showNotice("Your session ended. Please log in again.");
  else if (code === CloseCode.FORBIDDEN) showNotice("Your account can no longer chat.");
  else if (code === CloseCode.TOO_MANY_CONNECTIONS) showNotice("Too many open tabs: close one and reload.");
});

function clearTyping(user) {
  clearTimeout(typingTimers.get(user));
  typingTimers.delete(user);
  renderTyping();
}

function renderTyping() {
  const names = [...typingTimers.keys()];
  els.typing.textContent = names.length ? `${names.join(", ")} ${names.length > 1 ? "are" : "is"} typing…` : "";
}

// --- composer ---------------------------------------------------------------------------

let lastTyping = 0;
els.body.addEventListener("input", () => {
  const now = Date.now();
  if (current && now - lastTyping > 2000 && els.body.value.trim()) {
    lastTyping = now;
    client.typing(current);
  }
});
els.body.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); els.composer.requestSubmit(); }
});
els.composer.addEventListener("submit", (e) => {
  e.preventDefault();
  // Feature scripts may add fields to the message or fill an empty body (attachments.js).
  const draft = { room: current, body: els.body.value, fields: {}, cancel: false };
  document.dispatchEvent(new CustomEvent("chat:send", { detail: draft }));
  const body = draft.body;
  if (draft.cancel || !current || !body.trim()) return;
  if (body.length > config.maxBody) { showNotice(`Messages are limited to ${config.maxBody} characters.`); return; }
  showNotice("");
  client.sendMessage(current, body, draft.fields);
  els.body.value = "";
});
els.older.addEventListener("click", loadOlder);
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && current) {
    markRead(current, rooms.get(current)?.last_seq || 0);
    renderRooms();
  }
});

// Unread counts of rooms not open: refreshed from the server every 30 s.
async function refreshRooms() {
  try {
    const response = await fetch("/api/rooms/", { credentials: "same-origin" });
    if (!response.ok) return;
    for (const r of (await response.json()).rooms) {
      const room = rooms.get(r.slug);
      if (room) room.last_seq = Math.max(room.last_seq || 0, r.last_seq);
      else rooms.set(r.slug, r);
    }
    renderRooms();
  } catch (e) { /* offline: try again later */ }
}
setInterval(refreshRooms, 30000);

// What feature scripts (realtime_features' `scripts`, loaded after this module) may use.
export const page = {
  client,
  config,
  rooms,
  readSeq,
  current: () => current,
  messages: els.messages,
  renderRooms,
  openRoom,
  messageNode: (seq) => els.messages.querySelector(`li[data-seq="${seq}"]`),
  el,
  openRoom, // search: open the room of a hit
  showMessage, // search: insert the messages around a hit, in seq order
  loadOlder,
  nearBottom,
};

window.chatClient = client; // for tests and debugging in DevTools

function start() {
  client.connect();
  if (current) openRoom(current);
  else { els.title.textContent = "No rooms yet: create one."; renderRooms(); }
}
// Connect once every module script (the features') has run and subscribed.
if (document.readyState === "complete") start();
else window.addEventListener("load", start, { once: true });
