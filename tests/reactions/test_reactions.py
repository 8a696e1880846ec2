"""Reactions, built only on realtime.features: live counts for the room, and counts on resume."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from tests.chat.test_consumers import connect, drain, join, recv

pytestmark = pytest.mark.django_db(transaction=True)


async def post(comm, body: str) -> dict:
    await comm.send_json_to({"type": "message", "room": "lobby", "body": body})
    return await recv(comm, type_="message")


async def test_reaction_counts_update_live_for_everyone(people):
    """Adding and removing a reaction sends the new count to everyone in the room; a repeat sends nothing."""
    alice, bob = people
    a, b = await connect(alice), await connect(bob)
    await join(a)
    await join(b)
    msg = await post(a, "react to me")
    await recv(b, type_="message")
    await b.send_json_to({"type": "react", "room": "lobby", "id": msg["id"], "emoji": "👍"})
    for comm in (a, b):
        got = await recv(comm, type_="reaction")
        assert got == {"type": "reaction", "room": "lobby", "id": msg["id"], "seq": msg["seq"], "emoji": "👍",
                       "count": 1, "user": "bob", "action": "add"}
    await a.send_json_to({"type": "react", "room": "lobby", "id": msg["id"], "emoji": "👍"})
    assert (await recv(b, type_="reaction"))["count"] == 2
    assert (await recv(a, type_="reaction"))["count"] == 2
    await b.send_json_to({"type": "react", "room": "lobby", "id": msg["id"], "emoji": "👍"})  # again: no-op
    await b.send_json_to({"type": "unreact", "room": "lobby", "id": msg["id"], "emoji": "👍"})
    got = await recv(a, type_="reaction")
    assert got["count"] == 1 and got["action"] == "remove"
    await a.disconnect()
    await b.disconnect()


async def test_reactions_arrive_on_resume(people):
    """A client that was away gets the reactions made meanwhile in the `reactions` snapshot after joined."""
    alice, bob = people
    a = await connect(alice)
    await join(a)
    msg = await post(a, "while you were out")
    await a.disconnect()
    b = await connect(bob)
    await join(b)
    await b.send_json_to({"type": "react", "room": "lobby", "id": msg["id"], "emoji": "🎉"})
    await recv(b, type_="reaction")
    await b.disconnect()
    a = await connect(alice)
    await join(a, last_seq=msg["seq"])
    snapshot = await recv(a, type_="reactions")
    assert snapshot["items"] == [{"id": msg["id"], "seq": msg["seq"], "emoji": "🎉", "count": 1, "mine": False}]
    await a.disconnect()


async def test_reactions_are_refused_outside_the_room_and_on_bad_input(people, make_user):
    """Not joined: not_joined; unknown message: message_not_found; a non-emoji string: invalid_field."""
    alice, bob = people
    a = await connect(alice)
    await join(a)
    msg = await post(a, "hi")
    b = await connect(bob)
    await b.send_json_to({"type": "react", "room": "lobby", "id": msg["id"], "emoji": "👍"})
    assert (await recv(b, type_="error"))["code"] == "not_joined"
    await join(b)
    await b.send_json_to({"type": "react", "room": "lobby", "id": 999999, "emoji": "👍"})
    assert (await recv(b, type_="error"))["code"] == "message_not_found"
    await b.send_json_to({"type": "react", "room": "lobby", "id": msg["id"], "emoji": "x" * 40})
    err = await recv(b, type_="error")
    assert err["code"] == "invalid_field" and err["field"] == "emoji"
    from reactions.models import Reaction

    assert await sync_to_async(Reaction.objects.count)() == 0
    assert [e for e in await drain(a) if e["type"] == "reaction"] == []
    await a.disconnect()
    await b.disconnect()
