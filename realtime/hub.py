"""The transport under ``realtime.broadcast``: one Redis pub/sub subscription per topic per process.

Stock Channels gives every socket its own channel-layer queue and wakes one consumer
task per member for every message: ``group_send`` reads the group, writes one copy
per member into Redis, and every recipient decodes and re-encodes the same JSON.
Here, as in Centrifugo, each server process subscribes **once** per topic (a room, a
user, everyone) on a single pub/sub connection, and delivers each published message
to its local sockets directly, encoding the frame once per encoding.

Ordering: Redis delivers a channel's messages in publish order, and one reader task
per process hands them to sockets in that order.

Loss: pub/sub does not queue for a subscriber that is away. When the connection to
Redis breaks, the hub reconnects with backoff, subscribes to every topic again, and
asks each local socket to *resync*: re-send, per joined room, what was committed
after the last seq it delivered (chat.consumers). Nothing committed is lost; the
database stays the source of truth. A connection that goes silent without breaking
(a partition that resets nothing) counts as broken once Redis leaves a PING unanswered.

Continuity: :meth:`Hub.stream` says since when this process has seen *every* message
published to a topic: a number that changes whenever that may have stopped being true
(the connection broke, the topic was unsubscribed, a shard moved it) and None while it
is not true (not subscribed, or not confirmed yet). A cache of a topic's recent events
(realtime.streams) is only as good as the stream it was filled from, and checks it.
Observers (:meth:`Hub.observe`) see each message before the topic's sockets do.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable
from typing import Any, Protocol

import msgpack
from redis.exceptions import RedisError

from realtime import metrics
from realtime.redis_pool import new_async_client

logger = logging.getLogger(__name__)

PREFIX = "rt:"
# A publish that Redis does not answer within this many seconds fails (and is reported).
PUBLISH_TIMEOUT = 5
# A pub/sub connection only reads, so a partition that resets nothing (a dropped route,
# a dead NAT entry) leaves it waiting forever while what is published meanwhile is lost
# to this process. The reader pings Redis after PING_INTERVAL quiet seconds and gives
# the connection up when the answer is PONG_TIMEOUT seconds late
# (tests/reliability/test_faults.py, the silent partition).
PING_INTERVAL = 5.0
PONG_TIMEOUT = 5.0
PING_TOKEN = "realtime-hub"
# How long a subscribe waits for Redis to confirm it before going on regardless.
SUBSCRIBE_WAIT = 5.0


class StreamObserver(Protocol):
    """What watches a topic's stream as a whole (realtime.streams): see ``Hub.observe``."""

    def stream_message(self, topic: str, message: dict[str, Any]) -> None:
        """A message of ``topic``, before the topic's sockets get it."""

    def stream_ended(self, topics: list[str] | None) -> None:
        """The streams of ``topics`` (None: all) are no longer known to be complete."""


class Subscriber(Protocol):
    """What the hub needs from a socket (realtime.consumer.ProtocolConsumer)."""

    def hub_deliver(self, message: dict[str, Any], frames: dict[Any, Any]) -> Awaitable[None] | None:
        """Deliver now, or return the send still to await (in order, before the next socket's)."""

    def hub_resync(self) -> None: ...


def pack(message: dict[str, Any]) -> bytes:
    return msgpack.packb(message, use_bin_type=True)


def unpack(data: bytes) -> dict[str, Any]:
    return msgpack.unpackb(data, raw=False)


