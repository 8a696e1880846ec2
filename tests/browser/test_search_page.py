"""The search box in real Chromium: results with highlights, and a click jumps to the message in its room."""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.browser.login import submit_login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "img"  # beside the README's other screens


def _in_thread(fn: Any) -> Any:
    """Run ``fn`` on a thread without Playwright's event loop (the sync broadcast API refuses one)."""
    from django.db import connection

    def run() -> Any:
        try:
            return fn()
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


@pytest.fixture
def rooms(make_user, lobby):
    """Alice in the lobby (80 messages, one old 'launch' among them) and in 'random'; bob's private room."""
    alice, bob = make_user("alice"), make_user("bob")
    _in_thread(lambda: _conversations(lobby, alice, bob))
    return alice, bob


def _conversations(lobby: Any, alice: Any, bob: Any) -> None:
    from chat import services
    from chat.models import Message

    random = services.room_create(slug="random", title="Random", created_by=bob)
    for user in (alice, bob):
        services.room_enter(slug="lobby", user=user)
    services.room_enter(slug="random", user=alice)
    secret = services.room_create(slug="secret", title="Secret", is_public=False, created_by=bob)
    services.message_post(room=secret, author=bob, body="the launch date is secret")
    for i in range(1, 81):
        body = "Is the launch checklist <b>ready</b>? Tag @bob when it is." if i == 10 else f"chatter {i}"
        services.message_post(room=lobby, author=bob if i % 2 else alice, body=body)
    services.message_post(room=random, author=bob, body="Launch party after the launch, cake in the kitchen")
    assert Message.objects.count() == 82


def _open(browser: Any, daphne: Any, viewport: dict[str, int], **extra: Any) -> Any:
    context = browser.new_context(viewport=viewport, **extra)
    page = submit_login(context.new_page(), daphne.url, "alice")
    page.wait_for_function("() => document.querySelector('#conn-status').dataset.state === 'connected'")
    page.wait_for_selector("#messages li[data-seq='80']")
    return page


def _screenshot(page: Any, name: str) -> None:
    """Write a screenshot for the docs; an unwritable docs/ is not a test failure."""
    with contextlib.suppress(OSError):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / name))


def test_search_shows_readable_hits_and_jumps_to_an_old_message(browser, daphne, rooms):
    """Hits come from alice's rooms only, highlighted; a click opens the room at the hit, with its neighbours."""
    page = _open(browser, daphne, {"width": 1280, "height": 800})
    try:
        assert page.locator("#messages li[data-seq='10']").count() == 0  # older than the first page
        page.press("body", "/")  # the shortcut focuses the box
        page.keyboard.type("launch")
        page.keyboard.press("Enter")
        page.wait_for_selector("#search-results .search-hit")
        hits = page.eval_on_selector_all(
            "#search-results .search-open", "els => els.map(e => [e.dataset.room, e.dataset.seq])")
        assert hits == [["random", "1"], ["lobby", "10"]]  # newest first; bob's private room never
        assert page.inner_text("#search-title") == "2 results for “launch”"
        marks = page.eval_on_selector_all("#search-results .search-hit >> nth=1 >> mark", "els => els.length")
        assert marks == 1
        lobby_hit = page.locator("#search-results .search-hit").nth(1)
        assert lobby_hit.locator("mark").inner_text() == "launch"
        assert lobby_hit.locator("b").count() == 0 and "<b>ready</b>" in lobby_hit.inner_text()
        _screenshot(page, "search-1280x800.png")
        page.emulate_media(color_scheme="dark")
        _screenshot(page, "search-1280x800-dark.png")
        page.emulate_media(color_scheme="light")
        # Jump to the old message of the open room: it is shown, with the messages around it.
        lobby_hit.click()
        page.wait_for_selector("#messages li[data-seq='10'].jumped")
        assert page.locator("#search-results").is_hidden()
        for seq in (9, 11):
            assert page.locator(f"#messages li[data-seq='{seq}']").count() == 1
        assert page.evaluate(
            "() => { const r = document.querySelector(\"#messages li[data-seq='10']\").getBoundingClientRect();"
            " const box = document.querySelector('#messages').getBoundingClientRect();"
            " return r.top >= box.top && r.bottom <= box.bottom; }"
        ), "the jumped-to message is scrolled into view"
        # A hit in another room opens that room at the hit.
        page.fill("#search-q", "cake")
        page.press("#search-q", "Enter")
        page.click("#search-results .search-open[data-room='random']")
        page.wait_for_selector("#messages li[data-seq='1'].jumped")
        assert page.inner_text("#room-title") == "Random"
        assert "room=random" in page.url
        # A hostile query is a message in the panel, not an error page.
        page.fill("#search-q", "(((")
        page.press("#search-q", "Enter")
        page.wait_for_selector("#search-results .search-empty")
        assert "type a word" in page.inner_text("#search-results .search-empty")
        page.keyboard.press("Escape")
        assert page.locator("#search-results").is_hidden()
    finally:
        page.context.close()


def test_search_on_a_phone_fits_the_screen(browser, daphne, rooms):
    """At 390x844 the results panel fits the screen (adds no sideways scroll) and a tap on a hit jumps."""
    page = _open(browser, daphne, {"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        width_before = page.evaluate("() => document.documentElement.scrollWidth")
        page.fill("#search-q", "launch")
        page.press("#search-q", "Enter")
        page.wait_for_selector("#search-results .search-hit")
        # The panel stays inside the message column: it adds no sideways scroll of its own.
        panel = page.locator("#search-results").bounding_box()
        column = page.locator("section.room").bounding_box()
        assert column["x"] <= panel["x"] and panel["x"] + panel["width"] <= column["x"] + column["width"] + 1
        assert page.evaluate("() => document.documentElement.scrollWidth") <= width_before
        assert panel["x"] >= 0 and panel["x"] + panel["width"] <= 390, panel  # the screen itself
        _screenshot(page, "search-390x844.png")
        page.emulate_media(color_scheme="dark")
        _screenshot(page, "search-390x844-dark.png")
        page.locator("#search-results .search-open[data-room='lobby']").tap()
        page.wait_for_selector("#messages li[data-seq='10'].jumped")
    finally:
        page.context.close()
