"""The hub on a Redis Cluster: sharded pub/sub, so a room's messages travel only to its shard.

Classic PUBLISH in a Redis Cluster is copied to every node of the cluster, so every
shard carries every room's traffic and adding shards adds no pub/sub capacity. Sharded
pub/sub (SSUBSCRIBE/SPUBLISH, Redis 7) keeps a channel on the shard that owns its slot:
with ``REDIS_CLUSTER_URL`` set, :class:`ShardedHub` replaces :class:`realtime.hub.Hub`.

What it keeps of the hub: one subscription per topic per process, one frame encoded per
encoding for every local socket, publish order per topic, a subscription confirmed before
a join reads history, and resync of the sockets of a topic whose subscription was lost.

How it differs: one pub/sub connection per master that owns a subscribed topic (not one
per process), each with its own reader. When a shard's connection breaks (its master
died, a partition) or Redis moves a topic's slot (an unasked ``sunsubscribe``), the hub
reloads the cluster's slot map, subscribes those topics again on their owners now (a
promoted replica after a failover) and asks their sockets to resync from the database:
nothing committed is lost. redis-py's asyncio client has no sharded pub/sub, so each
shard's connection is a plain ``redis.asyncio.Connection`` that sends the commands itself.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection
from redis.exceptions import RedisError

from realtime import metrics
from realtime.hub import (
    PING_INTERVAL,
    PING_TOKEN,
    PONG_TIMEOUT,
    PREFIX,
    PUBLISH_TIMEOUT,
    SUBSCRIBE_WAIT,
    Hub,
    pack,
    unpack,
)

logger = logging.getLogger(__name__)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _Shard:
    """The sharded subscriptions this process holds on one master, and their reader."""

    def __init__(self, hub: ShardedHub, host: str, port: int) -> None:
        self.hub = hub
        self.address = (host, port)
        self.topics: set[str] = set()
        self.connection: Connection | None = None
        self.reader: asyncio.Task | None = None
        self.confirmations: dict[str, asyncio.Future] = {}

    async def open(self) -> None:
        connection = Connection(host=self.address[0], port=self.address[1], socket_connect_timeout=5,
                                socket_timeout=PONG_TIMEOUT + 1)
        await connection.connect()
        self.connection = connection
        self.reader = asyncio.get_running_loop().create_task(self._read_forever(), name=f"realtime-hub-{self.address}")

    def confirmation(self, topic: str) -> asyncio.Future | None:
        """The pending confirmation of ``topic``'s SSUBSCRIBE, if one is awaited."""
        return self.confirmations.get(topic)

    async def ssubscribe(self, *topics: str) -> None:
        """Subscribe and wait (at most SUBSCRIBE_WAIT s) until Redis confirmed every topic."""
        loop = asyncio.get_running_loop()
        futures = []
        for topic in topics:
            self.topics.add(topic)
            futures.append(self.confirmations.setdefault(topic, loop.create_future()))
        await self.connection.send_command("SSUBSCRIBE", *[PREFIX + t for t in topics])
        try:
            await asyncio.wait_for(asyncio.gather(*(asyncio.shield(f) for f in futures)), SUBSCRIBE_WAIT)
        except TimeoutError:
            logger.warning("hub: no confirmation of SSUBSCRIBE on %s:%s within %s s", *self.address, SUBSCRIBE_WAIT)

    async def sunsubscribe(self, topic: str) -> None:
        self.topics.discard(topic)
        if self.connection is not None:
            await self.connection.send_command("SUNSUBSCRIBE", PREFIX + topic)

    async def close(self) -> None:
        if self.reader is not None and self.reader is not asyncio.current_task():
            self.reader.cancel()
        if self.connection is not None:
            try:
                await self.connection.disconnect()
            except Exception:
                pass

    async def _read_forever(self) -> None:
        loop = asyncio.get_running_loop()
        pong_due: float | None = None
        try:
            while True:
                wait = PING_INTERVAL if pong_due is None else max(0.1, pong_due - loop.time())
                reply = await self.connection.read_response(timeout=wait)
                if reply is None:
                    if pong_due is not None:
                        raise ConnectionError(f"Redis left a PING unanswered for {PONG_TIMEOUT} s")
                    await self.connection.send_command("PING", PING_TOKEN)
                    pong_due = loop.time() + PONG_TIMEOUT
                    continue
                kind = _text(reply[0]) if isinstance(reply, list) and reply else ""
                if kind == "smessage":
                    await self.hub._deliver(_text(reply[1])[len(PREFIX):], unpack(reply[2]))
                elif kind == "pong":
                    pong_due = None
                elif kind == "ssubscribe":
                    self.hub._stream_started(_text(reply[1])[len(PREFIX):])
                    future = self.confirmations.pop(_text(reply[1])[len(PREFIX):], None)
                    if future is not None and not future.done():
                        future.set_result(None)
                elif kind == "sunsubscribe":
                    topic = _text(reply[1])[len(PREFIX):]
                    if topic in self.topics:
                        # Not asked for: Redis moved the topic's slot to another shard.
                        self.topics.discard(topic)
                        loop.create_task(self.hub._topics_moved([topic]))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("hub: shard %s:%s lost (%s); subscribing its topics where they are now",
                           *self.address, type(exc).__name__)
            metrics.redis_error("subscribe")
            loop.create_task(self.hub._shard_lost(self))


