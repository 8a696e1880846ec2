"""Reactions and read receipts in real Chromium: live across users, tabs and devices."""

from __future__ import annotations

import pytest

from tests.browser.test_chat_page import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def people(make_user, lobby):
    from chat.models import Room

    Room.objects.create(slug="random", title="Random")
    return make_user("alice"), make_user("bob")


def test_reactions_update_live_and_survive_a_reload(browser, daphne, people):
    """Bob reacts to Alice's message; Alice sees the count live, and again after reloading."""
    alice = log_in(browser, daphne, "alice")
    bob = log_in(browser, daphne, "bob")
    try:
        alice.fill("#body", "react, please")
        alice.press("#body", "Enter")
        bob.wait_for_selector("#messages li[data-seq='1'] .reaction.add")
        bob.click("#messages li[data-seq='1'] .reaction.add")
        bob.click("#messages li[data-seq='1'] .palette .pick >> nth=0")
        alice.wait_for_selector("#messages li[data-seq='1'] .reaction[data-emoji='👍']")
        assert alice.inner_text("#messages li[data-seq='1'] .reaction[data-emoji='👍']") == "👍 1"
        assert "mine" in bob.get_attribute("#messages li[data-seq='1'] .reaction[data-emoji='👍']", "class")
        alice.reload()
        alice.wait_for_selector("#messages li[data-seq='1'] .reaction[data-emoji='👍']")
        assert alice.inner_text("#messages li[data-seq='1'] .reaction[data-emoji='👍']") == "👍 1"
        # Bob takes it back: gone for Alice, live.
        bob.click("#messages li[data-seq='1'] .reaction[data-emoji='👍']")
        alice.wait_for_selector("#messages li[data-seq='1'] .reaction[data-emoji='👍']", state="detached")
    finally:
        alice.context.close()
        bob.context.close()


def test_unread_counts_follow_the_user_across_tabs_and_seen_by(browser, daphne, people):
    """Unread in 'random' shows in both of Alice's tabs; reading it in one clears it in the other."""
    alice_tab1 = log_in(browser, daphne, "alice")
    alice_tab2 = alice_tab1.context.new_page()  # same session, second tab
    alice_tab2.goto(f"{daphne.url}/?room=lobby")
    alice_tab2.wait_for_function("() => document.querySelector('#conn-status').dataset.state === 'connected'")
    bob = log_in(browser, daphne, "bob")
    try:
        bob.goto(f"{daphne.url}/?room=random")
        bob.wait_for_function("() => document.querySelector('#conn-status').dataset.state === 'connected'")
        for text in ("one", "two"):
            bob.fill("#body", text)
            bob.press("#body", "Enter")
        bob.wait_for_selector("#messages li[data-seq='2']")
        badge = "#room-list a[data-room='random'] .unread"
        for tab in (alice_tab1, alice_tab2):
            tab.reload()  # unread counts of rooms not open come from the server
            tab.wait_for_selector(badge)
            assert tab.inner_text(badge) == "2"
        # Tab 1 opens 'random' and reads it: tab 2's badge clears live (the `read` event).
        alice_tab1.click("#room-list a[data-room='random']")
        alice_tab1.wait_for_selector("#messages li[data-seq='2']")
        alice_tab2.wait_for_selector(badge, state="detached", timeout=15000)
        # Bob sees that Alice has seen his last message.
        bob.wait_for_function("() => document.querySelector('#seen').textContent === 'Seen by alice'", timeout=15000)
    finally:
        alice_tab1.context.close()
        bob.context.close()
