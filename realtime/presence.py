"""Who is connected, to which room, on every process: presence without orphans.

Redis holds, per room, a sorted set of connection entries (``username|conn``) scored by
their expiry time, and a hash of usernames to their number of entries, so two tabs of
one user are one presence entry. Each process refreshes the entries of its own sockets
every ``PRESENCE_TTL / 3`` seconds (the runtime's refresh, realtime.runtime). A socket
that vanishes without a close (crashed browser, killed process, cut network) stops being
refreshed and is swept once its entry expires; the sweep returns who left to whichever
process swept it first, which announces the departure — the Lua scripts make each change
atomic, so it is announced exactly once.

This module only stores and answers: it sends nothing. Who joined or left is returned to
the caller (the chat, the runtime's refresh), which announces it through realtime.broadcast.

The same mechanism caps the number of open sockets per user (``MAX_CONNECTIONS_PER_USER``).

Keys are Redis Cluster safe: a room's keys share the hash tag ``{room}``, a user's socket
count ``{user:N}``, so each script touches one slot; the two process-wide indexes (rooms
with presence, every open socket) are separate keys updated next to the scripts, in the
same pipeline, which a cluster client splits by shard.
"""

from __future__ import annotations

import time

from django.conf import settings

from realtime.redis_pool import redis_async, redis_sync

ROOMS_KEY = "presence:rooms"
# Every open socket on every process ("user_id:conn"), scored by expiry: counts for pushes.
ALL_CONNS_KEY = "conns:all"


def _conns_key(room: str) -> str:
    return f"presence:{{{room}}}:conns"


def _users_key(room: str) -> str:
    return f"presence:{{{room}}}:users"


def _user_conns_key(user_id: int) -> str:
    return f"conns:{{user:{user_id}}}"


def _ttl() -> int:
    return settings.REALTIME["PRESENCE_TTL"]


# KEYS: conns, users. ARGV: member, username, expiry.
# Returns 1 when the user became present in the room.
_JOIN = """
local added = redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
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

# KEYS: conns, users. ARGV: now. Returns {whether the room is empty now, the usernames that left...}.
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
local empty = redis.call('ZCARD', KEYS[1]) == 0 and 1 or 0
table.insert(gone, 1, empty)
return gone
"""

# KEYS: user conns. ARGV: now, member, expiry, cap. Returns 1 if the socket may open.
_CONNECT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
redis.call('EXPIRE', KEYS[1], 86400)
return 1
"""


def member_for(username: str, conn_id: str) -> str:
    """The presence entry of one socket of one user."""
    return f"{username}|{conn_id}"


async def presence_join(*, room: str, username: str, conn_id: str) -> bool:
    """Record a socket in a room; True when its user was not present before."""
    expiry = time.time() + _ttl()
    member = member_for(username, conn_id)
    async with redis_async().pipeline(transaction=False) as pipe:
        pipe.eval(_JOIN, 2, _conns_key(room), _users_key(room), member, username, expiry)
        pipe.sadd(ROOMS_KEY, room)  # after the entry: a sweep that emptied the room re-adds it (presence_sweep)
        became, _ = await pipe.execute()
    return bool(became)


async def presence_enter(*, room: str, username: str, conn_id: str) -> tuple[bool, list[str]]:
    """:func:`presence_join`, then :func:`presence_list`, in one round trip (a join needs both)."""
    expiry = time.time() + _ttl()
    member = member_for(username, conn_id)
    async with redis_async().pipeline(transaction=False) as pipe:
        pipe.eval(_JOIN, 2, _conns_key(room), _users_key(room), member, username, expiry)
        pipe.sadd(ROOMS_KEY, room)  # after the entry: a sweep that emptied the room re-adds it (presence_sweep)
        pipe.hkeys(_users_key(room))
        became, _, names = await pipe.execute()
    return bool(became), sorted(n.decode() for n in names)


async def presence_leave(*, room: str, username: str, conn_id: str) -> bool:
    """Remove a socket from a room; True when its user has no other socket there."""
    member = member_for(username, conn_id)
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
    """Expire stale entries in every room; returns, per room, the users who left (to announce).

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
            await sweep(keys=[_conns_key(room), _users_key(room)], args=[now], client=pipe)
        results = await pipe.execute()
    departed: dict[str, list[str]] = {}
    emptied = []
    for room, (empty, *gone) in zip(rooms, results, strict=True):
        if gone:
            departed[room] = sorted(g.decode() for g in gone)
        if empty:
            emptied.append(room)
    if emptied:
        # The index is another key (another slot in a cluster): drop the room, then look
        # again; a join that added an entry meanwhile added the room after its entry, or
        # is seen here and the room goes back.
        await r.srem(ROOMS_KEY, *emptied)
        async with r.pipeline(transaction=False) as pipe:
            for room in emptied:
                pipe.zcard(_conns_key(room))
            counts = await pipe.execute()
        refilled = [room for room, count in zip(emptied, counts, strict=True) if count]
        if refilled:
            await r.sadd(ROOMS_KEY, *refilled)
    return departed


