"""Every screen in real Chromium against a live Daphne: the phone layout, the drawers, the
keyboard inset, the remembered dark theme, and the README's screenshots."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.browser.login import submit_login
from tests.services import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 1}
DESKTOP = {"viewport": {"width": 1280, "height": 800}}
SCREENSHOTS = ROOT / "docs" / "img"
CONNECTED = "() => document.querySelector('#conn-status').dataset.state === 'connected'"

# Interactive elements a finger must hit, with their box; a checkbox counts with its label
# (clicking either toggles it), and a link inside running text is exempt (WCAG 2.5.8).
TARGETS_JS = """() => {
  const visible = (el) => {
    const r = el.getBoundingClientRect(), s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && !el.closest('[inert]');
  };
  const sel = 'a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex]:not([tabindex="-1"])';
  return [...document.querySelectorAll(sel)].filter(visible).filter((el) => !el.closest('p:not(form p)')).map((el) => {
    let r = el.getBoundingClientRect();
    if (el.type === 'checkbox' && el.labels.length) {
      const l = el.labels[0].getBoundingClientRect();
      r = {width: Math.max(r.right, l.right) - Math.min(r.left, l.left),
           height: Math.max(r.bottom, l.bottom) - Math.min(r.top, l.top)};
    }
    return {what: el.outerHTML.slice(0, 80), width: Math.round(r.width), height: Math.round(r.height)};
  });
}"""


@pytest.fixture
def users(make_user: Any, lobby: Any) -> tuple[Any, Any]:
    """alice and bob, with a few messages of each in the lobby.

    Posted from a thread of their own: this one runs Playwright's event loop, and the
    service's broadcast after commit is sync code that refuses to run inside one.
    """
    from chat import services

    alice, bob = make_user("alice"), make_user("bob")
    for user in (alice, bob):
        services.room_enter(slug="lobby", user=user)
    posts = [
        (alice, "Morning! Is the deploy still on for today?"),
        (bob, "Yes, at 14:00. I'll post the checklist here."),
        (alice, "Great, thanks. I'll keep an eye on the error rates afterwards."),
        (bob, "See you then — ping me if anything looks off."),
    ]
    with ThreadPoolExecutor(1) as pool:
        for author, body in posts:
            pool.submit(services.message_post, room=lobby, author=author, body=body).result()
    return alice, bob


@contextlib.contextmanager
def chat_page(browser: Any, daphne: Any, user: Any, *, color_scheme: str = "light", **context: Any) -> Iterator[Any]:
    """``user``'s connected chat page in a fresh context (``context`` as for new_context).

    The session cookie is set directly (tests/browser/test_chat_page.py drives the login form).
    """
    from tests.conftest import session_cookie

    ctx = browser.new_context(color_scheme=color_scheme, **(context or DESKTOP))
    try:
        ctx.add_cookies([{"name": "sessionid", "value": session_cookie(user), "url": daphne.url}])
        page = ctx.new_page()
        page.goto(f"{daphne.url}/")
        page.wait_for_function(CONNECTED)
        yield page
    finally:
        ctx.close()


def save_screenshot(page: Any, name: str) -> None:
    """Write docs/img/<name>.png for the README; an unwritable docs/ is not a test failure."""
    png = page.screenshot()
    with contextlib.suppress(OSError):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        (SCREENSHOTS / f"{name}.png").write_bytes(png)


def sideways(page: Any) -> dict[str, int]:
    return page.evaluate("() => ({scroll: document.scrollingElement.scrollWidth, inner: innerWidth})")


def test_phone_pages_never_scroll_sideways_and_every_target_is_44px(browser: Any, daphne: Any, users: Any) -> None:
    """On a 390 px phone no page is wider than the screen, and every control is >= 44 x 44 px."""
    with chat_page(browser, daphne, users[0], **PHONE) as page:
        page.wait_for_function("() => document.querySelectorAll('#messages li').length === 4")
        page.fill("#body", "https://example.com/" + "a-very-long-unbroken-path" * 12)  # wraps, never widens
        page.press("#body", "Enter")
        page.wait_for_function("() => document.querySelectorAll('#messages li[data-seq=\"5\"]').length === 1")
        views = [("chat", None), ("echo", "/echo/")]
        for name, path in views:
            if path:
                page.goto(f"{daphne.url}{path}")
            width = sideways(page)
            assert width["scroll"] <= 390 and width["inner"] == 390, (name, width)
            small = [t for t in page.evaluate(TARGETS_JS) if t["width"] < 44 or t["height"] < 44]
            assert small == [], (name, small)
    ctx = browser.new_context(**PHONE)
    try:
        page = ctx.new_page()
        for name, path in [("login", "/accounts/login/"), ("sign-up", "/accounts/signup/")]:
            page.goto(f"{daphne.url}{path}")
            width = sideways(page)
            assert width["scroll"] <= 390 and width["inner"] == 390, (name, width)
            small = [t for t in page.evaluate(TARGETS_JS) if t["width"] < 44 or t["height"] < 44]
            assert small == [], (name, small)
    finally:
        ctx.close()


def test_phone_drawers_open_from_the_header_and_close_with_esc_or_the_overlay(browser: Any, daphne: Any,
                                                                             users: Any) -> None:
    """On the phone the room and people lists are closed drawers; a header button opens one and
    moves focus into it, Esc or the overlay closes it and focus returns to the button."""
    with chat_page(browser, daphne, users[0], **PHONE) as page:
        rooms, people = page.locator("#rooms-panel"), page.locator("#people-panel")
        assert not rooms.is_visible() and not people.is_visible()
        assert page.locator("#messages").bounding_box()["width"] >= 380  # the messages get the screen
        page.click("#open-rooms")
        page.wait_for_function("() => document.querySelector('#rooms-panel').getBoundingClientRect().left === 0")
        assert page.get_attribute("#open-rooms", "aria-expanded") == "true"
        assert page.evaluate("() => document.activeElement.closest('#rooms-panel') !== null")
        assert page.evaluate("() => document.querySelector('.room').inert")  # Tab stays in the drawer
        page.keyboard.press("Escape")
        page.wait_for_function("() => !document.querySelector('#rooms-panel').classList.contains('open')")
        assert page.evaluate("() => document.activeElement.id") == "open-rooms"
        assert page.get_attribute("#open-rooms", "aria-expanded") == "false"

        page.click("#open-people")
        page.wait_for_selector("#people-panel.open")
        people.get_by_text("alice").wait_for()
        page.mouse.click(20, 400)  # the overlay, left of the right-hand drawer
        page.wait_for_function("() => !document.querySelector('#people-panel').classList.contains('open')")
        assert page.evaluate("() => document.activeElement.id") == "open-people"
        assert not page.evaluate("() => document.querySelector('.room').inert")

        # An unread badge in the hidden list marks the drawer's button.
        assert page.get_attribute("#open-rooms", "data-unread") is None
        page.evaluate("() => document.querySelector('#room-list a').append(Object.assign("
                      "document.createElement('span'), {className: 'unread', textContent: '3'}))")
        page.wait_for_selector("#open-rooms[data-unread]", state="attached")
        assert page.get_attribute("#open-rooms", "aria-label") == "Rooms (unread messages)"

        # Picking a room in the drawer shows it and closes the drawer.
        page.click("#open-rooms")
        page.click("#room-list a[data-room='lobby']")
        page.wait_for_function("() => !document.querySelector('#rooms-panel').classList.contains('open')")


def test_composer_stays_above_the_on_screen_keyboard(browser: Any, daphne: Any, users: Any) -> None:
    """When the visual viewport shrinks (the keyboard opens) the composer moves up above it."""
    with chat_page(browser, daphne, users[0], **PHONE) as page:
        assert page.locator("#composer").bounding_box()["y"] + page.locator("#composer").bounding_box()["height"] \
            == pytest.approx(844, abs=1)
        # Chromium cannot open a real keyboard headless: the visual viewport reports one of 344 px.
        page.evaluate("""() => {
          Object.defineProperty(visualViewport, 'height', {configurable: true, get: () => 500});
          visualViewport.dispatchEvent(new Event('resize'));
        }""")
        page.wait_for_function("() => document.documentElement.style.getPropertyValue('--kb-inset') === '344px'")
        box = page.locator("#composer").bounding_box()
        assert box["y"] + box["height"] == pytest.approx(500, abs=1)
        assert sideways(page)["scroll"] <= 390


def test_theme_follows_the_system_and_a_choice_is_remembered_per_user_before_first_paint(
    browser: Any, daphne: Any, users: Any
) -> None:
    """With no choice the page follows prefers-color-scheme; a chosen theme is kept for that
    user only, and applied by the page's inline script before any module runs."""
    dark_bg = "rgb(13, 17, 23)"
    light_bg = "rgb(244, 246, 249)"
    background = "() => getComputedStyle(document.body).backgroundColor"
    with chat_page(browser, daphne, users[0], color_scheme="dark") as page:
        assert page.evaluate(background) == dark_bg  # the system's choice
        assert page.input_value("#theme-select") == "system"
        page.select_option("#theme-select", "light")
        assert page.evaluate(background) == light_bg
        # Without theme.js, the stored choice still applies: the inline script in <head> did it.
        page.route("**/js/theme.js", lambda route: route.abort())
        page.reload()
        assert page.evaluate("() => document.documentElement.dataset.theme") == "light"
        assert page.evaluate(background) == light_bg
        page.unroute("**/js/theme.js")
        # bob, in the same browser profile, has made no choice: he gets the system's dark.
        page.click("button:has-text('Log out')")
        submit_login(page, daphne.url, "bob")
        assert page.evaluate("() => document.documentElement.dataset.theme") is None
        assert page.evaluate(background) == dark_bg
        page.select_option("#theme-select", "dark")
        page.emulate_media(color_scheme="light")
        assert page.evaluate(background) == dark_bg  # a pinned choice wins over the system
        page.select_option("#theme-select", "system")
        assert page.evaluate(background) == light_bg


