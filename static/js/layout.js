// The chat page's layout on a phone: the rooms and people panels are drawers opened from
// the room header (Esc or a click on the overlay closes them, focus moves into the drawer
// and back to its button), and the on-screen keyboard's height is kept in --kb-inset so
// site.css can keep the composer above it. On a wide screen the panels are plain columns.

const root = document.documentElement;
const narrow = window.matchMedia("(max-width: 760px)");
const overlay = document.getElementById("drawer-overlay");
const FOCUSABLE = "a[href], button:not([disabled]), input, select, textarea, summary, [tabindex]:not([tabindex='-1'])";

const drawers = [
  { panel: document.getElementById("rooms-panel"), button: document.getElementById("open-rooms") },
  { panel: document.getElementById("people-panel"), button: document.getElementById("open-people") },
];
let open = null; // the open drawer, if any
// While a drawer is open, the rest of the page is inert: Tab stays in the drawer.
const outside = () => [document.querySelector(".site-header"), document.querySelector(".skip-link"),
  document.querySelector(".room"), ...drawers.map((d) => d.panel)].filter((node) => node && node !== open?.panel);

function setInert(on) {
  for (const node of outside()) node.inert = on;
}

export function drawerOpen(drawer) {
  if (!narrow.matches || !drawer.panel) return;
  if (open) drawerClose({ restoreFocus: false });
  open = drawer;
  drawer.panel.classList.add("open");
  drawer.button.setAttribute("aria-expanded", "true");
  overlay.hidden = false;
  setInert(true);
  const target = drawer.panel.querySelector("a.active") || drawer.panel.querySelector(FOCUSABLE);
  target?.focus();
}

export function drawerClose({ restoreFocus = true } = {}) {
  if (!open) return;
  const { panel, button } = open;
  setInert(false);
  open = null;
  panel.classList.remove("open");
  button.setAttribute("aria-expanded", "false");
  overlay.hidden = true;
  if (restoreFocus) button.focus();
}

for (const drawer of drawers) {
  drawer.button?.addEventListener("click", () => (open === drawer ? drawerClose() : drawerOpen(drawer)));
  for (const close of drawer.panel?.querySelectorAll("[data-drawer-close]") || []) {
    close.addEventListener("click", () => drawerClose());
  }
}
overlay?.addEventListener("click", () => drawerClose());
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && open) { e.preventDefault(); drawerClose(); }
});
// Picking a room in the drawer shows it; growing the window past the phone layout closes any drawer.
document.addEventListener("chat:room", () => drawerClose());
narrow.addEventListener("change", () => { if (!narrow.matches) drawerClose({ restoreFocus: false }); });

// The on-screen keyboard shrinks the visual viewport, not the layout viewport: the
// difference is the height the keyboard covers at the bottom of the page.
function keyboardInset() {
  const vv = window.visualViewport;
  if (!vv) return;
  const inset = Math.max(0, Math.round(window.innerHeight - vv.height - vv.offsetTop));
  root.style.setProperty("--kb-inset", `${inset}px`);
}
window.visualViewport?.addEventListener("resize", keyboardInset);
window.visualViewport?.addEventListener("scroll", keyboardInset);
keyboardInset();

// On the phone the room list is out of sight: its button shows when another room has
// unread messages or a mention (the badges chat.js renders into the list).
const roomList = document.getElementById("room-list");
const roomsButton = document.getElementById("open-rooms");
function unreadMark() {
  const n = roomList.querySelectorAll(".unread, .mention-badge").length;
  roomsButton.toggleAttribute("data-unread", n > 0);
  roomsButton.setAttribute("aria-label", n > 0 ? "Rooms (unread messages)" : "Rooms");
}
if (roomList && roomsButton) {
  new MutationObserver(unreadMark).observe(roomList, { childList: true, subtree: true });
  unreadMark();
}
