"""Rate limits: a token bucket in Redis, shared by every server process (per user; sign-ups per address)."""

from __future__ import annotations

import time

from django.conf import settings

from realtime.redis_pool import redis_async, redis_sync

# KEYS: bucket. ARGV: now, rate per second, burst, cost.
# Returns {allowed (0/1), seconds until one token is available (string)}.
_TAKE = """
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
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


async def rate_take(*, user_id: int, bucket: str = "msg", cost: float = 1.0) -> tuple[bool, float]:
    """Take ``cost`` tokens from the user's bucket: (allowed, seconds to wait if not)."""
    cfg = settings.REALTIME
    allowed, wait = await redis_async().eval(
        _TAKE, 1, f"rate:{{user:{user_id}}}:{bucket}", time.time(), cfg["RATE_PER_SECOND"], cfg["RATE_BURST"], cost
    )
    return bool(allowed), round(float(wait), 3)


def bucket_take(*, key: str, burst: int, per_second: float, cost: float = 1.0) -> tuple[bool, float]:
    """Take ``cost`` tokens from the bucket ``key`` from sync code: (allowed, seconds to wait if not)."""
    allowed, wait = redis_sync().eval(_TAKE, 1, f"rate:{key}", time.time(), per_second, burst, cost)
    return bool(allowed), round(float(wait), 3)
