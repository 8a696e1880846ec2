"""realtime.broadcast's commit hooks: published after commit, in commit order, never before.

On a server thread (a consumer's database call) the hook queues the message on the
server's loop and returns at once; the outbox publishes what accumulated in one
pipelined round trip. These prove the order and that a rolled-back change is not sent.
"""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.db import transaction

from realtime import broadcast

pytestmark = pytest.mark.django_db(transaction=True)


async def _received(queue: asyncio.Queue, count: int) -> list[int]:
    got = []
    while len(got) < count:
        got.append((await asyncio.wait_for(queue.get(), 10))["event"]["n"])
    return got


async def test_commits_on_a_server_thread_are_published_in_commit_order(db) -> None:
    """300 commits in a row from the database thread arrive in the order they committed,
    each once, although the thread never waits for Redis (the outbox batches them)."""

    def commit_many() -> None:
        for n in range(300):
            with transaction.atomic():
                broadcast.room_send_on_commit("outbox-order", {"type": "tick", "n": n})
                if n % 3 == 0:
                    broadcast.user_send_on_commit(42, {"type": "tick", "n": n})

    async with broadcast.alisten(broadcast.room_group("outbox-order")) as room, \
            broadcast.alisten(broadcast.user_group(42)) as user:
        await database_sync_to_async(commit_many)()
        assert await _received(room, 300) == list(range(300))
        assert await _received(user, 100) == list(range(0, 300, 3))
        await asyncio.sleep(0.2)
        assert room.empty() and user.empty()


async def test_a_rolled_back_change_is_never_published(db) -> None:
    """A hook registered in a transaction that rolls back sends nothing; the next commit does."""

    def roll_back_then_commit() -> None:
        try:
            with transaction.atomic():
                broadcast.room_send_on_commit("outbox-rollback", {"type": "tick", "n": 1})
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        with transaction.atomic():
            broadcast.room_send_on_commit("outbox-rollback", {"type": "tick", "n": 2})

    async with broadcast.alisten(broadcast.room_group("outbox-rollback")) as queue:
        await database_sync_to_async(roll_back_then_commit)()
        assert await _received(queue, 1) == [2]
        await asyncio.sleep(0.2)
        assert queue.empty()


async def test_every_event_envelope_has_the_same_fields_whoever_sends_it() -> None:
    """Events sent by the broadcast API, by the push API and by the runtime's presence
    announcer arrive in envelopes built in one place: the same fields, ``ts`` included."""
    from realtime import push

    room = broadcast.room_group("envelopes")
    async with broadcast.alisten(room) as queue:
        await broadcast.aroom_send("envelopes", {"type": "tick"})
        await push.apush_room("envelopes", {"type": "announcement", "body": "x"}, event_id="e-1")
        await broadcast.apresence_send("envelopes", joined=["ann"], left=[])
        got = [await asyncio.wait_for(queue.get(), 5) for _ in range(3)]
    expected = set(broadcast.room_envelope("envelopes", {}))
    assert [set(m) for m in got] == [expected] * 3
    assert all(isinstance(m["ts"], float) and m["room"] == "envelopes" for m in got)
