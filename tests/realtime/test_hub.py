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


async def _close(hub: Hub) -> None:
    if hub.reader is not None:
        hub.reader.cancel()
        await asyncio.gather(hub.reader, return_exceptions=True)
    await hub.publisher.aclose()


async def test_a_first_subscribe_that_connects_the_reader_returns_after_redis_confirmed(
    redis_service, settings
) -> None:
    """The subscribe() that starts a fresh process's reader returns only once Redis
    confirmed its topic, not when the connection is up: with 300 ms to Redis, a message
    published directly the moment it returns still arrives (it used to return right
    after the SUBSCRIBE was sent, and the message overtook it)."""
    proxy = Proxy(redis_service.port).start()
    proxy.delay = 0.3
    settings.REDIS_URL = f"redis://127.0.0.1:{proxy.port}/0"
    direct = aioredis.Redis(port=redis_service.port)
    hub = Hub()
    try:
        first, second = _QueueListener(), _QueueListener()
        await asyncio.gather(hub.subscribe("hub-test-cold", first), hub.subscribe("hub-test-cold", second))
        assert hub.stream("hub-test-cold") is not None
        await direct.publish(PREFIX + "hub-test-cold", pack({"type": "realtime.event", "event": {"n": 2}}))
        for listener in (first, second):
            message = await asyncio.wait_for(listener.queue.get(), 5)
            assert message["event"] == {"n": 2}
    finally:
        await _close(hub)
        await direct.aclose()
        proxy.stop()


async def test_a_topic_first_subscribed_while_the_reader_connects_is_subscribed_too(redis_service, monkeypatch) -> None:
    """A topic that arrives while the reader's own SUBSCRIBE of the others is being sent
    (here the send is slowed to 200 ms, as a full socket buffer would) is in none of the
    reader's lists and sees no connection to send on: the reader sends it once it is
    connected, and its subscribe() returns confirmed, so its messages arrive."""
    from redis.asyncio.client import PubSub

    original = PubSub.subscribe
    slowed: list[str] = []

    async def slow_subscribe(self, *args, **kwargs):
        if any(b"hub-test-early" in (a.encode() if isinstance(a, str) else a) for a in args):
            slowed.append("sent")
            await asyncio.sleep(0.2)
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(PubSub, "subscribe", slow_subscribe)
    direct = aioredis.Redis(port=redis_service.port)
    hub = Hub()
    try:
        early, late = _QueueListener(), _QueueListener()
        task = asyncio.create_task(hub.subscribe("hub-test-early", early))
        while not slowed:  # the reader is sending its SUBSCRIBE of the early topic
            await asyncio.sleep(0.01)
        await asyncio.wait_for(hub.subscribe("hub-test-late", late), 6)
        await asyncio.wait_for(task, 6)
        assert hub.stream("hub-test-late") is not None
        assert (await direct.pubsub_numsub(PREFIX + "hub-test-late"))[0][1] == 1
        await direct.publish(PREFIX + "hub-test-late", pack({"type": "realtime.event", "event": {"n": 3}}))
        message = await asyncio.wait_for(late.queue.get(), 5)
        assert message["event"] == {"n": 3}
    finally:
        await _close(hub)
        await direct.aclose()
