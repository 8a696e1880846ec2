"""Direct messages and private rooms over the socket (ChatConsumer, WebsocketCommunicator, real Redis).

What the page relies on: a new DM or an invite appears on the other person's open
socket at once; a removed member's socket leaves the room at once; a DM message reaches
the other member's socket whatever room it has open.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from chat import services
from tests.chat.test_consumers import connect, drain, join, recv

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def people(make_user, lobby):
    found = {name: make_user(name) for name in ("alice", "bob")}
    for user in found.values():
        services.room_enter(slug="lobby", user=user)
    return found


async def test_a_dm_appears_live_and_its_messages_reach_a_socket_in_another_room(people):
    """bob, in the lobby, hears room.added when alice opens their DM, then dm for her message; he can join it."""
    bob = await connect(people["bob"])
    await join(bob, "lobby")
    room, _ = await sync_to_async(services.dm_open)(opener=people["alice"], usernames=["bob"])
    added = await recv(bob, type_="room.added")
    assert added["room"] == room.slug and added["entry"]["people"] == [{"user": "alice", "name": "alice"}]
    await sync_to_async(services.message_post)(room=room, author=people["alice"], body="lunch?")
    dm = await recv(bob, type_="dm")
    assert (dm["room"], dm["seq"], dm["author"], dm["body"]) == (room.slug, 1, "alice", "lunch?")
    assert [e for e in await drain(bob) if e["type"] == "message"] == []  # the DM's messages need a join
    joined = await join(bob, room.slug)
    assert joined["seq"] == 1
    assert (await recv(bob, type_="message"))["body"] == "lunch?"
    await bob.disconnect()


async def test_an_invite_appears_live_and_a_removal_takes_the_socket_out(people):
    """bob's socket hears room.added on the invite; after removal it gets removed, room.removed, and nothing more."""
    alice, bob = people["alice"], people["bob"]
    room = await sync_to_async(services.room_create)(slug="design", title="Design", is_public=False, created_by=alice)
    b = await connect(bob)
    await sync_to_async(services.member_invite)(room=room, by=alice, username="bob")
    assert (await recv(b, type_="room.added"))["entry"]["slug"] == "design"
    await join(b, "design")
    await drain(b)  # the join's own snapshots (reactions, receipts)
    await sync_to_async(services.member_remove)(room=room, by=alice, username="bob")
    seen = {}
    while len(seen) < 2:  # the control runs on its own task: either may come first
        event = await recv(b)
        if event["type"] in ("removed", "room.removed"):
            seen[event["type"]] = event
    assert seen["removed"] == {"type": "removed", "room": "design", "reason": "removed"}
    assert seen["room.removed"] == {"type": "room.removed", "room": "design", "reason": "removed"}
    await sync_to_async(services.message_post)(room=room, author=alice, body="after you left")
    assert [e for e in await drain(b) if e.get("room") == "design"] == []
    await b.send_json_to({"type": "join", "room": "design"})
    assert (await recv(b))["code"] == "forbidden"
    await b.disconnect()
