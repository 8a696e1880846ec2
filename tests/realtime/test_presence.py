"""realtime.presence against the session's real Redis: entries live while refreshed, and
orphans go exactly once.

The refresh moves every local entry with one command per room and re-adds, with an
announcement, only entries that were swept while their socket lived; the sweep of all
rooms runs in one round trip, and two processes sweeping the same orphan announce it once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from realtime import broadcast, presence
from realtime.presence import _Tracker

# No real user has this id: other tests' sockets never count towards it.
USER_ID = 987_654_321


@pytest.fixture
def short_ttl(settings: Any) -> int:
    settings.REALTIME = {**settings.REALTIME, "PRESENCE_TTL": 2}
    return 2


async def _announcements(queue: asyncio.Queue) -> list[dict[str, Any]]:
    await asyncio.sleep(0.3)
    found = []
    while not queue.empty():
        found.append(queue.get_nowait()["event"])
    return found


def _r() -> Redis:
    return presence.redis_async()


async def test_refreshed_entries_outlive_their_ttl_and_count_as_open_sockets(short_ttl: int) -> None:
    """Entries and connections this process refreshes stay present well past the TTL."""
    tracker = _Tracker()
    members = [("room-a", "ann", "c1"), ("room-a", "ann", "c2"), ("room-b", "bea", "c3")]
    for room, name, conn in members:
        await _r().eval(presence._JOIN, 3, presence._conns_key(room), presence._users_key(room), presence.ROOMS_KEY,
                        presence.member_for(name, conn), name, time.time() + short_ttl, room)
        tracker.track(room, presence.member_for(name, conn))
        tracker.track_connection(USER_ID, conn)
    tracker.task.cancel()
    for _ in range(3):
        await asyncio.sleep(short_ttl * 0.6)
        await tracker.refresh()
        swept = await presence.presence_sweep()  # (other tests' leftovers may be swept too)
        assert not {"room-a", "room-b"} & set(swept)
    assert await presence.presence_list(room="room-a") == ["ann"]
    assert await presence.presence_list(room="room-b") == ["bea"]
    assert await presence.sockets_in("room.room-a") == 2
    assert await presence.sockets_in(f"user.{USER_ID}") == 3
    # "everyone" counts other tests' live sockets too: check this tracker's own entries.
    now = time.time()
    for conn in ("c1", "c2", "c3"):
        assert await _r().zscore(presence.ALL_CONNS_KEY, f"{USER_ID}:{conn}") > now


async def test_an_entry_swept_while_its_socket_lives_comes_back_announced(short_ttl: int) -> None:
    """When Redis or the process stalled past the TTL and the entry was swept (departure
    announced), the next refresh re-adds it and announces the user again, once."""
    tracker = _Tracker()
    member = presence.member_for("cid", "c9")
    await _r().eval(presence._JOIN, 3, presence._conns_key("room-s"), presence._users_key("room-s"),
                    presence.ROOMS_KEY, member, "cid", time.time() + short_ttl, "room-s")
    tracker.track("room-s", member)
    tracker.task.cancel()
    async with broadcast.alisten(broadcast.room_group("room-s")) as queue:
        await asyncio.sleep(short_ttl + 0.2)  # a stall: no refresh within the TTL
        # This sweep, or a live server's of an earlier test (they share this Redis), sweeps it.
        await presence.presence_sweep()
        await tracker.refresh()
        await tracker.refresh()  # the second finds it present: nothing more to announce
        events = await _announcements(queue)
    assert [(e["joined"], e["left"]) for e in events] == [([], ["cid"]), (["cid"], [])]
    assert await presence.presence_list(room="room-s") == ["cid"]


async def test_an_orphan_is_swept_once_even_by_two_processes(short_ttl: int) -> None:
    """A socket whose process died is refreshed by nobody: it expires, and of the processes
    sweeping at once exactly one announces the departure; other users stay."""
    now = time.time()
    r = _r()
    for name, conn, expiry in [("orphan", "o1", now + 0.5), ("alive", "a1", now + 60)]:
        await r.eval(presence._JOIN, 3, presence._conns_key("room-o"), presence._users_key("room-o"),
                     presence.ROOMS_KEY, presence.member_for(name, conn), name, expiry, "room-o")
    async with broadcast.alisten(broadcast.room_group("room-o")) as queue:
        await asyncio.sleep(0.7)
        first, second = await asyncio.gather(presence.presence_sweep(), presence.presence_sweep())
        events = await _announcements(queue)
    # Exactly one sweeper reported it (these two, or a live server sharing this Redis)...
    assert [s.get("room-o") for s in (first, second)].count(["orphan"]) <= 1
    # ...and the room heard of the departure exactly once.
    assert [e["left"] for e in events] == [["orphan"]]
    assert await presence.presence_list(room="room-o") == ["alive"]
