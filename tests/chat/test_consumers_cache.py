"""A join served from the room's window (realtime.streams) gets what a database read gives, exactly.

Through the full ASGI stack on real Redis: one socket's join seeds the window from the
database; messages, an edit, a deletion and a reply then follow it live; later joins at
every kind of position are answered from the window (counted by the join metric), and
their history is compared with what the database would answer for the same position,
event for event. Joins while messages are being posted get each seq exactly once.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from chat import events, selectors
from chat.models import Room
from realtime import metrics
from tests.chat.test_consumers import connect

pytestmark = pytest.mark.django_db(transaction=True)

@pytest.fixture(autouse=True)
def _limits(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.REALTIME = {**settings.REALTIME, "RATE_BURST": 1000, "RATE_PER_SECOND": 1000.0,
                         "MAX_CONNECTIONS_PER_USER": 100, "HISTORY_PAGE": 5}


def cache_joins() -> float:
    return metrics.JOIN_HISTORY.labels(source="cache")._value.get()


async def join(comm: WebsocketCommunicator, last_seq: int | None = None) -> tuple[dict[str, Any], list[dict]]:
    """``joined`` and the history after it (read up to the receipts snapshot, the join's last event)."""
    frame: dict[str, Any] = {"type": "join", "room": "lobby"}
    if last_seq is not None:
        frame["last_seq"] = last_seq
    await comm.send_json_to(frame)
    joined, history = None, []
    while True:
        event = await comm.receive_json_from(timeout=5)
        if event["type"] == "joined":
            joined = event
        elif event["type"] in ("message", "message.deleted") and joined is not None:
            history.append(event)
        elif event["type"] == "receipts":
            assert joined is not None
            return joined, history


async def until(comm: WebsocketCommunicator, match) -> dict[str, Any]:
    while True:
        event = await comm.receive_json_from(timeout=5)
        if match(event):
            return event


def database_history(last_seq: int | None, page: int = 5) -> tuple[int, list[dict[str, Any]]]:
    """What the database answers a join at ``last_seq`` (the path before the cache)."""
    room = Room.objects.get(slug="lobby")
    resume = selectors.room_resume(room=room, last_seq=last_seq, page=page, cap=500)
    return resume.latest_seq, json.loads(json.dumps(events.message_events(resume.messages)))


async def test_a_join_from_the_window_gets_the_events_a_database_read_gives(people):
    """After posts, an edit, a deletion and replies (to the edited and to the deleted message), joins at
    no position, at 0, behind and at the latest are served from the window, with the database's events."""
    alice, bob = people
    a = await connect(alice)
    await join(a)  # the room is empty: the database answers, and seeds the window
    for i in range(1, 7):
        reply = {"reply_to": 2} if i == 5 else {"reply_to": 3} if i == 6 else {}
        await a.send_json_to({"type": "message", "room": "lobby", "body": f"**m{i}** https://example.com/{i}",
                              "client_id": f"c{i}", **reply})
        await until(a, lambda e, i=i: e["type"] == "message" and e["seq"] == i)
    ids = await sync_to_async(lambda: dict(Room.objects.get(slug="lobby").messages.values_list("seq", "id")))()
    await a.send_json_to({"type": "edit", "room": "lobby", "id": ids[2], "body": "m2 _edited_"})
    await until(a, lambda e: e["type"] == "message.updated")
    await a.send_json_to({"type": "delete", "room": "lobby", "id": ids[3]})
    await until(a, lambda e: e["type"] == "message.deleted")

    b = await connect(bob)
    for position in (None, 0, 4, 6):
        before = cache_joins()
        joined, history = await join(b, position)
        latest, expected = await sync_to_async(database_history)(position)
        assert cache_joins() == before + 1, f"position {position} was not served from the window"
        assert joined["seq"] == latest == 6 and joined["reset"] is False
        assert history == expected, f"position {position}"
    _, everything = await join(b, 0)
    by_seq = {e["seq"]: e for e in everything}
    assert by_seq[2]["body"] == "m2 _edited_" and "<em>edited</em>" in by_seq[2]["html"]
    assert by_seq[3]["type"] == "message.deleted"
    assert by_seq[5]["reply_to"]["excerpt"] == "m2 edited" and by_seq[6]["reply_to"]["deleted"] is True
    await a.disconnect(timeout=5)
    await b.disconnect(timeout=5)


async def test_joins_from_the_window_while_messages_are_posted_get_each_seq_once(people):
    """Ten sockets join at every kind of position while 30 messages are posted: each gets exactly the
    seqs after its position (or the latest page), in order, none twice, and most joins used the window."""
    alice, bob = people
    a = await connect(alice)
    await join(a)
    for i in range(1, 11):
        await a.send_json_to({"type": "message", "room": "lobby", "body": f"warm {i}", "client_id": f"w{i}"})
    await until(a, lambda e: e["type"] == "message" and e["seq"] == 10)
    sockets = [await connect(bob) for _ in range(10)]
    positions: list[int | None] = [None, 0, 5, 10, 9, None, 0, 5, 10, 9]
    final = 40
    before = cache_joins()

    async def post() -> None:
        for i in range(11, final + 1):
            await a.send_json_to({"type": "message", "room": "lobby", "body": f"m{i}", "client_id": f"c{i}"})
            await asyncio.sleep(0.005)

    async def joiner(comm: WebsocketCommunicator, position: int | None, delay: float) -> None:
        await asyncio.sleep(delay)
        joined, history = await join(comm, position)
        seqs = [e["seq"] for e in history]
        while max([joined["seq"], *seqs]) < final:
            event = await comm.receive_json_from(timeout=5)
            if event["type"] in ("message", "message.deleted"):
                seqs.append(event["seq"])
        while not await comm.receive_nothing(timeout=0.3):  # nothing repeated after the last
            assert (await comm.receive_json_from())["type"] not in ("message", "message.deleted")
        first = joined["seq"] - 5 + 1 if position is None else position + 1
        assert seqs == list(range(max(1, first), final + 1)), f"position {position}: {seqs}"

    await asyncio.gather(post(), *(joiner(s, p, 0.02 * i) for i, (s, p) in enumerate(zip(sockets, positions,
                                                                                              strict=True))))
    assert cache_joins() - before >= 5
    for comm in (a, *sockets):
        await comm.disconnect(timeout=5)


async def test_a_window_of_a_room_deleted_and_made_again_is_not_served(people):
    """A room deleted and created again under its slug while a socket kept its window: the next join
    is answered by the database (only the new room's message), and the window starts again from it."""
    from chat import services

    alice, bob = people
    a = await connect(alice)
    await join(a)
    for i in range(1, 4):
        await a.send_json_to({"type": "message", "room": "lobby", "body": f"old {i}", "client_id": f"o{i}"})
        await until(a, lambda e, i=i: e["type"] == "message" and e["seq"] == i)

    def remake() -> None:
        Room.objects.filter(slug="lobby").delete()
        room = Room.objects.create(slug="lobby", title="Lobby", is_public=True)
        services.room_enter(slug="lobby", user=alice)
        services.message_post(room=room, author=alice, body="new 1")

    await sync_to_async(remake)()
    await until(a, lambda e: e["type"] == "message" and e["body"] == "new 1")  # through the old window
    b = await connect(bob)
    before = cache_joins()
    joined, history = await join(b)
    assert cache_joins() == before  # not served from the old room's window
    assert joined["seq"] == 1 and [e["body"] for e in history] == ["new 1"]
    joined, history = await join(b, 0)
    assert cache_joins() == before + 1 and [e["body"] for e in history] == ["new 1"]
    await a.disconnect(timeout=5)
    await b.disconnect(timeout=5)


def database_joins() -> float:
    return metrics.JOIN_HISTORY.labels(source="database")._value.get()


async def test_joins_of_a_room_arriving_together_read_its_history_from_the_database_once(people):
    """Eight sockets join a room no socket of the process holds, all at once (a room's members
    after a deploy): one reads the history from the database, the other seven wait for that read
    and are answered from the window it seeded, and every one gets the database's latest page."""
    from chat import services

    alice, bob = people

    def post() -> None:
        room, _ = services.room_enter(slug="lobby", user=alice)
        for i in range(1, 9):
            services.message_post(room=room, author=alice, body=f"before {i}", client_id=f"b{i}")

    await sync_to_async(post)()  # committed and published with nobody subscribed: no window
    sockets = [await connect(bob if i % 2 else alice) for i in range(8)]
    cache0, database0 = cache_joins(), database_joins()
    answers = await asyncio.gather(*(join(s) for s in sockets))
    assert database_joins() - database0 == 1
    assert cache_joins() - cache0 == 7
    latest, expected = await sync_to_async(database_history)(None)
    for joined, history in answers:
        assert joined["seq"] == latest == 8
        assert json.loads(json.dumps(history)) == expected
    for comm in sockets:
        await comm.disconnect(timeout=5)
