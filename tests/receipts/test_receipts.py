"""Read receipts, built only on realtime.features: persisted, live, and the same on every tab."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from tests.chat.test_consumers import connect, drain, join, recv

pytestmark = pytest.mark.django_db(transaction=True)


async def test_read_position_reaches_every_tab_and_the_room_and_persists(people):
    """Marking read on one tab updates the user's other tab (read) and the room (receipt), and is stored."""
    alice, bob = people
    tab1, tab2, b = await connect(alice), await connect(alice), await connect(bob)
    for comm in (tab1, tab2, b):
        await join(comm)
        assert (await recv(comm, type_="read"))["seq"] == 0  # the join hook's current position
    for i in range(3):
        await b.send_json_to({"type": "message", "room": "lobby", "body": f"m{i}"})
        await recv(b, type_="message")
    await tab1.send_json_to({"type": "read", "room": "lobby", "seq": 2})
    assert (await recv(tab2, type_="read")) == {"type": "read", "room": "lobby", "seq": 2}
    assert (await recv(b, type_="receipt")) == {"type": "receipt", "room": "lobby", "user": "alice", "seq": 2}
    # Going backwards (a stale tab) changes nothing; beyond the latest is clamped.
    await tab2.send_json_to({"type": "read", "room": "lobby", "seq": 1})
    await tab2.send_json_to({"type": "read", "room": "lobby", "seq": 99})
    assert [(await recv(tab1, type_="read"))["seq"] for _ in range(2)] == [2, 3]  # its own mark, then tab2's
    # A new device gets the stored position after joined, and the unread API agrees.
    phone = await connect(alice)
    await join(phone)
    assert (await recv(phone, type_="read"))["seq"] == 3
    assert (await recv(phone, type_="receipts"))["positions"] == [{"user": "alice", "seq": 3}]
    await drain(tab1)
    client = Client()
    await sync_to_async(client.force_login)(alice)
    data = (await sync_to_async(client.get)("/api/receipts/")).json()
    assert data["rooms"]["lobby"] == {"last_seq": 3, "read_seq": 3, "unread": 0}
    for comm in (tab1, tab2, b, phone):
        await comm.disconnect()


async def test_unread_counts_per_room(people):
    """Unread = the room's latest seq minus the user's read position, per room."""
    alice, bob = people
    b = await connect(bob)
    await join(b)
    for i in range(4):
        await b.send_json_to({"type": "message", "room": "lobby", "body": f"m{i}"})
        await recv(b, type_="message")
    client = Client()
    await sync_to_async(client.force_login)(alice)
    data = (await sync_to_async(client.get)("/api/receipts/")).json()
    assert data["rooms"]["lobby"]["unread"] == 4
    await b.disconnect()


async def test_read_requires_a_joined_room(people):
    """Reading a room the socket has not joined is refused with not_joined."""
    alice, _ = people
    a = await connect(alice)
    await a.send_json_to({"type": "read", "room": "lobby", "seq": 1})
    assert (await recv(a, type_="error"))["code"] == "not_joined"
    await a.disconnect()
