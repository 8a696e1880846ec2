"""Each topic's recent events, kept from the hub's live stream, encoded once: joins resume from here.

A join used to read its history from the database: the room's last page, or what came
after the client's ``last_seq``, every time, and encode it for every socket. As in
Centrifugo's history cache, each process now keeps, per topic that it is subscribed to,
a **window** of the latest seq-numbered events it has seen on the hub (realtime.hub), in
seq order and gap-free, with each event encoded once per encoding; a join inside the
window reads nothing from the database.

What the window holds is what the database holds, or the window does not exist:

* **It starts from the database.** A join that read its history from the database
  offers it (:func:`seed`) with the hub's stream token taken *before* the read
  (``Hub.stream``): if the stream was unbroken from then until now, every event
  committed after the read reached this process, and those that arrived during the
  read are the joining socket's held ones, which ``seed`` applies on top. Held events
  that change an event already read (an edit racing the read) are not applied in an
  unknown order: the window is not seeded from that read.
* **It follows the stream.** Every event of the topic passes through it before the
  topic's sockets get it. An event in seq order extends the window; one that changes
  an event it holds (an edit, a deletion) replaces it; one ahead of a missing seq
  (two processes publish in either order) waits until the missing one comes, and a
  window whose gap stays open for :data:`GAP_SECONDS` is dropped.
* **It ends with the stream.** A broken connection to Redis, the last local socket
  leaving the topic, a shard moving it (``StreamObserver.stream_ended``): the window is
  dropped, and the next join reads the database again. A restart starts with none.
* **It is audited.** A publish lost after its commit with nothing after it would leave a
  window one seq short for good. Every :data:`AUDIT_SECONDS` the process reads each
  window's last seq from the database (the kind's ``latest``, one query for all): a
  window still behind a seq the previous audit had already seen committed is dropped.
* **One read fills it.** Joins of a topic arriving together (a room's members after a
  deploy) would each read the database before any could seed. The first one's read is
  the topic's *fill* (:meth:`Streams.fill_begin`); the others wait for it
  (:meth:`Streams.fill_wait`, at most :data:`FILL_WAIT_SECONDS`) and then ask the window.
* **It answers only what it can answer exactly** (:meth:`Window.after`,
  :meth:`Window.latest_page`): a window still waiting for a missing seq, or not reaching
  back far enough, answers None and the caller reads the database.

Which events are entries and which change entries is the app's (a topic *kind*,
:func:`kind`): the core knows seq numbers, not messages. The chat registers its rooms
(chat/realtime_features.py). ``REALTIME["STREAM_CACHE_EVENTS"]`` bounds each window; 0
turns the cache off.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from realtime import metrics

logger = logging.getLogger(__name__)

#: How long a window waits for a missing seq before it is dropped (the publisher of
#: that seq failed after its commit, or its publish is lost).
GAP_SECONDS = 2.0
#: How often each process compares its windows with the database (``Streams.audit``).
AUDIT_SECONDS = 5.0
#: How long a join waits for another join's read of the same topic (``Streams.fill_wait``)
#: before reading the database itself. Reads queue on one database thread, so the one in
#: flight normally ends before a new one would: this bounds only a read that hangs.
FILL_WAIT_SECONDS = 10.0


Reviser = Callable[["Window", dict[str, Any]], None]


@dataclass(frozen=True)
class Kind:
    """How an app's topics carry seq-numbered events (registered with :func:`kind`).

    Events of the ``entries`` types, with an integer ``seq``, are the stream's entries
    (the chat: ``message`` and its tombstone ``message.deleted``); an entry with a seq
    the window holds replaces it. ``revisers`` (registered with :func:`reviser`, by the
    app or by others whose events change its entries) apply the events that change
    entries without being entries (``message.updated``, ``attachment.removed``), and
    what an event implies for other entries (a reply's quote of a deleted message).
    """

    prefix: str
    entries: frozenset[str]
    #: Sync, reads the database: ``latest(topics) -> {topic: its last committed seq}``.
    latest: Callable[[list[str]], dict[str, int]]

    @property
    def revisers(self) -> dict[str, list[Reviser]]:
        return _revisers.setdefault(self.prefix, {})

    @staticmethod
    def _seq(event: dict[str, Any]) -> int | None:
        seq = event.get("seq")
        return seq if isinstance(seq, int) and not isinstance(seq, bool) and seq > 0 else None

    def entry(self, event: dict[str, Any]) -> int | None:
        """The seq of an event that is an entry, else None."""
        return self._seq(event) if event.get("type") in self.entries else None

    def revision(self, event: dict[str, Any]) -> bool:
        """Whether ``event`` changes entries (an edit, a deletion, a removed file)."""
        return event.get("type") in self.revisers

    def revise(self, window: Window, event: dict[str, Any]) -> None:
        for fn in self.revisers.get(event.get("type"), ()):
            fn(window, event)


class Window:
    """One topic's recent entries ``low..high``, gap-free, each encoded once per encoding."""

    __slots__ = ("kind", "token", "low", "high", "events", "encoded", "pending", "gap_since", "size", "suspect",
                 "identity")

    def __init__(self, kind: Kind, token: int, low: int, high: int, size: int) -> None:
        self.kind = kind
        self.token = token
        self.low = low  # the first seq held (high + 1 when empty)
        self.high = high  # the last seq seen, every seq up to it present
        self.events: dict[int, dict[str, Any]] = {}
        self.encoded: dict[int, dict[Any, Any]] = {}  # seq -> codec -> encoded message
        self.pending: dict[int, dict[str, Any]] = {}  # arrived ahead of a missing seq
        self.gap_since: float | None = None
        self.size = size
        self.suspect: int | None = None  # a committed seq the last audit found beyond ``high``
        #: What the app's read said the topic was (the chat: the room's primary key): a
        #: window of a room deleted and made again under the same slug is not the new one's.
        self.identity: Any = None

    # --- what the stream does to it --------------------------------------------------

    def put(self, seq: int, event: dict[str, Any]) -> None:
        """An entry: the next one extends the window, a held one is replaced, a later one waits."""
        if seq <= self.high:
            if seq >= self.low:
                self.replace(seq, event)
            return
        if seq > self.high + 1:
            self.pending[seq] = event
            if self.gap_since is None:
                self.gap_since = time.monotonic()
            return
        self._append(seq, event)
        while self.high + 1 in self.pending:
            self._append(self.high + 1, self.pending.pop(self.high + 1))
        if not self.pending:
            self.gap_since = None

    def _append(self, seq: int, event: dict[str, Any]) -> None:
        self.events[seq] = event
        self.high = seq
        while len(self.events) > self.size:
            self.events.pop(self.low, None)
            self.encoded.pop(self.low, None)
            self.low += 1

    def get(self, seq: int) -> dict[str, Any] | None:
        """The entry ``seq``, if the window holds it (waiting ones included)."""
        return self.events.get(seq) or self.pending.get(seq)

    def replace(self, seq: int, event: dict[str, Any]) -> None:
        """Put a changed entry in place of ``seq`` (held or waiting; ignored otherwise)."""
        if seq in self.events:
            self.events[seq] = event
            self.encoded.pop(seq, None)
        elif seq in self.pending:
            self.pending[seq] = event

    def entries(self) -> Iterable[tuple[int, dict[str, Any]]]:
        """Every entry held, waiting ones included (for revisions that touch other entries)."""
        yield from self.events.items()
        yield from self.pending.items()

    def stale(self) -> bool:
        """A seq has been missing for too long: this window will not become whole again."""
        return self.gap_since is not None and time.monotonic() - self.gap_since > GAP_SECONDS

    # --- what joins read ---------------------------------------------------------------

    def whole(self) -> bool:
        """No seq is missing: the window answers reads."""
        return not self.pending

    def after(self, seq: int) -> list[int] | None:
        """The seqs after ``seq`` up to ``high``; None unless the window holds them all."""
        if not self.whole() or seq < self.low - 1 or seq > self.high:
            return None
        return list(range(seq + 1, self.high + 1))

    def latest_page(self, limit: int) -> list[int] | None:
        """The last ``limit`` seqs (all of them in a topic with fewer); None unless held."""
        if not self.whole():
            return None
        first = max(1, self.high - limit + 1)
        if first < self.low:
            return None
        return list(range(first, self.high + 1))

    def event(self, seq: int) -> dict[str, Any]:
        return self.events[seq]

    def encoded_for(self, seq: int, codec: Any) -> Any:
        """``seq``'s event encoded with ``codec`` (encoded on first use, then kept)."""
        per = self.encoded.get(seq)
        if per is None:
            per = self.encoded[seq] = {}
        message = per.get(codec)
        if message is None:
            message = per[codec] = codec.encode(self.events[seq])
        return message


class Streams:
    """This process's windows, one per subscribed topic of a registered kind (see the module)."""

    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self.windows: dict[str, Window] = {}
        # Topic -> done when the database read in flight that may seed its window ended.
        self._fills: dict[str, asyncio.Future] = {}
        hub.observe(self)

    @staticmethod
    def _kind(topic: str) -> Kind | None:
        for registered in _kinds:
            if topic.startswith(registered.prefix):
                return registered
        return None

    @staticmethod
    def size() -> int:
        return int(settings.REALTIME.get("STREAM_CACHE_EVENTS", 0))

    # --- the hub's side (realtime.hub.StreamObserver) ------------------------------------

    def stream_message(self, topic: str, message: dict[str, Any]) -> None:
        window = self.window(topic)
        if window is None:
            return
        event = message.get("event")
        if isinstance(event, dict):
            _apply(window, event)

    def stream_ended(self, topics: list[str] | None) -> None:
        for topic in list(self.windows) if topics is None else topics:
            if topic in self.windows:
                self._drop(topic, "stream")

    def _drop(self, topic: str, why: str) -> None:
        self.windows.pop(topic, None)
        metrics.stream_cache_dropped(why)

    def discard(self, topic: str, why: str) -> None:
        """Drop ``topic``'s window: a reader found it does not match the database (``why``: stale)."""
        if topic in self.windows:
            self._drop(topic, why)

    # --- the audit ----------------------------------------------------------------------

    async def audit(self) -> None:
        """Drop each window still short of a seq that the previous audit saw committed (see the module)."""
        from channels.db import database_sync_to_async

        by_kind: dict[int, tuple[Kind, list[str]]] = {}
        for topic, window in list(self.windows.items()):
            by_kind.setdefault(id(window.kind), (window.kind, []))[1].append(topic)
        for registered, topics in by_kind.values():
            latest = await database_sync_to_async(registered.latest)(topics)
            for topic in topics:
                window = self.windows.get(topic)
                if window is None:
                    continue
                if window.suspect is not None and window.high < window.suspect:
                    self._drop(topic, "audit")
                    continue
                committed = latest.get(topic, 0)
                if committed < window.high:
                    # Ahead of the database: the room was made again, or the database restored.
                    self._drop(topic, "stale")
                    continue
                window.suspect = committed if committed > window.high else None

    async def audit_forever(self) -> None:
        """The runtime's task: :meth:`audit` every AUDIT_SECONDS while windows exist."""
        while True:
            await asyncio.sleep(AUDIT_SECONDS)
            if not self.windows:
                continue
            try:
                await self.audit()
            except Exception:
                logger.warning("stream cache audit failed; will retry", exc_info=True)

    # --- the joins' side ---------------------------------------------------------------

    def token(self, topic: str) -> int | None:
        """The hub's stream token of ``topic`` now: take it before a database read that may seed."""
        return self.hub.stream(topic) if self.size() > 0 else None

    def window(self, topic: str) -> Window | None:
        """``topic``'s window if it is current (its stream unbroken, no gap left open too long)."""
        window = self.windows.get(topic)
        if window is None:
            return None
        stale = window.stale()
        if stale or window.token != self.hub.stream(topic):
            self._drop(topic, "gap" if stale else "stream")
            return None
        return window

    # --- one read at a time per topic ----------------------------------------------------

    async def fill_wait(self, topic: str) -> bool:
        """Wait for the read of ``topic`` another join has in flight (True if there was one).

        The caller asks the window again afterwards; if that read did not seed it (it was
        refused, or not exact), the caller reads the database itself.
        """
        pending = self._fills.get(topic)
        if pending is None:
            return False
        try:
            await asyncio.wait_for(asyncio.shield(pending), FILL_WAIT_SECONDS)
        except TimeoutError:
            logger.warning("streams: a read of %s took over %s s; reading again", topic, FILL_WAIT_SECONDS)
        return True

    def fill_begin(self, topic: str) -> asyncio.Future | None:
        """Mark a database read of ``topic`` that may seed its window; None if one is already marked
        or the topic has no window kind. Hand the result to :meth:`fill_end` when the read (and
        its ``seed``) is done, also when it failed."""
        if topic in self._fills or self._kind(topic) is None or self.size() <= 0:
            return None
        pending = self._fills[topic] = asyncio.get_running_loop().create_future()
        return pending

    def fill_end(self, topic: str, pending: asyncio.Future | None) -> None:
        """The read :meth:`fill_begin` marked is over: its waiters ask the window again."""
        if pending is None:
            return
        if self._fills.get(topic) is pending:
            del self._fills[topic]
        if not pending.done():
            pending.set_result(None)

    def seed(self, topic: str, token: int | None, events: list[dict[str, Any]], latest: int,
             held: list[dict[str, Any]], identity: Any = None) -> None:
        """Offer what a join read from the database (``events``, up to ``latest``).

        ``token``: the stream token taken before the read; ``held``: the topic's hub
        messages the joining socket received since then; ``identity``: what the read
        said the topic is (kept on the window, for readers to check). Starts the window,
        or extends a current one backwards; nothing happens unless it can be exact (see
        the module).
        """
        size = self.size()
        kind = self._kind(topic)
        if kind is None or size <= 0 or token is None or token != self.hub.stream(topic):
            return
        seqs = [kind.entry(e) for e in events]
        if any(s is None for s in seqs) or seqs != list(range(latest - len(seqs) + 1, latest + 1)):
            return  # not one gap-free run ending at ``latest``: not a picture of the stream
        held_events = [m["event"] for m in held if isinstance(m.get("event"), dict)]
        if any(kind.revision(e) for e in held_events):
            return  # an edit raced the read: in which order it applies is not known here
        window = self.window(topic)
        if window is not None and window.identity != identity:
            self._drop(topic, "stale")
            window = None
        if window is None:
            window = Window(kind, token, latest - len(seqs) + 1, latest - len(seqs), size)
            window.identity = identity
            for seq, event in zip(seqs, events, strict=True):
                window.put(seq, event)
            for event in held_events:
                _apply(window, event)
            self.windows[topic] = window
            metrics.stream_cache_seeded()
            return
        older = [(s, e) for s, e in zip(seqs, events, strict=True) if s < window.low]
        if not older or older[-1][0] != window.low - 1:
            return
        for seq, event in reversed(older):
            if len(window.events) >= window.size:
                break
            window.events[seq] = event  # reads go by seq ranges, not by the dict's order
            window.low = seq


def _apply(window: Window, event: dict[str, Any]) -> None:
    kind = window.kind
    seq = kind.entry(event)
    if seq is not None:
        window.put(seq, event)
    if kind.revision(event):
        kind.revise(window, event)


_kinds: list[Kind] = []
_revisers: dict[str, dict[str, list[Reviser]]] = {}


def kind(*, prefix: str, entries: Iterable[str], latest: Callable[[list[str]], dict[str, int]]) -> Kind:
    """Register topics starting with ``prefix`` as streams whose ``entries`` types carry a seq (see :class:`Kind`).

    ``latest(topics)``: sync, the last committed seq of each topic, from the database (the audit's).
    """
    if any(k.prefix == prefix for k in _kinds):
        raise ValueError(f"streams of {prefix!r} are already registered")
    registered = Kind(prefix=prefix, entries=frozenset(entries), latest=latest)
    _kinds.append(registered)
    return registered


def reviser(*, prefix: str, type: str) -> Callable[[Reviser], Reviser]:
    """``@reviser(prefix="room.", type="message.updated")``: ``fn(window, event)`` applies such events to entries.

    Any app may revise another's entries (the attachments app removes a file from a
    chat message); registration order does not matter.
    """

    def decorator(fn: Reviser) -> Reviser:
        _revisers.setdefault(prefix, {}).setdefault(type, []).append(fn)
        return fn

    return decorator
