// Desktop notifications: while the tab is hidden, a mention or a direct message raises one
// (not for a room the user muted). Permission is asked only when the user clicks
// "Enable notifications", never on page load. The title's unread count is chat.js's.
import { page } from "../chat.js";

const supported = "Notification" in window;
const shown = new Set(); // message ids already notified (a mention in a DM arrives twice)

function control() {
  let button = document.getElementById("notify-enable");
  if (!supported || Notification.permission !== "default") {
    if (button) button.remove();
    return;
  }
  if (button) return;
  button = page.el("button", "notify-enable", "Enable notifications");
  button.id = "notify-enable";
  button.type = "button";
  button.addEventListener("click", async () => {
    await Notification.requestPermission();
    control();
  });
  (document.querySelector(".rooms .drawer-head") || document.querySelector(".rooms h2"))?.after(button);
}

function raise(event, title) {
  if (!supported || Notification.permission !== "granted" || !document.hidden) return;
  if (page.rooms.get(event.room)?.muted || shown.has(event.id)) return;
  shown.add(event.id);
  // The body is the message's plain text; the Notification API never renders HTML.
  const note = new Notification(title, { body: event.body, tag: `message:${event.id}` });
  note.addEventListener("click", () => { window.focus(); page.openRoom(event.room); note.close(); });
  (window.chatNotifications ||= []).push({ title, body: event.body, room: event.room }); // for tests and DevTools
}

page.client.on("mention", (e) => raise(e, `${e.author} mentioned you`));
page.client.on("dm", (e) => raise(e, `${e.author}`));
control();
