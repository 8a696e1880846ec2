"""Direct messages, private rooms and the switcher in real headless Chromium against live Daphne.

Two or three people in separate browser contexts: alice messages bob from the presence
list and bob's list shows the conversation live; with bob's tab hidden and notifications
granted, her message raises a desktop notification; alice invites bob into a private
room and removes him, live; Ctrl+K finds a person. Screenshots (1280x800, 390x844) go to
var/screenshots/.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from tests.browser.login import submit_login
from tests.services import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = ROOT / "var" / "screenshots"

# Lets the test hide the tab: headless Chromium never changes document.hidden by itself.
HIDEABLE = """
window.__hidden = false;
Object.defineProperty(Document.prototype, "hidden", { get() { return window.__hidden; }, configurable: true });
Object.defineProperty(Document.prototype, "visibilityState",
  { get() { return window.__hidden ? "hidden" : "visible"; }, configurable: true });
"""


def log_in(browser: Any, server: Any, username: str, *, errors: list[str], notifications: bool = False) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    if notifications:
        context.grant_permissions(["notifications"], origin=server.url)
    context.add_init_script(HIDEABLE)
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(f"{username}: {exc}"))
    submit_login(page, server.url, username)
    page.wait_for_function("() => document.querySelector('#conn-status').dataset.state === 'connected'")
    return page


def shoot(page: Any, name: str) -> None:
    """Screenshots at the desktop and phone sizes; at the phone's, nothing may stick out sideways."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width, height in ((1280, 800), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(400)  # the drawers' transition
        with contextlib.suppress(OSError):
            page.screenshot(path=str(SHOTS / f"{name}-{width}x{height}.png"))
        assert page.evaluate("() => document.documentElement.scrollWidth") <= width, f"{name} scrolls sideways"
    page.set_viewport_size({"width": 1280, "height": 800})


def names_in(page: Any, selector: str) -> str:
    return page.eval_on_selector_all(selector, "els => els.map(e => e.textContent).join('|')")


@pytest.fixture
def people(make_user, lobby):
    make_user("alice", first_name="Alice", last_name="Liddell")
    make_user("bob")
    make_user("carol", first_name="Carol")


def test_a_dm_from_the_presence_list_appears_live_and_notifies_a_hidden_tab(browser, daphne, people):
    """alice messages bob from the presence list; bob's DM list shows it live; hidden, he gets a notification,
    and none once he muted the DM; permission is never asked on load."""
    errors: list[str] = []
    alice = log_in(browser, daphne, "alice", errors=errors)
    bob = log_in(browser, daphne, "bob", errors=errors, notifications=True)
    try:
        assert bob.locator("#notify-enable").count() == 0  # granted already: nothing to ask
        # Not granted: the page offers the control and has asked nothing on load.
        assert alice.evaluate("() => Notification.permission") == "default"
        assert alice.locator("#notify-enable").count() == 1
        alice.wait_for_selector("#presence li.person")
        alice.click("#presence li.person")
        alice.get_by_role("button", name="Message bob").click()
        alice.wait_for_function("() => new URLSearchParams(location.search).get('room')?.startsWith('dm-')")
        assert alice.inner_text("#room-title") == "bob"
        assert names_in(alice, "#dm-list .name") == "bob"
        bob.wait_for_function("() => document.querySelector('#dm-list .name')?.textContent === 'Alice Liddell'")
        assert names_in(bob, "#room-list .name") == "# Lobby"  # apart from the rooms
        bob.evaluate("() => { window.__hidden = true; document.dispatchEvent(new Event('visibilitychange')); }")
        alice.fill("#body", "lunch at noon?")
        alice.press("#body", "Enter")
        bob.wait_for_function("() => (window.chatNotifications || []).length === 1")
        note = bob.evaluate("() => window.chatNotifications[0]")
        assert note["title"] == "alice" and note["body"] == "lunch at noon?"
        bob.wait_for_function("() => document.querySelector('#dm-list .unread')?.textContent === '1'")
        assert bob.title().startswith("(1)")  # the title keeps the unread count
        bob.evaluate("() => { window.__hidden = false; document.dispatchEvent(new Event('visibilitychange')); }")
        bob.click("#dm-list a")
        bob.wait_for_function(
            "() => [...document.querySelectorAll('#messages .body')].some(b => b.textContent === 'lunch at noon?')")
        assert bob.inner_text("#room-title") == "Alice Liddell"
        bob.fill("#body", "yes, see you there")
        bob.press("#body", "Enter")
        alice.wait_for_function(
            "() => [...document.querySelectorAll('#messages .body')].some(b => b.textContent === 'yes, see you there')")
        assert alice.evaluate("() => (window.chatNotifications || []).length") == 0  # visible tab: no notification
        # Muted from the page (stored on the server): hidden again, a new message raises nothing.
        bob.get_by_role("button", name="Mute").click()
        bob.wait_for_selector("#dm-list a.muted")
        bob.evaluate("() => { window.__hidden = true; document.dispatchEvent(new Event('visibilitychange')); }")
        alice.fill("#body", "are you muted?")
        alice.press("#body", "Enter")
        bob.wait_for_function(
            "() => [...document.querySelectorAll('#messages .body')].some(b => b.textContent === 'are you muted?')")
        assert bob.evaluate("() => window.chatNotifications.length") == 1
        bob.evaluate("() => { window.__hidden = false; document.dispatchEvent(new Event('visibilitychange')); }")
        shoot(bob, "dm-conversation")
        assert errors == []
    finally:
        alice.context.close()
        bob.context.close()


