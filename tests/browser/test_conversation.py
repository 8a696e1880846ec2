"""Reading and writing a conversation in real Chromium against a live Daphne, with two users.

Formatting (server-rendered, sanitised HTML), replies and the jump to the original,
editing and deleting from the message menu and the keyboard, live in the other tab,
grouping, day separators; and every hostile body of the sanitiser's suite stays inert.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from tests.browser.login import submit_login
from tests.chat.test_markup import HOSTILE

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
BODIES = "[...document.querySelectorAll('#messages li.message .body')].map(b => b.textContent.trim())"


def log_in(browser: Any, server: Any, username: str, viewport: dict[str, int] = DESKTOP, **extra: Any) -> Any:
    """A fresh browser context logged in as ``username``, its chat connected; dialogs are recorded."""
    context = browser.new_context(viewport=viewport, timezone_id="UTC", **extra)
    page = context.new_page()
    page.dialogs = []
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    submit_login(page, server.url, username)
    page.wait_for_function("() => document.querySelector('#conn-status').dataset.state === 'connected'")
    return page


def off_loop(setup: Callable[[], Any]) -> Any:
    """Run database set-up in a thread of its own: Playwright's loop in this one would make the
    services' after-commit broadcasts refuse to run (they are sync code), and log it."""
    from django.db import connection

    def run() -> Any:
        try:
            return setup()
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


def wait_bodies(page: Any, expected: list[str]) -> None:
    page.wait_for_function(f"(want) => JSON.stringify({BODIES}) === JSON.stringify(want)", arg=expected)


def li(page: Any, text: str) -> Any:
    """The message whose body is ``text``."""
    return page.locator("#messages li.message", has=page.locator(".body", has_text=text))


def portrait() -> bytes:
    """A small PNG to upload as a profile picture (a disc on a colour)."""
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (240, 180), "#f59e0b")
    ImageDraw.Draw(image).ellipse((70, 40, 170, 140), fill="#7c3aed")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def save_screenshot(page: Any, name: str) -> None:
    """Write a screenshot for the README; an unwritable docs/ is not a test failure."""
    png = page.screenshot()
    with contextlib.suppress(OSError):
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        (DOCS_IMG / name).write_bytes(png)


@pytest.fixture
def users(make_user, lobby):
    from chat import services

    alice = make_user("alice", first_name="Alice", last_name="Liddell")
    bob = make_user("bob")
    for user in (alice, bob):
        services.room_enter(slug="lobby", user=user)
    return alice, bob


def test_edit_delete_and_reply_from_the_page_reach_the_other_tab(browser, daphne, users):
    """Own messages: Up arrow edits the last one, Esc cancels, Edit/Delete in the menu; bob sees it all live.

    A reply quotes its original; deleting the original turns the quote into a tombstone in both tabs.
    Bob, not a moderator, has no Edit or Delete on alice's messages.
    """
    alice = log_in(browser, daphne, "alice")
    bob = log_in(browser, daphne, "bob")
    try:
        alice.fill("#body", "helo **world**")
        alice.press("#body", "Enter")
        wait_bodies(bob, ["helo world"])
        assert bob.locator("#messages li.message .body strong").inner_text() == "world"
        assert bob.locator("#messages .author").first.inner_text() == "Alice Liddell"
        # Up arrow in the empty composer edits the last own message; Esc cancels, nothing is sent.
        alice.focus("#body")
        alice.keyboard.press("ArrowUp")
        alice.wait_for_selector("#messages .editor textarea:focus")
        alice.keyboard.type(" never sent")
        alice.keyboard.press("Escape")
        assert alice.locator("#messages .editor").count() == 0
        assert alice.evaluate("() => document.activeElement.id") == "body"
        alice.keyboard.press("ArrowUp")
        editor = alice.locator("#messages .editor textarea")
        assert editor.input_value() == "helo **world**"  # the source, not the rendered text
        editor.fill("hello **world**")
        editor.press("Enter")
        for page in (alice, bob):
            wait_bodies(page, ["hello world"])
            page.wait_for_selector("#messages li.message .edited")
        # Bob replies through the menu, with the keyboard: Tab reaches the menu's buttons.
        first = li(bob, "hello world")
        assert first.locator(".act.edit").count() == 0 and first.locator(".act.delete").count() == 0
        first.locator(".act.reply").focus()
        assert first.locator(".actions").evaluate("n => getComputedStyle(n).opacity") == "1"
        bob.keyboard.press("Enter")
        assert " ".join(bob.inner_text(".replying").split()).startswith("Replying to Alice Liddell hello world")
        bob.keyboard.type("agreed")
        bob.keyboard.press("Enter")
        for page in (alice, bob):
            wait_bodies(page, ["hello world", "agreed"])
            quote = li(page, "agreed").locator(".quote")
            assert " ".join(quote.inner_text().split()) == "Alice Liddell hello world"
        assert bob.locator(".replying").is_hidden()
        # Alice deletes her message from the menu (a second click confirms): gone in both tabs,
        # and bob's reply now quotes a deleted message.
        target = li(alice, "hello world")
        target.hover()
        target.locator(".act.delete").click()
        target.locator(".act.delete.confirm").click()
        for page in (alice, bob):
            wait_bodies(page, ["agreed"])
            page.wait_for_selector("#messages .quote.deleted")
            assert page.inner_text("#messages .quote") == "Original message was deleted"
        assert alice.dialogs == [] and bob.dialogs == []
    finally:
        alice.context.close()
        bob.context.close()


