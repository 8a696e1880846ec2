"""Who is connected, to which room, on every process: presence without orphans.

Redis holds, per room, a sorted set of connection entries (``username|conn``) scored by
their expiry time, and a hash of usernames to their number of entries, so two tabs of
one user are one presence entry. Each process refreshes the entries of its own sockets
every ``PRESENCE_TTL / 3`` seconds. A socket that vanishes without a close (crashed
browser, killed process, cut network) stops being refreshed and is swept once its entry
expires; whichever process sweeps it first announces the departure — the Lua scripts
make each change atomic, so it is announced exactly once.

The same mechanism caps the number of open sockets per user (``MAX_CONNECTIONS_PER_USER``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass, field

from django.conf import settings

from realtime import broadcast
from realtime.redis_pool import redis_async, redis_sync

logger = logging.getLogger(__name__)

ROOMS_KEY = "presence:rooms"
# Every open socket on every process ("user_id:conn"), scored by expiry: counts for pushes.
ALL_CONNS_KEY = "conns:all"


def _conns_key(room: str) -> str:
    return f"presence:{room}:conns"


def _users_key(room: str) -> str:
    return f"presence:{room}:users"


def _user_conns_key(user_id: int) -> str:
    return f"conns:user:{user_id}"


def _ttl() -> int:
    return settings.REALTIME["PRESENCE_TTL"]


# KEYS: conns, users, rooms. ARGV: member, username, expiry, room.
# Returns 1 when the user became present in the room.
_JOIN = """
local added = redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[4])
if added == 1 then
  return redis.call('HINCRBY', KEYS[2], ARGV[2], 1) == 1 and 1 or 0
end
return 0
"""

# KEYS: conns, users. ARGV: member, username. Returns 1 when the user left the room.
_LEAVE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  local n = redis.call('HINCRBY', KEYS[2], ARGV[2], -1)
  if n <= 0 then
    redis.call('HDEL', KEYS[2], ARGV[2])
    return 1
  end
end
return 0
"""

# KEYS: conns, users, rooms. ARGV: now, room. Returns the usernames that left.
_SWEEP = """
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local gone = {}
for _, member in ipairs(expired) do
  redis.call('ZREM', KEYS[1], member)
  local name = string.match(member, '^(.*)|[^|]*$')
  local n = redis.call('HINCRBY', KEYS[2], name, -1)
  if n <= 0 then
    redis.call('HDEL', KEYS[2], name)
    table.insert(gone, name)
  end
end
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[3], ARGV[2])
end
return gone
"""

