"""realtime.streams: a topic's window holds exactly what the stream carried, or it does not exist.

The window logic on its own (order, gaps, bounds, what it answers), then with the real
hub on real Redis: a window starts only from a read taken inside an unbroken stream,
follows the live stream, and is dropped when the stream breaks (Redis's side of the
pub/sub connection killed), when the last local subscriber leaves, or when a missing seq
stays missing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from realtime import streams
from realtime.broadcast import _QueueListener
from realtime.hub import PREFIX, Hub, pack
from realtime.protocol import JsonCodec

#: The test kind's committed seqs, as a database would hold them (the audit reads them).
COMMITTED: dict[str, int] = {}
KIND = streams.kind(prefix="stream-test.", entries=("entry", "entry.gone"),
                    latest=lambda topics: {t: COMMITTED.get(t, 0) for t in topics})
TOPIC = "stream-test.a"


@streams.reviser(prefix="stream-test.", type="entry.changed")
def _changed(window: streams.Window, change: dict[str, Any]) -> None:
    current = window.get(change["seq"])
    if current is not None:
        window.replace(change["seq"], {**current, "text": change["text"]})


def entry(seq: int, text: str = "") -> dict[str, Any]:
    return {"type": "entry", "seq": seq, "text": text or f"e{seq}"}


def window(low: int = 1, size: int = 100) -> streams.Window:
    return streams.Window(KIND, token=1, low=low, high=low - 1, size=size)


# --- the window on its own -----------------------------------------------------------------


def test_entries_in_order_extend_the_window_and_one_ahead_of_a_gap_waits():
    """seq 3 before seq 2 waits; once 2 arrives both are held and the window is whole again."""
    w = window()
    w.put(1, entry(1))
    w.put(3, entry(3))
    assert w.high == 1 and not w.whole() and w.after(0) is None
    w.put(2, entry(2))
    assert w.high == 3 and w.whole() and w.after(0) == [1, 2, 3]


def test_an_entry_it_holds_is_replaced_and_its_encoding_dropped():
    """A tombstone for a held seq replaces the entry; the encoded frame is made again from it."""
    w = window()
    w.put(1, entry(1))
    first = w.encoded_for(1, JsonCodec)
    w.put(1, {"type": "entry.gone", "seq": 1})
    assert w.event(1)["type"] == "entry.gone"
    assert w.encoded_for(1, JsonCodec) != first and "entry.gone" in w.encoded_for(1, JsonCodec)["text"]


def test_it_answers_only_ranges_it_holds():
    """``after`` and ``latest_page`` answer None for anything reaching below the window."""
    w = window(low=11)
    for seq in range(11, 21):
        w.put(seq, entry(seq))
    assert w.after(10) == list(range(11, 21)) and w.after(20) == []
    assert w.after(9) is None and w.after(21) is None
    assert w.latest_page(10) == list(range(11, 21)) and w.latest_page(11) is None
    young = window()
    young.put(1, entry(1))
    assert young.latest_page(50) == [1]  # a topic with fewer entries than a page: all of them


def test_it_keeps_at_most_size_entries():
    """The oldest entries leave as new ones come; what is gone is not answered."""
    w = window(size=5)
    for seq in range(1, 9):
        w.put(seq, entry(seq))
    assert (w.low, w.high) == (4, 8) and w.after(3) == [4, 5, 6, 7, 8] and w.after(2) is None


# --- with the real hub -----------------------------------------------------------------------


@pytest.fixture
async def hub(redis_service, settings):
    settings.REALTIME = {**settings.REALTIME, "STREAM_CACHE_EVENTS": 100}
    hub = Hub()
    yield hub
    # Bounded, as the runtime's stop bounds it (realtime.runtime): a reader caught mid-reconnect
    # by the cancel must not hold the session's loop.
    try:
        await asyncio.wait_for(hub.aclose(), 10)
    except TimeoutError:
        pass


async def publish(redis_service, event: dict[str, Any], topic: str = TOPIC) -> None:
    direct = aioredis.Redis(port=redis_service.port)
    try:
        await direct.publish(PREFIX + topic, pack({"type": "realtime.event", "event": event, "room": topic}))
    finally:
        await direct.aclose()


async def received(listener: _QueueListener, n: int = 1) -> None:
    for _ in range(n):
        await asyncio.wait_for(listener.queue.get(), 5)


async def test_a_window_seeded_inside_an_unbroken_stream_follows_it(hub, redis_service):
    """Seeded with what a read returned plus what arrived during it, then extended live, revised live."""
    cache = streams.Streams(hub)
    listener = _QueueListener()
    await hub.subscribe(TOPIC, listener)
    await _streaming(hub, TOPIC)
    token = cache.token(TOPIC)
    assert token is not None
    await publish(redis_service, entry(3))  # arrives "during the read"
    await received(listener)
    cache.seed(TOPIC, token, [entry(1), entry(2)], 2, held=[{"event": entry(3)}])
    w = cache.window(TOPIC)
    assert w is not None and w.after(0) == [1, 2, 3]
    await publish(redis_service, entry(4))
    await publish(redis_service, {"type": "entry.changed", "seq": 2, "text": "edited"})
    await received(listener, 2)
    assert w.after(0) == [1, 2, 3, 4] and w.event(2)["text"] == "edited"


async def test_a_read_is_not_seeded_when_the_stream_broke_since_or_an_edit_raced_it(hub, redis_service):
    """A token from before a reconnect, a read with a hole, or a held revision: no window."""
    cache = streams.Streams(hub)
    listener = _QueueListener()
    await hub.subscribe(TOPIC, listener)
    await _streaming(hub, TOPIC)
    token = cache.token(TOPIC)
    cache.seed(TOPIC, token, [entry(1), entry(3)], 3, held=[])
    assert cache.window(TOPIC) is None  # not gap-free
    cache.seed(TOPIC, token, [entry(1)], 1, held=[{"event": {"type": "entry.changed", "seq": 1, "text": "x"}}])
    assert cache.window(TOPIC) is None  # an edit raced the read
    await _kill_pubsub(redis_service)
    await _reconnected(hub, TOPIC, token)
    cache.seed(TOPIC, token, [entry(1)], 1, held=[])
    assert cache.window(TOPIC) is None  # the stream broke after the token was taken


async def test_a_broken_connection_or_the_last_subscriber_leaving_drops_the_window(hub, redis_service):
    """Redis kills the hub's pub/sub connection: the window goes; after the last unsubscribe too."""
    cache = streams.Streams(hub)
    listener = _QueueListener()
    await hub.subscribe(TOPIC, listener)
    await _streaming(hub, TOPIC)
    token = cache.token(TOPIC)
    cache.seed(TOPIC, token, [entry(1)], 1, held=[])
    assert cache.window(TOPIC) is not None
    await _kill_pubsub(redis_service)
    await _reconnected(hub, TOPIC, token)
    assert cache.window(TOPIC) is None
    token = cache.token(TOPIC)
    cache.seed(TOPIC, token, [entry(1)], 1, held=[])
    assert cache.window(TOPIC) is not None
    await hub.unsubscribe(TOPIC, listener)
    assert cache.window(TOPIC) is None and TOPIC not in cache.windows