def test_moderator_deletes_anyone_and_a_reply_jumps_to_an_original_in_older_history(browser, daphne, users):
    """A moderator's menu deletes bob's message; clicking a quote loads older pages until the original shows."""
    from chat import services
    from chat.models import Membership, Message, Room

    alice_user, bob_user = users
    lobby = Room.objects.get(slug="lobby")
    Membership.objects.filter(room=lobby, user=alice_user).update(role=Membership.Role.MODERATOR)

    def setup() -> None:
        original, _ = services.message_post(room=lobby, author=bob_user, body="the original, long ago")
        # More than two pages of history after it, written at once (their path is not under test here).
        Message.objects.bulk_create(
            Message(room=lobby, author=bob_user, body=f"filler {i}", html=f"<p>filler {i}</p>", seq=2 + i)
            for i in range(120)
        )
        Room.objects.filter(pk=lobby.pk).update(last_seq=121)
        services.message_post(room=lobby, author=bob_user, body="about that", reply_to=original.seq)
        services.message_post(room=lobby, author=bob_user, body="mod me")

    off_loop(setup)
    alice = log_in(browser, daphne, "alice")
    bob = log_in(browser, daphne, "bob")
    try:
        for page in (alice, bob):
            page.wait_for_selector("#messages li.message[data-seq='123']")
        assert alice.locator("#messages li[data-seq='1']").count() == 0
        mod = li(alice, "mod me")
        mod.hover()
        assert mod.locator(".act.edit").count() == 0  # moderators delete, they do not edit others' words
        mod.locator(".act.delete").click()
        mod.locator(".act.delete.confirm").click()
        bob.wait_for_function("() => !document.querySelector('#messages li[data-seq=\"123\"]')")
        li(alice, "about that").locator(".quote").click()
        alice.wait_for_selector("#messages li.message[data-seq='1'].flash")
        assert alice.locator("#messages li.message[data-seq='1']").is_visible()
        assert alice.locator("#messages li[data-seq='1']").evaluate(
            "n => { const r = n.getBoundingClientRect(), l = document.querySelector('#messages')"
            ".getBoundingClientRect(); return r.top >= l.top && r.bottom <= l.bottom; }"
        )
        # Scrolled up now: "Jump to latest" appears and brings the newest message back.
        alice.click(".jump-latest")
        alice.wait_for_function("() => document.querySelector('.jump-latest').hidden")
        assert li(alice, "about that").is_visible()
    finally:
        alice.context.close()
        bob.context.close()


def test_hostile_bodies_stay_inert_in_the_page(browser, daphne, users):
    """Every hostile body of the sanitiser's suite, from history and live: no dialog, no script, no bad link."""
    from chat import services
    from chat.models import Room

    alice_user, _ = users
    lobby = Room.objects.get(slug="lobby")
    off_loop(lambda: [services.message_post(room=lobby, author=alice_user, body=body) for body in HOSTILE])
    alice = log_in(browser, daphne, "alice")
    bob = log_in(browser, daphne, "bob")
    try:
        for body in HOSTILE[:6]:  # some live too, through the socket, in the other tab
            alice.fill("#body", body)
            alice.press("#body", "Enter")
        count = len(HOSTILE) + 6
        for page in (alice, bob):
            page.wait_for_function(
                f"() => document.querySelectorAll('#messages li.message[data-id]').length === {count}"
            )
            page.wait_for_timeout(300)  # give any injected handler the chance to run
            found = page.evaluate(
                """() => {
                  const root = document.querySelector('#messages');
                  const bad = [];
                  for (const n of root.querySelectorAll('script, img, svg, iframe, style, form, object, embed'))
                    bad.push(n.tagName);
                  for (const n of root.querySelectorAll('*'))
                    for (const a of n.attributes) if (/^on/i.test(a.name)) bad.push(a.name);
                  for (const a of root.querySelectorAll('a[href]'))
                    if (!/^(https?:|mailto:)/i.test(a.getAttribute('href'))) bad.push(a.getAttribute('href'));
                  return {bad, xss: window.__xss ?? null, scripts: document.scripts.length};
                }"""
            )
            assert found["bad"] == [] and found["xss"] is None, found
            assert page.dialogs == []
        # Clicking every link of the page's messages opens nothing that runs code here.
        for link in alice.locator("#messages .body a").all():
            assert link.get_attribute("target") == "_blank"
            assert link.get_attribute("rel") == "nofollow noopener noreferrer"
    finally:
        alice.context.close()
        bob.context.close()


