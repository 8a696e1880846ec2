"""Redis clients for presence, rate limits, tickets and connection caps.

One asyncio client per event loop (Daphne has one; tests may create several) and one
sync client per process, both from ``settings.REDIS_URL``. The channel layer keeps
its own connections; these are for our small keys.
"""

from __future__ import annotations

import asyncio
import threading
import weakref

import redis
import redis.asyncio as aioredis
from django.conf import settings

_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()
_sync_client: redis.Redis | None = None
_lock = threading.Lock()

# A stalled Redis must not hang a socket forever: commands fail after this many seconds,
# and the caller answers the client with an ``unavailable`` error.
SOCKET_TIMEOUT = 5


def redis_async() -> aioredis.Redis:
    """The asyncio Redis client of the running event loop."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = aioredis.Redis.from_url(
            settings.REDIS_URL,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
            health_check_interval=30,
        )
        _async_clients[loop] = client
    return client


def redis_sync() -> redis.Redis:
    """The process's synchronous Redis client (admin views, Celery tasks, commands)."""
    global _sync_client
    with _lock:
        if _sync_client is None:
            _sync_client = redis.Redis.from_url(
                settings.REDIS_URL,
                socket_timeout=SOCKET_TIMEOUT,
                socket_connect_timeout=SOCKET_TIMEOUT,
                health_check_interval=30,
            )
        return _sync_client
