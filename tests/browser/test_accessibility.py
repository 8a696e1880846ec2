"""axe-core in real Chromium against a live Daphne: no critical or serious violation on any
view, light or dark, desktop or phone; a logical focus order with a visible focus; live
regions for new messages and the connection state.

axe-core comes from npm (package.json devDependencies, installed by `make test`'s
bootstrap) and is injected by the test: it is never served to users.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.services import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
CONNECTED = "() => document.querySelector('#conn-status').dataset.state === 'connected'"
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}

# Every view axe checks: (name, path, logged in, a JS condition for "ready", an action that
# brings the view into its interesting state). The DM views (issue 16) join this list when
# they land.
VIEWS = [
    ("chat", "/", True, CONNECTED, None),
    ("search", "/", True, CONNECTED, "search"),
    ("dm", "/?room={dm}", True, CONNECTED, None),
    ("login", "/accounts/login/", False, None, None),
    ("sign-up", "/accounts/signup/", False, None, None),
    ("echo", "/echo/", False, None, "echo"),
]

AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations
    .filter((v) => v.impact === 'critical' || v.impact === 'serious')
    .map((v) => ({id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' '))}));
}"""


@pytest.fixture
def alice(make_user: Any, lobby: Any) -> Any:
    """alice, a member of the lobby, with one message of hers in it, and a DM with bob (``alice.dm_slug``)."""
    from concurrent.futures import ThreadPoolExecutor

    from chat import services

    alice = make_user("alice")
    services.room_enter(slug="lobby", user=alice)
    # From a thread of its own: this one runs Playwright's event loop (see test_screens).
    bob = make_user("bob")

    def seed() -> str:
        services.message_post(room=lobby, author=alice, body="Hello, everyone")
        dm, _ = services.dm_open(opener=alice, usernames=["bob"])
        services.message_post(room=dm, author=bob, body="Hello, just you")
        return dm.slug

    with ThreadPoolExecutor(1) as pool:
        alice.dm_slug = pool.submit(seed).result()
    return alice


@contextlib.contextmanager
def view_page(browser: Any, daphne: Any, user: Any | None, path: str) -> Iterator[Any]:
    """A page at ``path`` in a fresh context, logged in as ``user`` when one is given."""
    from tests.conftest import session_cookie

    ctx = browser.new_context(viewport=SIZES["desktop"])
    try:
        if user is not None:
            ctx.add_cookies([{"name": "sessionid", "value": session_cookie(user), "url": daphne.url}])
        page = ctx.new_page()
        page.goto(f"{daphne.url}{path}")
        yield page
    finally:
        ctx.close()


def violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's critical and serious violations on ``page`` as it is now."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE))
    return page.evaluate(AXE_RUN)


@pytest.mark.parametrize(("name", "path", "logged_in", "ready", "action"), VIEWS, ids=[v[0] for v in VIEWS])
def test_axe_finds_no_serious_violation(browser: Any, daphne: Any, alice: Any, name: str, path: str,
                                        logged_in: bool, ready: str | None, action: str | None) -> None:
    """axe-core finds no critical or serious violation on the view, light and dark, on a desktop
    and a phone (on the phone's chat, with the room drawer open too)."""
    assert AXE.exists(), "axe-core is missing: `make test` installs it (npm ci)"
    path = path.format(dm=alice.dm_slug)
    with view_page(browser, daphne, alice if logged_in else None, path) as page:
        if ready:
            page.wait_for_function(ready)
        if action == "search":
            page.fill("#search-q", "hello")
            page.press("#search-q", "Enter")
            page.wait_for_function("() => !document.querySelector('#search-results').hidden"
                                   " && document.querySelector('#search-results').textContent.includes('everyone')")
        if action == "echo":
            page.click("#connect")
            page.wait_for_function("() => document.querySelectorAll('#output > *').length >= 5")
        found = {}
        for device, size in SIZES.items():
            page.set_viewport_size(size)
            for scheme in ("light", "dark"):
                page.emulate_media(color_scheme=scheme)
                page.wait_for_function("() => document.getAnimations().length === 0")
                found[f"{device}-{scheme}"] = violations(page)
                if name == "chat" and device == "phone":
                    page.click("#open-rooms")
                    page.wait_for_function("() => document.getAnimations().length === 0")
                    found[f"{device}-{scheme}-drawer"] = violations(page)
                    page.keyboard.press("Escape")
        assert {k: v for k, v in found.items() if v} == {}


def test_focus_order_is_logical_and_focus_is_visible(browser: Any, daphne: Any, alice: Any) -> None:
    """Tab walks the chat page in reading order (skip link, site header, rooms, the room,
    composer, people) and every focused control shows an outline."""
    with view_page(browser, daphne, alice, "/") as page:
        page.wait_for_function(CONNECTED)
        page.wait_for_selector("#room-list a")
        order = []
        while not order or order[-1]["id"] != "send":
            assert len(order) < 20, order
            page.keyboard.press("Tab")
            order.append(page.evaluate("""() => {
              const el = document.activeElement, s = getComputedStyle(el);
              return {id: el.id || el.className || el.tagName, text: (el.textContent || '').trim().slice(0, 20),
                      outline: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2};
            }"""))
        names = [" ".join(f"{o['id']}:{o['text']}".split()) for o in order]
        assert names[0] == "skip-link:Skip to content"
        expected = ["brand", "Echo", "Log out", "theme-select", "active:# Lobby", "New room",
                    "messages", "body", "send"]
        positions = [next(i for i, n in enumerate(names) if want in n) for want in expected]
        assert positions == sorted(positions), names
        assert [o for o in order if not o["outline"]] == [], "  ".join(names)
        # The skip link lands on the main content.
        page.focus(".skip-link")
        page.keyboard.press("Enter")
        assert page.evaluate("() => document.activeElement.id") == "main"


def test_new_messages_and_connection_state_are_live_regions(browser: Any, daphne: Any, alice: Any) -> None:
    """A screen reader hears new messages and connection changes: both are live regions, and the
    connection state is a status."""
    with view_page(browser, daphne, alice, "/") as page:
        page.wait_for_function(CONNECTED)
        live = page.evaluate("""() => ({
          messages: document.querySelector('#messages').getAttribute('aria-live'),
          conn: document.querySelector('#conn-status').getAttribute('aria-live'),
          connRole: document.querySelector('#conn-status').getAttribute('role'),
          typing: document.querySelector('#typing').getAttribute('aria-live'),
        })""")
        assert live == {"messages": "polite", "conn": "polite", "connRole": "status", "typing": "polite"}
