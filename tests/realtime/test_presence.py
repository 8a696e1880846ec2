"""realtime.presence against the session's real Redis: entries live while refreshed, and
orphans go exactly once.

The refresh moves every local entry with one command per room and re-adds only entries
that were swept while their socket lived, returning who came back; the sweep of all
rooms runs in one round trip, and two processes sweeping the same orphan announce it once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from realtime import broadcast, presence
from realtime.runtime import Runtime

# No real user has this id: other tests' sockets never count towards it.
USER_ID = 987_654_321


async def _join_raw(r, room: str, member: str, name: str, expiry: float) -> None:
    """An entry with a chosen expiry, written as presence_join writes it (the join script, then the index)."""
    await r.eval(presence._JOIN, 2, presence._conns_key(room), presence._users_key(room), member, name, expiry)
    await r.sadd(presence.ROOMS_KEY, room)



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
    """Entries and connections a process refreshes stay present well past the TTL."""
    members = [("room-a", "ann", "c1"), ("room-a", "ann", "c2"), ("room-b", "bea", "c3")]
    rooms: dict[str, list[str]] = {}
    for room, name, conn in members:
        await _join_raw(_r(), room, presence.member_for(name, conn), name, time.time() + short_ttl)
        rooms.setdefault(room, []).append(presence.member_for(name, conn))
    connections = {USER_ID: ["c1", "c2", "c3"]}
    for _ in range(3):
        await asyncio.sleep(short_ttl * 0.6)
        assert await presence.presence_refresh(rooms=rooms, connections=connections) == {}
        swept = await presence.presence_sweep()  # (other tests' leftovers may be swept too)
        assert not {"room-a", "room-b"} & set(swept)
    assert await presence.presence_list(room="room-a") == ["ann"]
    assert await presence.presence_list(room="room-b") == ["bea"]
    assert await presence.sockets_in("room.room-a") == 2
    assert await presence.sockets_in(f"user.{USER_ID}") == 3
    # "everyone" counts other tests' live sockets too: check these entries.
    now = time.time()
    for conn in ("c1", "c2", "c3"):
        assert await _r().zscore(presence.ALL_CONNS_KEY, f"{USER_ID}:{conn}") > now


async def test_an_entry_swept_while_its_socket_lives_comes_back_once(short_ttl: int) -> None:
    """When Redis or the process stalled past the TTL and the entry was swept (the sweep
    returns the departure), the next refresh re-adds it and returns the user as back, once."""
    member = presence.member_for("cid", "c9")
    await _join_raw(_r(), "room-s", member, "cid", time.time() + short_ttl)
    await asyncio.sleep(short_ttl + 0.2)  # a stall: no refresh within the TTL
    swept = await presence.presence_sweep()
    # This sweep, or a live server's of an earlier test (they share this Redis), swept it.
    assert swept.get("room-s") in (["cid"], None)
    assert await presence.presence_list(room="room-s") == []
    rooms = {"room-s": [member]}
    assert await presence.presence_refresh(rooms=rooms, connections={}) == {"room-s": ["cid"]}
    # The second finds it present: nothing more to announce.
    assert await presence.presence_refresh(rooms=rooms, connections={}) == {}
    assert await presence.presence_list(room="room-s") == ["cid"]


async def test_an_orphan_is_swept_once_even_by_two_processes(short_ttl: int) -> None:
    """A socket whose process died is refreshed by nobody: it expires, and of the runtimes
    refreshing at once exactly one announces the departure; other users stay."""
    now = time.time()
    r = _r()
    for name, conn, expiry in [("orphan", "o1", now + 0.5), ("alive", "a1", now + 60)]:
        await _join_raw(r, "room-o", presence.member_for(name, conn), name, expiry)
    async with broadcast.alisten(broadcast.room_group("room-o")) as queue:
        await asyncio.sleep(0.7)
        loop = asyncio.get_running_loop()
        first, second = Runtime(loop), Runtime(loop)  # two processes' runtimes, as far as Redis can tell
        await asyncio.gather(first.presence_refresh(), second.presence_refresh())
        events = await _announcements(queue)
    # One of them (or a live server sharing this Redis) swept it, and the room heard of
    # the departure exactly once.
    assert [e["left"] for e in events] == [["orphan"]]
    assert await presence.presence_list(room="room-o") == ["alive"]
