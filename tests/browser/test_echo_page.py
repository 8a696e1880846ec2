"""The /echo/ page in a real browser against a live Daphne: the article's example, end to end.

Headless Chromium loads the page from Daphne, the page's script opens a WebSocket to
the same server's /ws/echo/ (so the Origin check sees a real browser Origin), sends,
receives and closes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.services import ROOT, free_port

pytestmark = [pytest.mark.browser, pytest.mark.live]

GREEN = "rgb(0, 128, 0)"
RED = "rgb(255, 0, 0)"
SCREENSHOT = ROOT / "docs" / "echo-page.png"
TIMEOUT_MS = 10_000


@pytest.fixture
def page_errors() -> list[str]:
    """Uncaught JavaScript errors of the test's page."""
    return []


@pytest.fixture
def page(browser: Any, page_errors: list[str]) -> Iterator[Any]:
    """A fresh page in its own browser context (no shared cookies or storage)."""
    context = browser.new_context(viewport={"width": 900, "height": 640})
    page = context.new_page()
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    yield page
    context.close()


def _lines(page: Any) -> list[dict[str, str]]:
    return page.eval_on_selector_all(
        "#output > *",
        "els => els.map(e => ({tag: e.tagName, text: e.textContent, color: getComputedStyle(e).color}))",
    )


def _wait_for_lines(page: Any, n: int) -> list[dict[str, str]]:
    page.wait_for_function(f"document.querySelectorAll('#output > *').length >= {n}", timeout=TIMEOUT_MS)
    return _lines(page)


def _save_screenshot(page: Any, path: Path) -> None:
    """Write the screenshot for the docs; an unwritable docs/ is not a test failure."""
    png = page.screenshot(full_page=True)
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)


def test_connect_and_send_shows_each_step_in_green_in_order(page: Any, page_errors: list[str], daphne: Any) -> None:
    """Clicking Connect and Send shows connect, send, echo and disconnect, in that order, all green."""
    page.goto(f"{daphne.url}/echo/")
    page.get_by_role("button", name="Connect and Send").click()
    page.wait_for_function(
        "document.getElementById('state').textContent === 'Connection State: CLOSED'", timeout=TIMEOUT_MS
    )
    lines = _wait_for_lines(page, 5)
    assert [line["text"] for line in lines] == [
        "Connecting...",
        "Connected to WebSocket",
        "Sent: Hello, world!",
        "Received: Hello, world!",
        "Disconnected from WebSocket",
    ]
    assert [line["color"] for line in lines] == [GREEN] * 5
    page.wait_for_timeout(300)  # nothing more arrives (no error line after the close)
    assert len(_lines(page)) == 5
    assert page_errors == []
    _save_screenshot(page, SCREENSHOT)


def test_typed_message_is_echoed_as_text_not_html(page: Any, daphne: Any) -> None:
    """Markup typed into the field comes back as literal text: no element is created from it."""
    message = "<b>hi</b> ünïcode <img src=x onerror=window.__xss=1>"
    page.goto(f"{daphne.url}/echo/")
    page.fill("#message", message)
    page.click("#connect")
    lines = _wait_for_lines(page, 5)
    assert [line["text"] for line in lines][2:4] == [f"Sent: {message}", f"Received: {message}"]
    assert page.locator("#output b, #output img").count() == 0
    assert page.evaluate("window.__xss") is None
    assert all(line["tag"] == "SPAN" for line in lines)


def test_unreachable_endpoint_is_reported_in_red(page: Any, daphne: Any) -> None:
    """When the WebSocket cannot connect, the page says so in red, then shows the disconnect.

    The page is served (through Playwright's routing, from the live Daphne) at an origin
    where nothing listens, so its WebSocket really is refused by the network.
    """
    dead = f"http://127.0.0.1:{free_port()}"

    def from_daphne(route: Any) -> None:
        route.fulfill(response=route.fetch(url=route.request.url.replace(dead, daphne.url)))

    page.route(f"{dead}/**", from_daphne)
    page.goto(f"{dead}/echo/")
    page.click("#connect")
    lines = _wait_for_lines(page, 3)
    texts = [line["text"] for line in lines]
    assert texts[0] == "Connecting..."
    assert texts[1] == f"WebSocket error: could not connect to ws://{dead.removeprefix('http://')}/ws/echo/"
    assert texts[2] == "Disconnected from WebSocket"
    assert [line["color"] for line in lines] == [GREEN, RED, GREEN]
    assert not any(t.startswith(("Connected", "Sent", "Received")) for t in texts)
