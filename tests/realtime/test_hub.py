"""realtime.hub against real Redis: a subscription is in force when subscribe() returns.

A join subscribes its room and then reads the history; a message committed after that
read must arrive live. That holds only if Redis already processed the SUBSCRIBE when
``subscribe`` returned, whatever the distance to Redis: here 300 ms each way through
the fault proxy (deploy/netproxy.py), while the message is published directly.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from deploy.netproxy import Proxy
from realtime.broadcast import _QueueListener
from realtime.hub import PREFIX, Hub, pack


async def test_a_message_published_right_after_subscribe_returns_is_delivered(redis_service, settings) -> None:
    """With 300 ms between the process and Redis, a publish made the moment subscribe()
    returns still reaches the subscriber (it returned after Redis confirmed), both for the
    socket that subscribed the topic and for one that joined while that was in flight."""
    proxy = Proxy(redis_service.port).start()
    settings.REDIS_URL = f"redis://127.0.0.1:{proxy.port}/0"
    direct = aioredis.Redis(port=redis_service.port)
    hub = Hub()
    try:
        first, second, warm = _QueueListener(), _QueueListener(), _QueueListener()
        await hub.subscribe("hub-test-warmup", warm)  # connects the reader
        proxy.delay = 0.3
        await asyncio.gather(hub.subscribe("hub-test-room", first), hub.subscribe("hub-test-room", second))
        await direct.publish(PREFIX + "hub-test-room", pack({"type": "realtime.event", "event": {"n": 1}}))
        for listener in (first, second):
            message = await asyncio.wait_for(listener.queue.get(), 5)
            assert message["event"] == {"n": 1}
    finally:
        if hub.reader is not None:
            hub.reader.cancel()
            await asyncio.gather(hub.reader, return_exceptions=True)
        await hub.publisher.aclose()
        await direct.aclose()
        proxy.stop()
