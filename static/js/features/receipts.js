// Read receipts UI: unread counts persisted on the server and shared by every tab and
// device of the user; "Seen by" under the room's newest message.
import { page } from "../chat.js";

const positions = new Map(); // room -> Map(user -> seq)
const pendingRead = new Map(); // room -> seq not yet sent
let timer = null;

function apply(room, seq) {
  if ((page.readSeq[room] || 0) < seq) page.readSeq[room] = seq;
  page.renderRooms();
}

// Tell the server (throttled); it tells this user's other tabs and devices.
document.addEventListener("chat:read", (e) => {
  pendingRead.set(e.detail.room, e.detail.seq);
  if (timer) return;
  timer = setTimeout(() => {
    timer = null;
    for (const [room, seq] of pendingRead) page.client.send({ type: "read", room, seq });
    pendingRead.clear();
  }, 300);
});

page.client.on("read", (e) => apply(e.room, e.seq));

function renderSeen() {
  const room = page.current();
  const seen = document.getElementById("seen");
  const last = [...page.messages.querySelectorAll("li[data-seq]")].map((li) => Number(li.dataset.seq) || 0);
  const newest = Math.max(0, ...last);
  const who = [...(positions.get(room) || new Map())]
    .filter(([user, seq]) => user !== page.config.user && seq >= newest && newest > 0)
    .map(([user]) => user)
    .sort();
  seen.textContent = who.length ? `Seen by ${who.join(", ")}` : "";
}

page.client.on("receipts", (e) => {
  positions.set(e.room, new Map(e.positions.map((p) => [p.user, p.seq])));
  renderSeen();
});
page.client.on("receipt", (e) => {
  if (!positions.has(e.room)) positions.set(e.room, new Map());
  const map = positions.get(e.room);
  map.set(e.user, Math.max(map.get(e.user) || 0, e.seq));
  renderSeen();
});
document.addEventListener("chat:message", renderSeen);
document.addEventListener("chat:room", renderSeen);

// Unread counts of every room from the server, at load and every 30 s.
async function refresh() {
  try {
    const response = await fetch("/api/receipts/", { credentials: "same-origin" });
    if (!response.ok) return;
    const { rooms } = await response.json();
    for (const [slug, r] of Object.entries(rooms)) {
      const room = page.rooms.get(slug);
      if (room) room.last_seq = Math.max(room.last_seq || 0, r.last_seq);
      page.readSeq[slug] = Math.max(page.readSeq[slug] || 0, r.read_seq);
    }
    page.renderRooms();
  } catch (e) { /* offline: next time */ }
}
refresh();
setInterval(refresh, 30000);
