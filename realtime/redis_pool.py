"""Redis clients for the hub, presence, rate limits, tickets and connection caps.

One asyncio client per event loop (Daphne has one; tests may create several), closed by
that loop's runtime when it stops (realtime.runtime), and one sync client per process.
They connect to ``settings.REDIS_URL``, to a Redis Cluster when ``REDIS_CLUSTER_URL`` is
set, or, when ``REDIS_SENTINELS`` is set, to whichever server the sentinels name master,
so a failover needs no restart (docs/deploy.md, "Redis for scale").
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings

_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()
_sync_client: redis.Redis | None = None
_lock = threading.Lock()

# A stalled Redis must not hang a socket forever: commands fail after this many seconds,
# and the caller answers the client with an ``unavailable`` error.
SOCKET_TIMEOUT = 5


def _sentinel_options() -> dict[str, Any]:
    password = getattr(settings, "REDIS_SENTINEL_PASSWORD", "")
    return {"password": password, "sentinel_kwargs": {"password": password}} if password else {}


def new_async_client(**options: Any) -> aioredis.Redis:
    """A new asyncio client for the configured Redis (URL, Sentinel master, or Redis Cluster)."""
    if getattr(settings, "REDIS_CLUSTER_URL", ""):
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(settings.REDIS_CLUSTER_URL, **options)
    sentinels = getattr(settings, "REDIS_SENTINELS", None)
    if sentinels:
        from redis.asyncio.sentinel import Sentinel

        extra = _sentinel_options()
        sentinel = Sentinel(sentinels, sentinel_kwargs=extra.pop("sentinel_kwargs", None), **extra, **options)
        return sentinel.master_for(settings.REDIS_SENTINEL_MASTER)
    return aioredis.Redis.from_url(settings.REDIS_URL, **options)


def new_sync_client(**options: Any) -> redis.Redis:
    """A new synchronous client for the configured Redis (URL, Sentinel master, or Redis Cluster)."""
    if getattr(settings, "REDIS_CLUSTER_URL", ""):
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(settings.REDIS_CLUSTER_URL, **options)
    sentinels = getattr(settings, "REDIS_SENTINELS", None)
    if sentinels:
        from redis.sentinel import Sentinel

        extra = _sentinel_options()
        sentinel = Sentinel(sentinels, sentinel_kwargs=extra.pop("sentinel_kwargs", None), **extra, **options)
        return sentinel.master_for(settings.REDIS_SENTINEL_MASTER)
    return redis.Redis.from_url(settings.REDIS_URL, **options)


def redis_async() -> aioredis.Redis:
    """The asyncio Redis client of the running event loop."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = new_async_client(
            socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT, health_check_interval=30
        )
        _async_clients[loop] = client
    return client


async def aclose_async_client() -> None:
    """Close the running loop's client, if it has one (the next :func:`redis_async` opens a new one)."""
    client = _async_clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


def redis_sync() -> redis.Redis:
    """The process's synchronous Redis client (admin views, Celery tasks, commands)."""
    global _sync_client
    with _lock:
        if _sync_client is None:
            _sync_client = new_sync_client(
                socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT, health_check_interval=30
            )
        return _sync_client
