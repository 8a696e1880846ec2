"""The chat page in real headless Chromium against a live Daphne: two users chat."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.login import submit_login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

XSS = "<img src=x onerror=\"window.__xss=1\"><script>window.__xss=2</script>"


def log_in(browser: Any, server: Any, username: str) -> Any:
    """A fresh browser context logged in as ``username`` through the real login form."""
    context = browser.new_context(viewport={"width": 1100, "height": 700})
    page = submit_login(context.new_page(), server.url, username)
    page.wait_for_function("() => document.querySelector('#conn-status').dataset.state === 'connected'")
    return page


@pytest.fixture
def two_users(make_user, lobby):
    return make_user("alice"), make_user("bob")


def test_two_users_chat_with_presence_typing_and_inert_html(browser, daphne, two_users):
    """Two browsers see each other's messages, presence and typing; HTML in a body shows as text."""
    alice = log_in(browser, daphne, "alice")
    bob = log_in(browser, daphne, "bob")
    try:
        # Presence: each sees both names.
        for page in (alice, bob):
            page.wait_for_function(
                "() => [...document.querySelectorAll('#presence li')].map(li => li.textContent).join(',')"
                " === 'alice,bob'"
            )
        # Typing: alice types, bob sees it.
        alice.type("#body", "hel")
        bob.wait_for_function("() => document.querySelector('#typing').textContent.includes('alice is typing')")
        alice.fill("#body", "hello bob")
        alice.press("#body", "Enter")
        bob.wait_for_function(
            "() => [...document.querySelectorAll('#messages li .body')].some(b => b.textContent === 'hello bob')"
        )
        # A hostile body is stored verbatim and rendered inertly, as text.
        bob.fill("#body", XSS)
        bob.press("#body", "Enter")
        for page in (alice, bob):
            page.wait_for_function(
                "(xss) => [...document.querySelectorAll('#messages li .body')].some(b => b.textContent === xss)",
                arg=XSS,
            )
            assert page.evaluate("() => window.__xss") is None
            assert page.locator("#messages img").count() == 0
            assert page.locator("#messages script").count() == 0
        seqs = alice.eval_on_selector_all("#messages li", "els => els.map(e => e.dataset.seq)")
        assert seqs == ["1", "2"], seqs
        # Leaving: bob closes his page; alice sees him leave.
        bob.context.close()
        alice.wait_for_function(
            "() => [...document.querySelectorAll('#presence li')].map(li => li.textContent).join(',') === 'alice'"
        )
    finally:
        alice.context.close()
        if not bob.context.pages == []:
            bob.context.close()


def test_message_sent_before_reload_is_shown_once_after(browser, daphne, two_users):
    """Reloading the page shows the room's history once, in seq order (no duplicates)."""
    alice = log_in(browser, daphne, "alice")
    try:
        for text in ("one", "two", "three"):
            alice.fill("#body", text)
            alice.press("#body", "Enter")
        alice.wait_for_function("() => document.querySelectorAll('#messages li[data-seq=\"3\"]').length === 1")
        alice.reload()
        alice.wait_for_function("() => document.querySelectorAll('#messages li').length === 3")
        bodies = alice.eval_on_selector_all("#messages li .body", "els => els.map(e => e.textContent)")
        assert bodies == ["one", "two", "three"]
    finally:
        alice.context.close()


def test_banned_word_is_masked_live_and_mention_shows_a_notification(browser, daphne, celery_worker, two_users):
    """A banned word reaches open browsers masked; a mention pops up for the mentioned user."""
    from chat import services

    services.banned_word_add(word="darn", action="mask")  # through the service, so Daphne's filter sees it
    alice = log_in(browser, daphne, "alice")
    bob = log_in(browser, daphne, "bob")
    try:
        alice.fill("#body", "oh darn, @bob")
        alice.press("#body", "Enter")
        for page in (alice, bob):
            page.wait_for_function(
                "() => [...document.querySelectorAll('#messages li .body')]"
                ".some(b => b.textContent === 'oh ****, @bob')",
                timeout=15000,
            )
        bob.wait_for_selector(".toast", timeout=15000)
        assert "alice mentioned you in #lobby" in bob.inner_text(".toast")
        assert alice.locator(".toast").count() == 0
    finally:
        alice.context.close()
        bob.context.close()
