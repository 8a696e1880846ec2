// Search: the box in the room header, a results panel over the messages, and the jump to a hit.
// The highlight is HTML the server built (escaped text, <mark> around matches); all else is textContent.
import { page } from "../chat.js";

const form = document.getElementById("search");
const input = document.getElementById("search-q");
const panel = document.getElementById("search-results");
let query = "";

function close() {
  panel.hidden = true;
  panel.replaceChildren();
}

function when(ts) {
  const d = new Date(ts);
  const sameDay = d.toDateString() === new Date().toDateString();
  return sameDay ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : d.toLocaleDateString([], { month: "short", day: "numeric" });
}

function header(text) {
  const head = page.el("div", "search-head");
  const title = page.el("h2", "", text);
  title.id = "search-title";
  const shut = page.el("button", "search-close", "×");
  shut.type = "button";
  shut.title = "Close search (Esc)";
  shut.setAttribute("aria-label", "Close search");
  shut.addEventListener("click", () => { close(); input.focus(); });
  head.append(title, shut);
  return head;
}

function hitNode(hit) {
  const li = page.el("li", "search-hit");
  const button = page.el("button", "search-open");
  button.type = "button";
  button.dataset.room = hit.room;
  button.dataset.seq = hit.seq;
  const meta = page.el("span", "search-meta");
  meta.append(page.el("span", "search-room", `# ${page.rooms.get(hit.room)?.title || hit.room}`),
    page.el("span", "author", hit.author), page.el("time", "meta", when(hit.ts)));
  const text = page.el("span", "search-text");
  text.innerHTML = hit.highlight; // server-built: escaped text and <mark> only
  button.append(meta, text);
  button.addEventListener("click", () => jump(hit.room, hit.seq));
  li.append(button);
  return li;
}

async function run(before) {
  const params = new URLSearchParams({ q: query });
  if (before) params.set("before", before);
  let response;
  try {
    response = await fetch(`/api/search/?${params}`, { credentials: "same-origin" });
  } catch (e) {
    return { error: "Search is unavailable: check the connection." };
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) return { error: body.detail || `Search failed (${response.status}).` };
  return body;
}

function renderPage(list, result) {
  panel.querySelector(".search-more")?.remove();
  for (const hit of result.results) list.append(hitNode(hit));
  if (result.next_before) {
    const more = page.el("button", "search-more", "More results");
    more.type = "button";
    more.addEventListener("click", async () => {
      more.disabled = true;
      const next = await run(result.next_before);
      if (next.error) { more.textContent = next.error; return; }
      renderPage(list, next);
    });
    panel.append(more);
  }
}

async function search(text) {
  query = text.trim();
  if (!query) { close(); return; }
  panel.style.top = `${document.querySelector(".room-header").offsetHeight}px`; // just below the header
  panel.hidden = false;
  panel.replaceChildren(header(`Searching for “${query}”…`));
  const result = await run();
  if (query !== text.trim()) return; // a newer search started meanwhile
  if (result.error) {
    panel.replaceChildren(header(`Search for “${query}”`), page.el("p", "search-empty", result.error));
    return;
  }
  const count = result.results.length;
  const label = count === 0 ? `No messages match “${query}”`
    : `${result.next_before ? `${count}+` : count} result${count === 1 ? "" : "s"} for “${query}”`;
  const list = page.el("ol", "search-list");
  list.setAttribute("aria-labelledby", "search-title");
  panel.replaceChildren(header(label), list);
  renderPage(list, result);
}

function joinedOnce(room) {
  return new Promise((resolve) => {
    const onJoined = (e) => {
      if (e.detail.room !== room) return;
      page.client.removeEventListener("joined", onJoined);
      setTimeout(resolve, 0); // after the join's own history is shown
    };
    page.client.addEventListener("joined", onJoined);
  });
}

async function jump(room, seq) {
  close();
  if (room !== page.current()) {
    const joined = joinedOnce(room);
    page.openRoom(room);
    await joined;
  }
  const response = await fetch(`/api/rooms/${encodeURIComponent(room)}/messages/?around=${seq}&limit=30`,
    { credentials: "same-origin" });
  if (!response.ok || room !== page.current()) return;
  for (const event of (await response.json()).messages) if (event.type === "message") page.showMessage(event);
  const li = page.messageNode(seq);
  if (!li) return;
  li.scrollIntoView({ block: "center" });
  li.classList.add("jumped");
  li.tabIndex = -1;
  li.focus({ preventScroll: true });
  setTimeout(() => li.classList.remove("jumped"), 3000);
}

form.addEventListener("submit", (e) => { e.preventDefault(); search(input.value); });
input.addEventListener("search", () => { if (!input.value) close(); }); // the field's clear (×) button
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && !panel.hidden) { close(); input.focus(); }
  // "/" focuses the search box, as in Slack and GitHub, unless one is typing.
  if (e.key === "/" && !/^(INPUT|TEXTAREA)$/.test(document.activeElement?.tagName || "")) {
    e.preventDefault();
    input.focus();
  }
});
document.addEventListener("chat:room", () => { if (!panel.hidden) close(); });