def test_conversation_reads_grouped_with_day_separators_and_a_new_messages_line(browser, daphne, users):
    """Yesterday and today are separated; one author's run within 5 minutes is one group; unread starts a line.

    Saves the README's screenshots at 1280x800 and 390x844.
    """
    from chat import services
    from chat.models import Message, Room

    alice_user, bob_user = users
    lobby = Room.objects.get(slug="lobby")
    now = timezone.now()
    yesterday = (now - timedelta(days=1)).replace(hour=9, minute=0)
    script = [
        (bob_user, "Morning! Is the **release** still on for today?", yesterday),
        (alice_user, "Yes — after the last review. @bob can you check the *migration*?",
         yesterday + timedelta(minutes=2)),
        (alice_user, "It adds `Message.html`, rendered once when a message is written.",
         yesterday + timedelta(minutes=3)),
        (bob_user, "On it. Steps:\n1. apply it on staging\n2. run the checks\n3. ~~panic~~ report back",
         now - timedelta(minutes=5)),
        (bob_user, "```python\nmanage.py migrate chat\n```", now - timedelta(minutes=4)),
        (alice_user, "> rendered once\n\nand sanitised by nh3, see https://nh3.readthedocs.io",
         now - timedelta(minutes=2)),
    ]

    def setup() -> None:
        for author, body, when in script:
            message, _ = services.message_post(room=lobby, author=author, body=body)
            Message.objects.filter(pk=message.pk).update(created_at=when)
        services.message_post(room=lobby, author=bob_user, body="All green, nothing to report.", reply_to=3)

    off_loop(setup)
    first_today = Message.objects.get(room=lobby, seq=4)
    # Alice last read seq 3 (yesterday's end): the line shows above seq 4.
    alice = log_in(browser, daphne, "alice")
    alice.wait_for_selector("#messages li.message[data-seq='7']")  # this visit has marked it all read
    alice.evaluate("() => localStorage.setItem('chat.read.alice', JSON.stringify({lobby: 3}))")
    alice.reload()
    phone = log_in(browser, daphne, "bob", viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    try:
        alice.wait_for_selector("#messages li.message[data-seq='7']")
        info = alice.eval_on_selector_all(
            "#messages li.message",
            "els => els.map(e => ({seq: e.dataset.seq, day: e.dataset.day || null,"
            " grouped: e.classList.contains('grouped'),"
            " unread: e.classList.contains('first-unread'), avatar: e.querySelector('.avatar').textContent,"
            " before: getComputedStyle(e, '::before').content}))",
        )
        by_seq = {row["seq"]: row for row in info}
        assert by_seq["1"]["day"] == "Yesterday" and by_seq["1"]["before"] == '"Yesterday"'
        assert by_seq[str(first_today.seq)]["day"] == "Today"
        assert [row["seq"] for row in info if row["day"]] == ["1", "4"]
        assert [row["grouped"] for row in info] == [False, False, True, False, True, False, False]
        assert [row["seq"] for row in info if row["unread"]] == ["4"]
        assert by_seq["2"]["avatar"] == "AL" and by_seq["1"]["avatar"] == "B"
        assert alice.locator("#messages li[data-seq='2'] .mention").inner_text() == "@bob"
        assert alice.locator("#messages pre code").inner_text().strip() == "manage.py migrate chat"
        # Alice answers live, as a reply; both see the quote.
        li(alice, "All green").hover()
        li(alice, "All green").locator(".act.reply").click()
        alice.fill("#body", "Thanks @bob, shipping it :rocket:")
        alice.press("#body", "Enter")
        phone.wait_for_function(f"() => {BODIES}.some(t => t.startsWith('Thanks @bob'))")
        alice.wait_for_function(f"() => {BODIES}.some(t => t.startsWith('Thanks @bob'))")
        assert phone.locator("#messages .mention.me").count() >= 1
        # Alice uploads a profile picture: her messages show it at once.
        alice.set_input_files("#avatar-file", files=[{"name": "me.png", "mimeType": "image/png", "buffer": portrait()}])
        alice.wait_for_function("() => document.querySelector('#avatar-status').textContent === 'Saved.'")
        alice.wait_for_function(
            "() => [...document.querySelectorAll('#messages li.message[data-author=alice] > .avatar img')]"
            ".every(img => img.complete && img.naturalWidth === 128) && document.querySelector("
            "'#messages li.message[data-author=alice] > .avatar img')"
        )
        assert li(alice, "All green").locator(".avatar img").count() == 0  # bob has none: initials
        alice.locator("#messages li.message").last.hover()
        save_screenshot(alice, "conversation.png")
        alice.emulate_media(color_scheme="dark")
        save_screenshot(alice, "conversation-dark.png")
        # The page's columns at phone width are the "screens" work; a message never widens its list.
        assert phone.evaluate("() => { const m = document.querySelector('#messages');"
                              " return m.scrollWidth <= m.clientWidth; }")
        save_screenshot(phone, "conversation-phone.png")
    finally:
        alice.context.close()
        phone.context.close()