async def connection_open(*, user_id: int, conn_id: str) -> bool:
    """Count a new socket against the user's cap; False when the cap is reached."""
    now = time.time()
    r = redis_async()
    everyone = f"{user_id}:{conn_id}"
    async with r.pipeline(transaction=False) as pipe:
        pipe.eval(_CONNECT, 1, _user_conns_key(user_id), now, conn_id, now + _ttl(),
                  settings.REALTIME["MAX_CONNECTIONS_PER_USER"])
        pipe.zadd(ALL_CONNS_KEY, {everyone: now + _ttl()})  # another slot in a cluster: next to the script
        ok, _ = await pipe.execute()
    if not ok:
        await r.zrem(ALL_CONNS_KEY, everyone)
    return bool(ok)


async def connection_close(*, user_id: int, conn_id: str) -> None:
    """Release a socket's place in the user's cap."""
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


async def presence_refresh(*, rooms: dict[str, list[str]], connections: dict[int, list[str]]) -> dict[str, list[str]]:
    """Push a process's entries' expiry forward; returns, per room, the users who came back (to announce).

    ``rooms``: room -> the process's members (:func:`member_for`); ``connections``: user
    id -> their conn ids. One ``ZADD XX CH`` per room moves every entry at once; only when
    it moved fewer than it was given (an entry was swept while its socket is alive: Redis
    or the process stalled past the TTL) are that room's entries re-added one by one with
    the join script, and the users it made present again are returned.
    """
    r = redis_async()
    expiry = time.time() + _ttl()
    back: dict[str, list[str]] = {}
    rooms_now = [(room, members) for room, members in rooms.items() if members]
    if rooms_now:
        async with r.pipeline(transaction=False) as pipe:
            for room, members in rooms_now:
                pipe.zadd(_conns_key(room), dict.fromkeys(members, expiry), xx=True, ch=True)
            moved = await pipe.execute()
        for (room, members), count in zip(rooms_now, moved, strict=True):
            if count < len(members):
                names = await _rejoin(r, room, members, expiry)
                if names:
                    back[room] = names
    conns_now = [(user_id, conns) for user_id, conns in connections.items() if conns]
    if conns_now:
        async with r.pipeline(transaction=False) as pipe:
            for user_id, conns in conns_now:
                pipe.zadd(_user_conns_key(user_id), dict.fromkeys(conns, expiry))
            pipe.zadd(ALL_CONNS_KEY, {f"{user_id}:{c}": expiry for user_id, conns in conns_now for c in conns})
            await pipe.execute()
    return back


async def _rejoin(r, room: str, members: list[str], expiry: float) -> list[str]:
    async with r.pipeline(transaction=False) as pipe:
        for member in members:
            username = member.rsplit("|", 1)[0]
            pipe.eval(_JOIN, 2, _conns_key(room), _users_key(room), member, username, expiry)
        pipe.sadd(ROOMS_KEY, room)
        *results, _ = await pipe.execute()
    return sorted({m.rsplit("|", 1)[0] for m, became in zip(members, results, strict=True) if became})