async def test_a_seq_missing_for_too_long_drops_the_window(hub, redis_service, monkeypatch):
    """seq 3 arrives, 2 never does (its publisher died after the commit): reads miss, then the window goes."""
    monkeypatch.setattr(streams, "GAP_SECONDS", 0.2)
    cache = streams.Streams(hub)
    listener = _QueueListener()
    await hub.subscribe(TOPIC, listener)
    await _streaming(hub, TOPIC)
    cache.seed(TOPIC, cache.token(TOPIC), [entry(1)], 1, held=[])
    await publish(redis_service, entry(3))
    await received(listener)
    w = cache.window(TOPIC)
    assert w is not None and w.after(1) is None and w.latest_page(50) is None  # it cannot answer
    await asyncio.sleep(0.3)
    assert cache.window(TOPIC) is None


async def test_the_cache_is_off_at_zero_events(hub, settings):
    """STREAM_CACHE_EVENTS = 0: no token is handed out, so nothing is ever seeded."""
    settings.REALTIME = {**settings.REALTIME, "STREAM_CACHE_EVENTS": 0}
    cache = streams.Streams(hub)
    listener = _QueueListener()
    await hub.subscribe(TOPIC, listener)
    await _streaming(hub, TOPIC)
    assert cache.token(TOPIC) is None
    cache.seed(TOPIC, hub.stream(TOPIC), [entry(1)], 1, held=[])
    assert cache.window(TOPIC) is None


async def _streaming(hub: Hub, topic: str) -> None:
    """Until Redis confirmed the subscription of ``topic``: the first subscribe of a fresh hub
    returns once the reader is connected, which can be before the confirmation is read."""
    async with asyncio.timeout(10):
        while hub.stream(topic) is None:
            await asyncio.sleep(0.01)


async def _kill_pubsub(redis_service) -> None:
    direct = aioredis.Redis(port=redis_service.port)
    try:
        assert await direct.client_kill_filter(_type="pubsub") >= 1
    finally:
        await direct.aclose()


async def _reconnected(hub: Hub, topic: str, old: int | None) -> None:
    """Until the hub subscribed ``topic`` again after the kill (a new token)."""
    async with asyncio.timeout(10):
        while hub.stream(topic) in (None, old):
            await asyncio.sleep(0.05)


async def test_a_window_behind_the_database_for_two_audits_or_ahead_of_it_is_dropped(hub, redis_service, db):
    """seq 2 is committed and its publish lost, nothing follows: the first audit notes it, the second
    drops the window (a window merely a publish behind catches up in between and stays); a window
    ahead of the database is dropped at once."""
    cache = streams.Streams(hub)
    listener = _QueueListener()
    await hub.subscribe(TOPIC, listener)
    await _streaming(hub, TOPIC)
    cache.seed(TOPIC, cache.token(TOPIC), [entry(1)], 1, held=[])
    COMMITTED[TOPIC] = 2
    try:
        await cache.audit()
        assert cache.window(TOPIC) is not None  # in flight, as far as this audit can tell
        await cache.audit()
        assert cache.window(TOPIC) is None
        cache.seed(TOPIC, cache.token(TOPIC), [entry(1), entry(2)], 2, held=[])
        COMMITTED[TOPIC] = 3
        await cache.audit()
        await publish(redis_service, entry(3))  # the publish arrives before the next audit
        await received(listener)
        await cache.audit()
        assert cache.window(TOPIC) is not None and cache.window(TOPIC).high == 3
        COMMITTED[TOPIC] = 1  # the database went back (restored, or the room made again)
        await cache.audit()
        assert cache.window(TOPIC) is None
    finally:
        COMMITTED.clear()
