// Reactions UI: a bar under each message; counts update live and arrive on (re)join.
import { page } from "../chat.js";

const PALETTE = ["👍", "❤️", "😂", "🎉", "😮", "😢"];
// message id -> Map(emoji -> {count, mine})
const state = new Map();

function counts(id) {
  if (!state.has(id)) state.set(id, new Map());
  return state.get(id);
}

function render(id) {
  const li = page.messages.querySelector(`li[data-id="${id}"]`);
  if (!li) return;
  let bar = li.querySelector(".reactions");
  if (!bar) {
    bar = page.el("span", "reactions");
    li.append(bar);
  }
  bar.replaceChildren();
  for (const [emoji, { count, mine }] of counts(id)) {
    if (count <= 0) continue;
    const button = page.el("button", mine ? "reaction mine" : "reaction", `${emoji} ${count}`);
    button.type = "button";
    button.dataset.emoji = emoji;
    button.title = mine ? "Remove your reaction" : "React";
    button.addEventListener("click", () => toggle(li, emoji));
    bar.append(button);
  }
  const add = page.el("button", "reaction add", "+");
  add.type = "button";
  add.title = "Add a reaction";
  add.addEventListener("click", () => openPalette(li, add));
  bar.append(add);
}

function toggle(li, emoji) {
  const id = Number(li.dataset.id);
  const entry = counts(id).get(emoji);
  const type = entry && entry.mine ? "unreact" : "react";
  page.client.send({ type, room: page.current(), id, emoji });
}

function openPalette(li, anchor) {
  const existing = li.querySelector(".palette");
  if (existing) { existing.remove(); return; }
  const palette = page.el("span", "palette");
  for (const emoji of PALETTE) {
    const b = page.el("button", "pick", emoji);
    b.type = "button";
    b.addEventListener("click", () => { palette.remove(); toggle(li, emoji); });
    palette.append(b);
  }
  anchor.after(palette);
}

document.addEventListener("chat:message", (e) => {
  if (e.detail.event.id) render(e.detail.event.id);
});

page.client.on("reactions", (e) => {
  if (e.room !== page.current()) return;
  for (const item of e.items) counts(item.id).set(item.emoji, { count: item.count, mine: item.mine });
  for (const id of new Set(e.items.map((i) => i.id))) render(id);
});

page.client.on("reaction", (e) => {
  if (e.room !== page.current()) return;
  const entry = counts(e.id).get(e.emoji) || { count: 0, mine: false };
  entry.count = e.count;
  if (e.user === page.config.user) entry.mine = e.action === "add";
  counts(e.id).set(e.emoji, entry);
  render(e.id);
});