# KEYS: user conns, all conns. ARGV: now, member, expiry, cap, global member.
# Returns 1 if the socket may open.
_CONNECT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
redis.call('EXPIRE', KEYS[1], 86400)
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[5])
return 1
"""


def member_for(username: str, conn_id: str) -> str:
    """The presence entry of one socket of one user."""
    return f"{username}|{conn_id}"


async def presence_join(*, room: str, username: str, conn_id: str) -> bool:
    """Record a socket in a room; True when its user was not present before."""
    r = redis_async()
    expiry = time.time() + _ttl()
    member = member_for(username, conn_id)
    became = await r.eval(_JOIN, 3, _conns_key(room), _users_key(room), ROOMS_KEY, member, username, expiry, room)
    _tracker().track(room, member)
    return bool(became)


async def presence_leave(*, room: str, username: str, conn_id: str) -> bool:
    """Remove a socket from a room; True when its user has no other socket there."""
    member = member_for(username, conn_id)
    _tracker().untrack(room, member)
    r = redis_async()
    return bool(await r.eval(_LEAVE, 2, _conns_key(room), _users_key(room), member, username))


async def presence_list(*, room: str) -> list[str]:
    """The usernames present in a room, sorted."""
    names = await redis_async().hkeys(_users_key(room))
    return sorted(n.decode() for n in names)


def presence_snapshot() -> dict[str, list[str]]:
    """Every room with someone present, and who (sync; for the admin's live view)."""
    r = redis_sync()
    rooms = sorted(m.decode() for m in r.smembers(ROOMS_KEY))
    result: dict[str, list[str]] = {}
    for room in rooms:
        names = sorted(n.decode() for n in r.hkeys(_users_key(room)))
        if names:
            result[room] = names
    return result


async def presence_sweep() -> dict[str, list[str]]:
    """Expire stale entries in every room and announce who left; returns that.

    One round trip for all rooms (a pipeline of the sweep script, run by its SHA).
    """
    r = redis_async()
    now = time.time()
    rooms = sorted(raw.decode() for raw in await r.smembers(ROOMS_KEY))
    if not rooms:
        return {}
    sweep = r.register_script(_SWEEP)
    async with r.pipeline(transaction=False) as pipe:
        for room in rooms:
            await sweep(keys=[_conns_key(room), _users_key(room), ROOMS_KEY], args=[now, room], client=pipe)
        results = await pipe.execute()
    departed: dict[str, list[str]] = {}
    for room, gone in zip(rooms, results, strict=True):
        if gone:
            names = sorted(g.decode() for g in gone)
            departed[room] = names
            await broadcast.aroom_send(room, {"type": "presence", "room": room, "joined": [], "left": names})
    return departed


async def connection_open(*, user_id: int, conn_id: str) -> bool:
    """Count a new socket against the user's cap; False when the cap is reached."""
    now = time.time()
    ok = await redis_async().eval(
        _CONNECT, 2, _user_conns_key(user_id), ALL_CONNS_KEY, now, conn_id, now + _ttl(),
        settings.REALTIME["MAX_CONNECTIONS_PER_USER"], f"{user_id}:{conn_id}",
    )
    if ok:
        _tracker().track_connection(user_id, conn_id)
    return bool(ok)


async def connection_close(*, user_id: int, conn_id: str) -> None:
    """Release a socket's place in the user's cap."""
    _tracker().untrack_connection(user_id, conn_id)
    async with redis_async().pipeline(transaction=False) as pipe:
        pipe.zrem(_user_conns_key(user_id), conn_id)
        pipe.zrem(ALL_CONNS_KEY, f"{user_id}:{conn_id}")
        await pipe.execute()


async def sockets_in(group: str) -> int:
    """Open sockets in a broadcast group (``room.X``, ``user.N``, ``everyone``), on every process."""
    r = redis_async()
    now = time.time()
    if group.startswith("room."):
        return await r.zcount(_conns_key(group[5:]), now, "+inf")
    if group.startswith("user."):
        return await r.zcount(_user_conns_key(int(group[5:])), now, "+inf")
    if group == "everyone":
        await r.zremrangebyscore(ALL_CONNS_KEY, "-inf", now)
        return await r.zcard(ALL_CONNS_KEY)
    return 0


@dataclass
class _Tracker:
    """This process's sockets' entries, refreshed in the background until they close."""

    rooms: dict[str, set[str]] = field(default_factory=dict)
    connections: dict[int, set[str]] = field(default_factory=dict)
    task: asyncio.Task | None = None

    def _ensure_running(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._refresh_forever())

    def track(self, room: str, member: str) -> None:
        self.rooms.setdefault(room, set()).add(member)
        self._ensure_running()

    def untrack(self, room: str, member: str) -> None:
        members = self.rooms.get(room)
        if members is not None:
            members.discard(member)
            if not members:
                del self.rooms[room]

    def track_connection(self, user_id: int, conn_id: str) -> None:
        self.connections.setdefault(user_id, set()).add(conn_id)
        self._ensure_running()

    def untrack_connection(self, user_id: int, conn_id: str) -> None:
        conns = self.connections.get(user_id)
        if conns is not None:
            conns.discard(conn_id)
            if not conns:
                del self.connections[user_id]

    async def refresh(self) -> None:
        """Push every local entry's expiry forward, re-adding any that was swept meanwhile.

        One ``ZADD XX CH`` per room moves every entry of this process's sockets at once;
        only when it moved fewer than it was given (an entry was swept while its socket
        is alive: Redis or this process stalled past the TTL) are that room's entries
        re-added one by one with the join script, which announces the user again.
        """
        r = redis_async()
        expiry = time.time() + _ttl()
        rooms = [(room, list(members)) for room, members in list(self.rooms.items()) if members]
        if rooms:
            async with r.pipeline(transaction=False) as pipe:
                for room, snapshot in rooms:
                    pipe.zadd(_conns_key(room), dict.fromkeys(snapshot, expiry), xx=True, ch=True)
                moved = await pipe.execute()
            for (room, snapshot), count in zip(rooms, moved, strict=True):
                if count < len(snapshot):
                    await self._rejoin(r, room, snapshot, expiry)
        connections = [(user_id, list(conns)) for user_id, conns in list(self.connections.items()) if conns]
        if connections:
            async with r.pipeline(transaction=False) as pipe:
                for user_id, conns in connections:
                    pipe.zadd(_user_conns_key(user_id), dict.fromkeys(conns, expiry))
                pipe.zadd(ALL_CONNS_KEY, {f"{user_id}:{c}": expiry for user_id, conns in connections for c in conns})
                await pipe.execute()

    @staticmethod
    async def _rejoin(r, room: str, snapshot: list[str], expiry: float) -> None:
        async with r.pipeline(transaction=False) as pipe:
            for member in snapshot:
                username = member.rsplit("|", 1)[0]
                pipe.eval(_JOIN, 3, _conns_key(room), _users_key(room), ROOMS_KEY, member, username, expiry, room)
            results = await pipe.execute()
        back = sorted({m.rsplit("|", 1)[0] for m, became in zip(snapshot, results, strict=True) if became})
        if back:
            await broadcast.aroom_send(room, {"type": "presence", "room": room, "joined": back, "left": []})

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, _ttl() / 3))
            try:
                await self.refresh()
                await presence_sweep()
            except Exception:
                # Redis may be down; the entries expire on their own and are swept later.
                logger.warning("presence refresh failed", exc_info=True)


_trackers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Tracker] = weakref.WeakKeyDictionary()


def _tracker() -> _Tracker:
    loop = asyncio.get_running_loop()
    tracker = _trackers.get(loop)
    if tracker is None:
        tracker = _trackers[loop] = _Tracker()
    return tracker
