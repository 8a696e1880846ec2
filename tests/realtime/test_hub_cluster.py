"""realtime.hub_cluster.ShardedHub on a real Redis Cluster (3 masters, 3 replicas).

Two hubs stand for two server processes. The guarantees: a topic's messages reach every
subscribing hub once and in publish order; each hub holds connections only to the shards
that own its topics; when a shard's master is killed, the hub subscribes the topic again
on the promoted replica by itself and asks its sockets to resync (they read what they
missed from the database), and live delivery goes on.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from realtime.hub import PREFIX
from realtime.hub_cluster import ShardedHub
from tests import services

pytestmark = pytest.mark.live


class Listener:
    """A stand-in socket: records what the hub delivers and how often it is asked to resync."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.resyncs = 0

    def hub_deliver(self, message: dict[str, Any], frames: dict[Any, Any]) -> None:
        self.messages.append(message)

    def hub_resync(self) -> None:
        self.resyncs += 1


@pytest.fixture(scope="module")
def cluster():
    c = services.RedisCluster(masters=3, replicas=1).start()
    yield c
    c.stop()


async def until(check, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_messages_reach_every_subscribed_hub_once_in_order(cluster):
    """100 messages published by one hub arrive at both hubs' subscribers once each, in order."""
    a, b = ShardedHub(cluster.url), ShardedHub(cluster.url)
    try:
        on_a, on_b = Listener(), Listener()
        await a.subscribe("room.order", on_a)
        await b.subscribe("room.order", on_b)
        assert await a.count("room.order") == 2
        for i in range(50):
            await b.publish("room.order", {"n": i})
        await a.publish_many([("room.order", {"n": i}) for i in range(50, 100)])
        await until(lambda: len(on_a.messages) == 100 and len(on_b.messages) == 100)
        await asyncio.sleep(0.3)
        for listener in (on_a, on_b):
            assert [m["n"] for m in listener.messages] == list(range(100))
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_second_subscriber_returns_only_once_the_first_ones_ssubscribe_is_confirmed(cluster):
    """A socket that subscribes a topic while the first one is still finding its shard
    returns when Redis confirmed it, not at once: a message published the moment it
    returns reaches it."""
    hub = ShardedHub(cluster.url)
    try:
        first, second = Listener(), Listener()
        placing = asyncio.create_task(hub.subscribe("room.second", first))
        await asyncio.sleep(0)  # the first subscriber is now looking up the slot's owner
        assert "room.second" not in hub.placement
        await hub.subscribe("room.second", second)
        assert hub.stream("room.second") is not None
        await hub.publish("room.second", {"n": 1})
        await until(lambda: second.messages == [{"n": 1}])
        await placing
    finally:
        await hub.aclose()


async def test_a_hub_connects_only_to_the_shards_of_its_topics(cluster):
    """Topics on one shard: one connection; an unsubscribed topic's messages do not arrive."""
    hub = ShardedHub(cluster.url)
    try:
        owner = cluster.master_of(PREFIX + "room.one")
        same = next(f"room.s{i}" for i in range(1000) if cluster.master_of(f"{PREFIX}room.s{i}") == owner)
        listener = Listener()
        await hub.subscribe("room.one", listener)
        await hub.subscribe(same, listener)
        assert [addr[1] for addr in hub.shards] == [owner]
        await hub.unsubscribe(same, listener)
        await hub.publish(same, {"n": "gone"})
        await hub.publish("room.one", {"n": "here"})
        await until(lambda: listener.messages)
        await asyncio.sleep(0.3)
        assert listener.messages == [{"n": "here"}]
    finally:
        await hub.aclose()


async def test_failover_resubscribes_on_the_promoted_replica_and_resyncs(cluster):
    """Kill the master of a topic's slot: the hub moves the subscription and resyncs; delivery goes on."""
    hub = ShardedHub(cluster.url)
    publisher = ShardedHub(cluster.url)
    try:
        listener = Listener()
        await hub.subscribe("room.failover", listener)
        await publisher.publish("room.failover", {"n": 1})
        await until(lambda: len(listener.messages) == 1)
        owner = cluster.master_of(PREFIX + "room.failover")
        cluster.kill(owner)
        await until(lambda: listener.resyncs >= 1, timeout=40)
        new_owner = next(iter(addr[1] for addr, shard in hub.shards.items() if "room.failover" in shard.topics))
        assert new_owner != owner
        deadline = time.monotonic() + 20
        while True:  # the publisher's client learns the new owner on its first MOVED or refresh
            try:
                await publisher.publish("room.failover", {"n": 2})
                break
            except Exception:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.3)
        await until(lambda: [m["n"] for m in listener.messages][-1:] == [2])
    finally:
        await hub.aclose()
        await publisher.aclose()