def test_a_private_room_invite_and_removal_are_live_and_ctrl_k_finds_people(browser, daphne, people):
    """alice creates a private room, invites bob (his list gains it live), removes him (it goes); an author's
    name and Ctrl+K open DMs."""
    errors: list[str] = []
    alice = log_in(browser, daphne, "alice", errors=errors)
    bob = log_in(browser, daphne, "bob", errors=errors)
    try:
        alice.click(".new-room summary")
        alice.fill("#id_slug", "design")
        alice.fill("#id_title", "Design")
        alice.check("input[name=is_public][value=False]")
        alice.click(".new-room button[type=submit]")
        alice.wait_for_function("() => document.querySelector('#room-title').textContent === 'Design'")
        alice.get_by_role("button", name="Members").click()
        alice.fill(".members-panel input[name=user]", "bob")
        alice.click(".members-panel .invite button")
        alice.wait_for_selector(".members-panel li[data-user=bob]")
        bob.wait_for_function(
            "() => [...document.querySelectorAll('#room-list .name')].some(n => n.textContent === '# Design')")
        bob.click("#room-list a[data-room=design]")
        bob.wait_for_function("() => document.querySelector('#room-title').textContent === 'Design'")
        alice.fill("#body", "welcome to design")
        alice.press("#body", "Enter")
        bob.wait_for_function(
            "() => [...document.querySelectorAll('#messages .body')].some(b => b.textContent === 'welcome to design')")
        shoot(alice, "private-room-members")
        alice.get_by_role("button", name="Remove bob").click()
        bob.wait_for_function("() => !document.querySelector('#room-list a[data-room=design]')")
        bob.wait_for_function("() => document.querySelector('#notice').textContent.includes('removed')")
        alice.fill("#body", "after bob left")
        alice.press("#body", "Enter")
        alice.wait_for_function(
            "() => [...document.querySelectorAll('#messages .body')].some(b => b.textContent === 'after bob left')")
        assert "after bob left" not in bob.inner_text("#messages")
        # An author's name offers "Message" too.
        bob.click("#messages .author[data-user=alice]")
        bob.get_by_role("button", name="Message alice").click()
        bob.wait_for_function("() => document.querySelector('#room-title').textContent === 'Alice Liddell'")
        # The switcher: Ctrl+K, type, Enter opens the DM with the person found.
        bob.keyboard.press("Control+k")
        bob.wait_for_selector("dialog.switcher[open]")
        bob.keyboard.type("car")
        bob.wait_for_selector(".switcher-results li[data-kind=person][data-value=carol]")
        shoot(bob, "switcher")
        bob.click(".switcher-results li[data-value=carol]")
        bob.wait_for_function("() => document.querySelector('#room-title').textContent === 'Carol'")
        assert names_in(bob, "#dm-list .name") == "Alice Liddell|Carol"
        assert errors == []
    finally:
        alice.context.close()
        bob.context.close()
