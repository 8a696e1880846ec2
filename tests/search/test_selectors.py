"""search.selectors.message_search: only rooms the user may read now, newest first, in pages."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from chat import selectors as chat_selectors
from chat import services
from chat.models import Membership, Room
from search.query import query_parse
from search.selectors import message_search

pytestmark = pytest.mark.django_db


def found(user, text: str, **kwargs) -> list[str]:
    return [hit.message.body for hit in message_search(user=user, query=query_parse(text), **kwargs).hits]


@pytest.fixture
def secret(members):
    """A private room of bob's with alice as a member, each holding one message with 'launch'."""
    alice, bob = members
    room = services.room_create(slug="secret", title="Secret", is_public=False, created_by=bob)
    services.membership_add(room=room, user=alice)
    services.message_post(room=room, author=bob, body="launch codes are 1234")
    return room


def test_members_find_messages_and_outsiders_do_not(members, secret, make_user, lobby):
    """A private room's message is found by its members only; a public room's by those who entered it."""
    alice, bob = members
    services.message_post(room=lobby, author=alice, body="launch party at noon")
    carol = make_user("carol")
    assert found(alice, "launch") == ["launch party at noon", "launch codes are 1234"]
    assert found(carol, "launch") == []  # entered nothing: reads nothing (as the history API)
    services.room_enter(slug="lobby", user=carol)
    assert found(carol, "launch") == ["launch party at noon"]


@pytest.mark.parametrize("loss", ["removed", "banned", "deactivated", "room_deleted"])
def test_every_way_of_losing_access_hides_the_room_at_once(members, secret, loss):
    """Removed from (left) the room, banned, deactivated, or the room gone: its messages are not found."""
    alice, _ = members
    assert found(alice, "launch") == ["launch codes are 1234"]
    membership = Membership.objects.get(room=secret, user=alice)
    if loss == "removed":
        services.membership_delete(membership=membership)
    elif loss == "banned":
        services.member_ban(membership=membership)
    elif loss == "deactivated":
        get_user_model().objects.filter(pk=alice.pk).update(is_active=False)
        alice.refresh_from_db()
    else:
        secret.delete()
    assert found(alice, "launch") == []
    assert found(alice, "launch", room=Room(pk=secret.pk)) == []


def test_rooms_readable_is_room_access_can_read_for_every_standing(members, secret, lobby, make_user):
    """The queryset search filters by gives room_access's can_read answer for each user and room."""
    alice, bob = members
    dave, erin, inactive = make_user("dave"), make_user("erin"), make_user("ivan")
    services.member_ban(membership=Membership.objects.get(room=lobby, user=bob))
    services.membership_add(room=secret, user=erin, banned=True)
    services.room_enter(slug="lobby", user=inactive)
    services.member_mute(membership=Membership.objects.get(room=lobby, user=alice), until=None)
    get_user_model().objects.filter(pk=inactive.pk).update(is_active=False)
    inactive.refresh_from_db()
    for user in (alice, bob, dave, erin, inactive):
        readable = set(chat_selectors.rooms_readable(user=user))
        for room in Room.objects.all():
            assert (room in readable) == chat_selectors.room_access(room=room, user=user).can_read, (user, room)


def test_deleted_messages_are_never_found(members, lobby):
    """A deleted message is gone from search, even as its tombstone stays in history."""
    alice, _ = members
    message, _ = services.message_post(room=lobby, author=alice, body="typo in the launch plan")
    services.message_delete(room=lobby, user=alice, message_id=message.pk)
    assert found(alice, "launch") == []


def test_room_filter_and_pages_newest_first(members, secret, lobby):
    """Hits come newest first; ``next_before`` continues without repeats; ``room`` narrows to one room."""
    alice, _ = members
    for i in range(5):
        services.message_post(room=lobby, author=alice, body=f"launch step {i}")
    first = message_search(user=alice, query=query_parse("launch"), limit=4)
    assert [h.message.body for h in first.hits] == [f"launch step {i}" for i in (4, 3, 2, 1)]
    rest = message_search(user=alice, query=query_parse("launch"), limit=4, before=first.next_before)
    assert [h.message.body for h in rest.hits] == ["launch step 0", "launch codes are 1234"]
    assert rest.next_before is None
    assert found(alice, "launch", room=secret) == ["launch codes are 1234"]


def test_stemming_prefix_and_phrase(members, lobby):
    """Words match their forms (deploying ~ deploy), ``dep*`` is a prefix, a quoted phrase keeps word order."""
    alice, _ = members
    services.message_post(room=lobby, author=alice, body="We are deploying the new build")
    services.message_post(room=lobby, author=alice, body="build new things")
    assert found(alice, "deploy") == ["We are deploying the new build"]
    assert found(alice, "dep*") == ["We are deploying the new build"]
    assert found(alice, '"new build"') == ["We are deploying the new build"]
    assert len(found(alice, "build new")) == 2