class Hub:
    """This process's subscriptions and its one pub/sub reader (one per runtime, realtime.runtime)."""

    def __init__(self) -> None:
        self.topics: dict[str, set[Subscriber]] = {}
        self.publisher = new_async_client(
            socket_timeout=PUBLISH_TIMEOUT, socket_connect_timeout=PUBLISH_TIMEOUT, health_check_interval=30
        )
        self.pubsub: Any = None
        self.reader: asyncio.Task | None = None
        self.connected = asyncio.Event()
        self.reconnects = 0
        # Topic -> Redis's confirmation of this process's SUBSCRIBE, while it is awaited.
        self._confirmations: dict[str, asyncio.Future] = {}
        self._continuity_init()

    # --- continuity ----------------------------------------------------------------

    def _continuity_init(self) -> None:
        # Topic -> the generation of its unbroken stream (see ``stream``).
        self._streams: dict[str, int] = {}
        self._generation = 0
        self._observers: list[StreamObserver] = []

    def stream(self, topic: str) -> int | None:
        """A token for "every message of ``topic`` since it was issued reached this process".

        None when that is not known (not subscribed, or Redis has not confirmed the
        subscription); a new token after every possible gap (a broken connection, an
        unsubscribe, a moved shard). Equal tokens at two moments: nothing was missed between.
        """
        return self._streams.get(topic)

    def observe(self, observer: StreamObserver) -> None:
        """Show ``observer`` every message delivered here (before its sockets get it) and every stream's end."""
        self._observers.append(observer)

    def _stream_started(self, topic: str) -> None:
        """Redis confirmed a subscription of ``topic``: everything published from now on arrives."""
        if topic in self.topics:
            self._generation += 1
            self._streams[topic] = self._generation

    def _streams_broken(self, topics: Any = None) -> None:
        """Messages of ``topics`` (None: every topic) may have been missed: their streams end."""
        if topics is None:
            self._streams.clear()
        else:
            topics = list(topics)
            for topic in topics:
                self._streams.pop(topic, None)
        for observer in self._observers:
            observer.stream_ended(topics)

    # --- subscriptions -------------------------------------------------------------

    async def subscribe(self, topic: str, subscriber: Subscriber) -> None:
        """Deliver ``topic``'s messages to ``subscriber`` (subscribing this process on first use).

        Returns once Redis confirmed the subscription (or after SUBSCRIBE_WAIT seconds):
        a caller that reads the database next (a join reading history) then sees every
        message committed later arrive live. Returning when SUBSCRIBE was merely sent
        would leave a window, as long as the round trip to Redis, in which a message
        published meanwhile reaches neither.
        """
        members = self.topics.get(topic)
        if members is not None:
            members.add(subscriber)
            pending = self._confirmations.get(topic)
            if pending is not None:  # another socket's SUBSCRIBE of this topic is in flight
                await self._confirmed(topic, pending)
            return
        self.topics[topic] = {subscriber}
        self._ensure_reader()
        # Registered before anything is sent or awaited: the confirmation may be read by the
        # reader while this coroutine is still waiting to run again.
        pending = self._confirmations[topic] = asyncio.get_running_loop().create_future()
        if self.connected.is_set():
            try:
                await self.pubsub.subscribe(PREFIX + topic)
            except (RedisError, OSError):
                # The reader reconnects, subscribes to every topic in self.topics and resyncs.
                self._confirmations.pop(topic, None)
                self._connection_lost()
                return
        # Not connected: the reader subscribes every topic of self.topics when it
        # (re)connects, this one included, and its confirmation resolves ``pending``.
        await self._confirmed(topic, pending)

    async def _confirmed(self, topic: str, pending: asyncio.Future) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(pending), SUBSCRIBE_WAIT)
        except TimeoutError:
            # Redis is slow or gone: the reader's health check reconnects and resyncs.
            # (While it is known to be gone, every join would say so: once is the reader's.)
            if self.connected.is_set():
                logger.warning("hub: no confirmation of SUBSCRIBE %s within %s s", topic, SUBSCRIBE_WAIT)
        finally:
            if self._confirmations.get(topic) is pending:
                del self._confirmations[topic]

    def _confirm(self, channel: Any) -> None:
        """The reader saw Redis confirm a SUBSCRIBE."""
        topic = (channel.decode() if isinstance(channel, bytes) else channel)[len(PREFIX):]
        self._stream_started(topic)
        pending = self._confirmations.pop(topic, None)
        if pending is not None and not pending.done():
            pending.set_result(None)

    def _forget(self, topic: str, subscriber: Subscriber) -> bool:
        """Stop delivering ``topic`` to ``subscriber`` here; True when it was the topic's last subscriber."""
        members = self.topics.get(topic)
        if members is None:
            return False
        members.discard(subscriber)
        if members:
            return False
        del self.topics[topic]
        self._streams_broken([topic])
        return True

    async def unsubscribe(self, topic: str, subscriber: Subscriber) -> None:
        """Stop delivering ``topic`` to ``subscriber`` (unsubscribing the process after the last)."""
        if not self._forget(topic, subscriber):
            return
        if self.connected.is_set():
            try:
                await self.pubsub.unsubscribe(PREFIX + topic)
            except (RedisError, OSError):
                self._connection_lost()

    def local_count(self, topic: str) -> int:
        """Sockets of this process subscribed to ``topic``."""
        return len(self.topics.get(topic, ()))

    # --- publishing ---------------------------------------------------------------------

    async def publish(self, topic: str, message: dict[str, Any]) -> int:
        """Publish to every process; returns how many processes were subscribed."""
        return await self.publisher.publish(PREFIX + topic, pack(message))

    async def publish_many(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        """Publish several messages, in order, in one round trip."""
        async with self.publisher.pipeline(transaction=False) as pipe:
            for topic, message in messages:
                pipe.publish(PREFIX + topic, pack(message))
            await pipe.execute()

    async def count(self, topic: str) -> int:
        """How many processes subscribe to ``topic`` (PUBSUB NUMSUB)."""
        result = await self.publisher.pubsub_numsub(PREFIX + topic)
        return int(result[0][1]) if result else 0

    async def aclose(self) -> None:
        """Stop reading and close both Redis connections (the runtime's stop)."""
        reader, self.reader = self.reader, None
        if reader is not None and not reader.done():
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        self.connected.clear()
        self._streams_broken()
        self.pubsub = None
        for pending in self._confirmations.values():
            pending.cancel()
        self._confirmations.clear()
        await self.publisher.aclose()

    # --- the reader ----------------------------------------------------------------------

    def _ensure_reader(self) -> None:
        if self.reader is None or self.reader.done():
            self.reader = asyncio.get_running_loop().create_task(self._read_forever(), name="realtime-hub")

    def _connection_lost(self) -> None:
        self.connected.clear()
        self._streams_broken()
        if self.pubsub is not None:
            # Wake the reader: it notices the broken connection and reconnects.
            asyncio.get_running_loop().create_task(self._close_pubsub(self.pubsub))

    @staticmethod
    async def _close_pubsub(pubsub: Any) -> None:
        try:
            await pubsub.aclose()
        except Exception:
            pass

    async def _read_forever(self) -> None:
        attempt = 0
        first = True
        while True:
            # socket_timeout: the handshake of a new connection must not wait forever either.
            client = new_async_client(socket_connect_timeout=5, socket_timeout=PONG_TIMEOUT, health_check_interval=15)
            # Subscribe confirmations are read: subscribe() waits for them (see there).
            pubsub = client.pubsub(ignore_subscribe_messages=False)
            try:
                # Subscribe to a private topic first, so the connection exists even with no topics.
                await pubsub.subscribe(PREFIX + "hub-alive")
                topics = list(self.topics)
                if topics:
                    await pubsub.subscribe(*[PREFIX + t for t in topics])
                self.pubsub = pubsub
                self.connected.set()
                # Topics first subscribed while the SUBSCRIBE above was in flight are in
                # self.topics but not in ``topics``, and their subscribe() saw no connection
                # to send on: send theirs now. From here on subscribe() sends its own.
                sent = set(topics)
                missed = [t for t in self.topics if t not in sent]
                if missed:
                    await pubsub.subscribe(*[PREFIX + t for t in missed])
                # After a reconnect, sockets resync once Redis confirmed the last topic's
                # SUBSCRIBE (it confirms in order): a resync that read the database earlier
                # could miss a message published before the subscription took effect.
                resync_after = None
                if not first:
                    self.reconnects += 1
                    logger.warning("hub: reconnected to Redis, %d topics re-subscribed; resyncing sockets", len(topics))
                    resync_after = (PREFIX + topics[-1]) if topics else None
                first = False
                attempt = 0
                loop = asyncio.get_running_loop()
                pong_due: float | None = None
                while True:
                    wait = PING_INTERVAL if pong_due is None else max(0.1, pong_due - loop.time())
                    asked = loop.time()
                    message = await pubsub.get_message(ignore_subscribe_messages=False, timeout=wait)
                    if message is None:
                        if loop.time() - asked < wait - 0.01:
                            continue  # it read something it handles itself: not quiet, maybe a backlog
                        if pong_due is not None:
                            raise ConnectionError(f"Redis left a PING unanswered for {PONG_TIMEOUT} s")
                        await pubsub.ping(PING_TOKEN)  # only sends; the answer comes as a message
                        pong_due = loop.time() + PONG_TIMEOUT
                        continue
                    kind = message.get("type")
                    if kind == "pong":
                        if message.get("data") in (PING_TOKEN, PING_TOKEN.encode()):
                            pong_due = None
                        continue
                    if kind == "subscribe":
                        channel = message["channel"]
                        self._confirm(channel)
                        if resync_after is not None and channel in (resync_after, resync_after.encode()):
                            resync_after = None
                            self._resync_all()
                        continue
                    if kind != "message":
                        continue
                    channel = message["channel"]
                    topic = (channel.decode() if isinstance(channel, bytes) else channel)[len(PREFIX):]
                    await self._deliver(topic, unpack(message["data"]))
            except asyncio.CancelledError:
                await self._close_pubsub(pubsub)
                await client.aclose()
                raise
            except Exception:
                self.connected.clear()
                self._streams_broken()
                logger.warning("hub: pub/sub connection lost; reconnecting", exc_info=attempt == 0)
                await self._close_pubsub(pubsub)
                try:
                    await client.aclose()
                except Exception:
                    pass
                await asyncio.sleep(min(10.0, 0.2 * 2**attempt) * random.uniform(0.5, 1.0))
                attempt += 1

    def _resync_all(self) -> None:
        everyone = {s for members in self.topics.values() for s in members}
        for subscriber in everyone:
            try:
                subscriber.hub_resync()
            except Exception:
                logger.warning("hub: resync of a socket failed", exc_info=True)

    async def _deliver(self, topic: str, message: dict[str, Any]) -> None:
        members = self.topics.get(topic)
        if not members:
            return
        for observer in self._observers:
            try:
                observer.stream_message(topic, message)
            except Exception:
                logger.warning("hub: an observer failed on %s", topic, exc_info=True)
        frames: dict[Any, Any] = {}  # one encoded frame per encoding, shared by every socket
        for subscriber in list(members):
            try:
                pending = subscriber.hub_deliver(message, frames)
                if pending is not None:
                    await pending
            except Exception:
                logger.warning("hub: delivery to a socket failed", exc_info=True)
        if frames.get("sent"):
            metrics.broadcast_sent(frames)
            metrics.fanout_observe(message.get("ts"))