class ShardedHub(Hub):
    """:class:`realtime.hub.Hub` over sharded pub/sub on a Redis Cluster (``REDIS_CLUSTER_URL``)."""

    def __init__(self, url: str) -> None:
        self.topics: dict[str, set[Any]] = {}
        self.cluster = RedisCluster.from_url(
            url, socket_timeout=PUBLISH_TIMEOUT, socket_connect_timeout=PUBLISH_TIMEOUT
        )
        self.shards: dict[tuple[str, int], _Shard] = {}
        self.placement: dict[str, _Shard] = {}
        self.connected = asyncio.Event()
        self.connected.set()
        self.reconnects = 0
        self._lock = asyncio.Lock()
        # Topic -> done when its first subscribe() returns (placed and confirmed, or given up).
        self._subscribing: dict[str, asyncio.Future] = {}
        self._continuity_init()

    # --- where a topic lives ---------------------------------------------------------------

    async def _owner(self, topic: str) -> ClusterNode:
        if not self.cluster.nodes_manager.slots_cache:
            await self.cluster.initialize()
        return self.cluster.get_node_from_key(PREFIX + topic)

    async def _shard(self, node: ClusterNode) -> _Shard:
        address = (node.host, int(node.port))
        shard = self.shards.get(address)
        if shard is None:
            shard = _Shard(self, *address)
            await shard.open()
            self.shards[address] = shard
        return shard

    # --- subscriptions -------------------------------------------------------------------

    async def subscribe(self, topic: str, subscriber: Any) -> None:
        """Deliver ``topic`` to ``subscriber``; SSUBSCRIBE on its shard on first use, confirmed."""
        members = self.topics.get(topic)
        if members is not None:
            members.add(subscriber)
            # The first subscriber may still be finding the topic's shard (no placement
            # yet) or waiting for its confirmation: either way, return when it does.
            shard = self.placement.get(topic)
            pending = self._subscribing.get(topic) or (shard.confirmation(topic) if shard is not None else None)
            if pending is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(pending), SUBSCRIBE_WAIT)
                except TimeoutError:
                    pass
            return
        self.topics[topic] = {subscriber}
        done = self._subscribing[topic] = asyncio.get_running_loop().create_future()
        try:
            async with self._lock:
                shard = await self._shard(await self._owner(topic))
                self.placement[topic] = shard
            await shard.ssubscribe(topic)
        except (RedisError, OSError):
            # The cluster is unreachable: place it again (and resync) once it answers.
            self.placement.pop(topic, None)
            asyncio.get_running_loop().create_task(self._topics_moved([topic]))
        finally:
            if self._subscribing.get(topic) is done:
                del self._subscribing[topic]
            if not done.done():
                done.set_result(None)

    async def unsubscribe(self, topic: str, subscriber: Any) -> None:
        """Stop delivering ``topic`` to ``subscriber``; SUNSUBSCRIBE after the last one."""
        if not self._forget(topic, subscriber):
            return
        shard = self.placement.pop(topic, None)
        if shard is not None:
            try:
                await shard.sunsubscribe(topic)
            except (RedisError, OSError):
                pass  # the shard is going away; its reader notices

    # --- publishing ----------------------------------------------------------------------

    async def publish(self, topic: str, message: dict[str, Any]) -> int:
        """SPUBLISH on the topic's shard; returns how many of that shard's connections subscribe."""
        return await self.cluster.execute_command("SPUBLISH", PREFIX + topic, pack(message))

    async def publish_many(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        """SPUBLISH several messages, in order per topic, one pipeline per shard."""
        pipe = self.cluster.pipeline()
        for topic, message in messages:
            pipe.execute_command("SPUBLISH", PREFIX + topic, pack(message))
        await pipe.execute()

    async def count(self, topic: str) -> int:
        """How many connections subscribe to ``topic`` on its shard (PUBSUB SHARDNUMSUB)."""
        node = await self._owner(topic)
        result = await self.cluster.execute_command("PUBSUB SHARDNUMSUB", PREFIX + topic, target_nodes=node)
        return int(result[0][1]) if result else 0

    # --- losing a shard ------------------------------------------------------------------

    async def _shard_lost(self, shard: _Shard) -> None:
        if self.shards.get(shard.address) is shard:
            del self.shards[shard.address]
        await shard.close()
        lost = [t for t, placed in self.placement.items() if placed is shard]
        self._streams_broken(lost)
        await self._topics_moved(lost)

    async def _topics_moved(self, topics: list[str]) -> None:
        """Subscribe ``topics`` again where the cluster has them now, then resync their sockets."""
        self._streams_broken(topics)
        for topic in topics:
            self.placement.pop(topic, None)
        attempt = 0
        while True:
            topics = [t for t in topics if t in self.topics and t not in self.placement]
            if not topics:
                return
            try:
                async with self._lock:
                    await self.cluster.nodes_manager.initialize()
                    by_shard: dict[_Shard, list[str]] = {}
                    for topic in topics:
                        shard = await self._shard(await self._owner(topic))
                        by_shard.setdefault(shard, []).append(topic)
                        self.placement[topic] = shard
                for shard, placed in by_shard.items():
                    await shard.ssubscribe(*placed)
                self.reconnects += 1
                logger.warning("hub: %d topic(s) subscribed again on their shards; resyncing sockets", len(topics))
                self._resync(topics)
                return
            except Exception:
                for topic in topics:
                    self.placement.pop(topic, None)
                await asyncio.sleep(min(10.0, 0.2 * 2**attempt) * random.uniform(0.5, 1.0))
                attempt += 1

    def _resync(self, topics: list[str]) -> None:
        everyone = {s for t in topics for s in self.topics.get(t, ())}
        for subscriber in everyone:
            try:
                subscriber.hub_resync()
            except Exception:
                logger.warning("hub: resync of a socket failed", exc_info=True)

    async def aclose(self) -> None:
        """Close every shard connection and the cluster client."""
        self._streams_broken()
        for shard in list(self.shards.values()):
            await shard.close()
        self.shards.clear()
        await self.cluster.aclose()
