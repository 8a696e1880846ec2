"""Rate limits: token buckets shared by every server process (per user; sign-ups per address).

Two ways to take a token. :func:`bucket_take` (sign-ups, uploads: rare, from sync code)
asks Redis every time. The message path (:func:`rate_take`, every ``message``, ``edit``
and ``delete`` frame) asks a bucket in the process (:class:`LocalBuckets`), and each
process reconciles what it spent with the same Redis bucket in one pipelined round trip
per ``RATE_SYNC_SECONDS``: no Redis round trip per message, and the limit holds across
processes within a bounded error (docs/reliability.md, "Rate limits").
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref

from django.conf import settings

from realtime.redis_pool import redis_async, redis_sync

logger = logging.getLogger(__name__)

# Both scripts start by refilling the bucket KEYS[1] (ARGV: now, rate per second, burst)
# to ``tokens`` at ``now``.
_REFILL = """
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
"""

# KEYS: bucket. ARGV: now, rate per second, burst, cost.
# Returns {allowed (0/1), seconds until one token is available (string)}.
_TAKE = _REFILL + """
local cost = tonumber(ARGV[4])
local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
local wait = 0
if allowed == 0 then wait = (cost - tokens) / rate end
return {allowed, tostring(wait)}
"""


# KEYS: bucket. ARGV: now, rate per second, burst, spent. Takes what a process already
# spent (it may overdraw, down to -burst) and returns the tokens left, for every process.
_SPEND = _REFILL + """
tokens = math.max(-burst, tokens - tonumber(ARGV[4]))
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(2 * burst / rate) + 1)
return tostring(tokens)
"""


def _user_key(user_id: int, bucket: str) -> str:
    return f"rate:{{user:{user_id}}}:{bucket}"


class LocalBuckets:
    """One process's token buckets for the message path, reconciled with Redis in batches.

    ``take`` refills and spends in memory; the spending is pushed to the user's Redis
    bucket by ``sync``, at most every ``RATE_SYNC_SECONDS``, in one pipeline for every
    user who spent, and the answer (the tokens left for all processes) caps the local
    bucket. A Redis outage leaves each process limiting on its own.
    """

    def __init__(self, bucket: str = "msg") -> None:
        self.bucket = bucket
        # user id -> [tokens, monotonic time of the last refill, spent since the last sync]
        self.state: dict[int, list[float]] = {}
        self.task: asyncio.Task | None = None

    def take(self, user_id: int, cost: float = 1.0) -> tuple[bool, float]:
        """Take ``cost`` tokens from the user's local bucket: (allowed, seconds to wait if not)."""
        cfg = settings.REALTIME
        rate, burst = float(cfg["RATE_PER_SECOND"]), float(cfg["RATE_BURST"])
        now = time.monotonic()
        entry = self.state.get(user_id)
        if entry is None:
            entry = self.state[user_id] = [burst, now, 0.0]
        tokens = min(burst, entry[0] + (now - entry[1]) * rate)
        entry[1] = now
        if tokens >= cost:
            entry[0] = tokens - cost
            entry[2] += cost
            self._sync_soon()
            return True, 0.0
        entry[0] = tokens
        return False, round((cost - tokens) / rate, 3)

    def _sync_soon(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._sync_later(), name="realtime-rate-sync")

    async def _sync_later(self) -> None:
        await asyncio.sleep(float(settings.REALTIME.get("RATE_SYNC_SECONDS", 0.5)))
        try:
            await self.sync()
        except Exception as exc:  # Redis away: each process keeps limiting on its own meanwhile
            logger.warning("rate limit sync with Redis failed: %s", type(exc).__name__)

    async def sync(self) -> None:
        """Push what each user spent here to their Redis bucket; cap the local bucket by what is left."""
        spent = {user: entry[2] for user, entry in self.state.items() if entry[2] > 0}
        if not spent:
            return
        for user in spent:
            self.state[user][2] = 0.0
        cfg = settings.REALTIME
        rate, burst = float(cfg["RATE_PER_SECOND"]), float(cfg["RATE_BURST"])
        now = time.time()
        try:
            async with redis_async().pipeline(transaction=False) as pipe:
                for user, cost in spent.items():
                    pipe.eval(_SPEND, 1, _user_key(user, self.bucket), now, rate, burst, cost)
                left = await pipe.execute()
        except BaseException:
            for user, cost in spent.items():  # not counted yet: next time
                if user in self.state:
                    self.state[user][2] += cost
            raise
        mono = time.monotonic()
        for (user, _), tokens in zip(spent.items(), left, strict=True):
            entry = self.state.get(user)
            if entry is not None:
                local = min(burst, entry[0] + (mono - entry[1]) * rate)
                entry[0], entry[1] = min(local, float(tokens)), mono
        # Forget users whose buckets are full again and who spent nothing since.
        for user in [u for u, e in self.state.items() if e[2] == 0 and e[0] + (mono - e[1]) * rate >= burst]:
            del self.state[user]


_local: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LocalBuckets] = weakref.WeakKeyDictionary()


def local_buckets() -> LocalBuckets:
    """The running loop's message buckets (one per server process)."""
    loop = asyncio.get_running_loop()
    buckets = _local.get(loop)
    if buckets is None:
        buckets = _local[loop] = LocalBuckets()
    return buckets


def local_buckets_clear() -> None:
    """Forget every loop's local spending (tests: Redis, the shared half, was emptied)."""
    for buckets in list(_local.values()):
        buckets.state.clear()


async def rate_take(*, user_id: int, cost: float = 1.0) -> tuple[bool, float]:
    """Take ``cost`` tokens from the user's message bucket: (allowed, seconds to wait if not).

    Answered from this process's bucket (no Redis round trip); see :class:`LocalBuckets`.
    """
    return local_buckets().take(user_id, cost)


def bucket_take(*, key: str, burst: int, per_second: float, cost: float = 1.0) -> tuple[bool, float]:
    """Take ``cost`` tokens from the bucket ``key`` from sync code: (allowed, seconds to wait if not)."""
    allowed, wait = redis_sync().eval(_TAKE, 1, f"rate:{key}", time.time(), per_second, burst, cost)
    return bool(allowed), round(float(wait), 3)