def test_screenshots_of_the_chat_and_login_pages_light_and_dark(browser: Any, daphne: Any, users: Any) -> None:
    """The README's screenshots (docs/img/): the chat with two users' messages and the login
    page, on a desktop and a phone, light and dark; each shows the theme asked for.

    One page each, resized and recoloured in place (the phone's layout follows the
    viewport's width alone).
    """
    alice, bob = users
    backgrounds = {"light": "rgb(244, 246, 249)", "dark": "rgb(13, 17, 23)"}
    background = "() => getComputedStyle(document.body).backgroundColor"
    with chat_page(browser, daphne, bob) as page, chat_page(browser, daphne, alice):
        page.wait_for_function(
            "() => [...document.querySelectorAll('#presence li')].map(li => li.textContent).join() === 'alice,bob'"
        )
        page.wait_for_function("() => document.querySelectorAll('#messages li').length === 4")
        login = page.context.browser.new_context().new_page()
        try:
            login.goto(f"{daphne.url}/accounts/login/")
            for shot in (page, login):
                shot.evaluate("() => document.activeElement.blur()")
            for device, context in [("desktop", DESKTOP), ("phone", PHONE)]:
                for scheme, expected in backgrounds.items():
                    for name, shot in [("chat", page), ("login", login)]:
                        shot.set_viewport_size(context["viewport"])
                        shot.emulate_media(color_scheme=scheme)
                        shot.wait_for_function("() => document.getAnimations().length === 0")  # drawers slid shut
                        assert shot.evaluate(background) == expected
                        save_screenshot(shot, f"{name}-{device}-{scheme}")
        finally:
            login.context.close()
