// The colour theme: light, dark, or the system's (prefers-color-scheme), remembered per
// user in localStorage. base.html's inline script applies the stored choice before the
// first paint; this module keeps the header's select and <html data-theme> in step.

const root = document.documentElement;
const KEY = `chat.theme.${root.dataset.user || ""}`;
const CHOICES = ["system", "light", "dark"];

export function themeChoice() {
  const stored = localStorage.getItem(KEY);
  return CHOICES.includes(stored) ? stored : "system";
}

/** Apply and remember ``choice``: "light" or "dark" pin the theme, "system" follows the OS. */
export function themeSet(choice) {
  if (!CHOICES.includes(choice)) return;
  if (choice === "system") {
    localStorage.removeItem(KEY);
    delete root.dataset.theme;
  } else {
    localStorage.setItem(KEY, choice);
    root.dataset.theme = choice;
  }
  const select = document.getElementById("theme-select");
  if (select) select.value = choice;
}

const select = document.getElementById("theme-select");
if (select) {
  select.value = themeChoice();
  select.addEventListener("change", () => themeSet(select.value));
}
// Another tab of the same user changed the theme: follow it.
window.addEventListener("storage", (e) => { if (e.key === KEY) themeSet(themeChoice()); });
