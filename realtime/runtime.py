"""The real-time core's state in one object per event loop: :class:`Runtime`.

A server process runs one event loop, and everything the core keeps for it lives on that
loop's runtime: the hub (the Redis pub/sub subscriptions, realtime.hub), the outbox of
committed broadcasts, the registry of open sockets, the long-poll sessions, and the
background tasks that serve them (presence refresh and sweep, session re-check, long-poll
sweep). :func:`runtime` returns the running loop's; :meth:`Runtime.stop` ends it in one
place (Daphne's shutdown, realtime.drain; tests), cancelling every task it started and
closing its Redis connections.

The registry of open sockets is one weak set: drain closes them, the re-check asks about
their sessions, and the presence refresh reads their entries from them (``user``,
``conn_id``, ``rooms``), so a socket costs one entry here and nothing more.

The runtime builds no event: what the presence refresh finds (a user back after a stall,
an orphan swept) is announced by the sender installed with :func:`presence_announcer`
(realtime.broadcast installs the core's; an app may install its own).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from realtime import metrics, presence
from realtime.auth import socket_sessions_check
from realtime.hub import Hub
from realtime.redis_pool import aclose_async_client
from realtime.streams import Streams

logger = logging.getLogger(__name__)

# Sockets whose sessions the periodic re-check reads per database round trip.
RECHECK_BATCH = 500
# How long stop() lets the outbox publish what is still queued.
OUTBOX_FLUSH_SECONDS = 5.0

#: ``announce(room, joined=[...], left=[...])``: tells a room's sockets who came or went.
PresenceAnnounce = Callable[..., Awaitable[None]]
_presence_announce: PresenceAnnounce | None = None


def presence_announcer(announce: PresenceAnnounce) -> PresenceAnnounce:
    """Install the sender of presence changes found by the refresh (the last one installed wins)."""
    global _presence_announce
    _presence_announce = announce
    return announce


class Outbox:
    """Messages committed on this server's threads, published in commit order.

    One task drains the queue; what accumulated while it waited on Redis goes out in
    one pipelined round trip, in order (a room's seqs are published in the order they
    were committed, as clients and ``ChatConsumer.accepts`` expect).
    """

    BATCH = 256

    def __init__(self, loop: asyncio.AbstractEventLoop, hub: Hub) -> None:
        self.loop = loop
        self.hub = hub
        self.pending: deque[tuple[str, dict[str, Any]]] = deque()
        self.task: asyncio.Task | None = None

    def put(self, group: str, message: dict[str, Any]) -> None:
        """Queue an envelope (on the loop's thread); it is published after those queued before it."""
        self.pending.append((group, message))
        if self.task is None or self.task.done():
            self.task = self.loop.create_task(self._drain(), name="realtime-outbox")

    async def flushed(self) -> None:
        """Return once everything queued so far has been published (or failed to be)."""
        while self.task is not None and not self.task.done():
            await asyncio.shield(self.task)

    async def _drain(self) -> None:
        while self.pending:
            batch = [self.pending.popleft() for _ in range(min(len(self.pending), self.BATCH))]
            try:
                await self.hub.publish_many(batch)
            except Exception:
                metrics.redis_error("publish")
                logger.exception("broadcast after commit failed (%d messages)", len(batch))


def hub_new() -> Hub:
    """The hub for the configured Redis: sharded pub/sub on a Redis Cluster (``REDIS_CLUSTER_URL``), else classic."""
    url = getattr(settings, "REDIS_CLUSTER_URL", "")
    if url:
        from realtime.hub_cluster import ShardedHub

        return ShardedHub(url)
    return Hub()


class Runtime:
    """One event loop's hub, outbox, open sockets, long-poll sessions and background tasks."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.hub = hub_new()
        self.outbox = Outbox(loop, self.hub)
        #: Each subscribed topic's recent events, kept from the hub (realtime.streams).
        self.streams = Streams(self.hub)
        #: Every accepted socket of this loop (ProtocolConsumer adds itself, and leaves on disconnect).
        self.sockets: weakref.WeakSet[Any] = weakref.WeakSet()
        #: Long-poll sessions by id (realtime.longpoll); their consumers are in ``sockets`` too.
        self.longpoll: dict[str, Any] = {}
        self.tasks: dict[str, asyncio.Task] = {}
        self.stopped = False

    # --- start -------------------------------------------------------------------------

    def start(self) -> None:
        """Run the presence refresh, the session re-check and the stream cache's audit.

        Idempotent; the first socket calls it.

        A loop that only publishes (a Celery worker's, a management command's) never
        calls it, and so runs no timer.
        """
        self.run("presence-refresh", self._refresh_forever)
        self.run("session-recheck", self._recheck_forever)
        self.run("streams-audit", self.streams.audit_forever)

    def run(self, name: str, job: Callable[[], Awaitable[None]]) -> None:
        """Run ``job()`` as this runtime's task ``name`` unless it is running; stop() cancels it."""
        task = self.tasks.get(name)
        if self.stopped or (task is not None and not task.done()):
            return
        self.tasks[name] = self.loop.create_task(job(), name=f"realtime-{name}")

    # --- open sockets ------------------------------------------------------------------

    def socket_opened(self, socket: Any) -> None:
        """An accepted socket: drained, re-checked and kept present until :meth:`socket_closed`."""
        self.sockets.add(socket)
        self.start()

    def socket_closed(self, socket: Any) -> None:
        """A socket is going away: nothing of this runtime serves it any more."""
        self.sockets.discard(socket)

    def _live_sockets(self) -> list[Any]:
        return [s for s in list(self.sockets) if not s._closing]

    # --- presence refresh ---------------------------------------------------------------

    def presence_entries(self) -> tuple[dict[str, list[str]], dict[int, list[str]]]:
        """This loop's presence entries, read from its sockets: room -> members, user id -> conn ids."""
        rooms: dict[str, list[str]] = {}
        connections: dict[int, list[str]] = {}
        for socket in list(self.sockets):
            user, conn_id = socket.user, socket.conn_id
            if user is None or not conn_id:
                continue
            connections.setdefault(user.pk, []).append(conn_id)
            if socket.rooms:
                member = presence.member_for(user.get_username(), conn_id)
                for room in list(socket.rooms):
                    rooms.setdefault(room, []).append(member)
        return rooms, connections

    async def presence_refresh(self) -> None:
        """Refresh this loop's entries, sweep every room's orphans, and announce what changed."""
        rooms, connections = self.presence_entries()
        back = await presence.presence_refresh(rooms=rooms, connections=connections)
        departed = await presence.presence_sweep()
        announce = _presence_announce
        if announce is None:
            if back or departed:
                logger.warning("presence changed but no announcer is installed (realtime.broadcast installs one)")
            return
        for room, names in back.items():
            await announce(room, joined=names, left=[])
        for room, names in departed.items():
            await announce(room, joined=[], left=names)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, settings.REALTIME["PRESENCE_TTL"] / 3))
            try:
                await self.presence_refresh()
            except Exception:
                # Redis may be down; the entries expire on their own and are swept later.
                logger.warning("presence refresh failed", exc_info=True)

    # --- session re-check ---------------------------------------------------------------

    async def recheck(self) -> None:
        """Re-check every open socket's session, RECHECK_BATCH sockets per database round trip.

        (Account changes act at once through realtime.signals; this catches what no signal
        announces, such as a session that expired or was deleted elsewhere.)
        """
        live = self._live_sockets()
        for i in range(0, len(live), RECHECK_BATCH):
            batch = live[i : i + RECHECK_BATCH]
            verdicts = await database_sync_to_async(socket_sessions_check)([s.auth_entry() for s in batch])
            for socket in batch:
                code = verdicts[socket.auth_entry()]
                if code is not None and not socket._closing:
                    await socket.close(code)

    async def _recheck_forever(self) -> None:
        while True:
            await asyncio.sleep(settings.REALTIME["SESSION_RECHECK_SECONDS"])
            try:
                await self.recheck()
            except Exception:
                logger.warning("session re-check failed; will retry", exc_info=True)

    # --- stop ----------------------------------------------------------------------------

    async def drain(self, code: int, *, flush: float = 0.5) -> int:
        """Close every open socket with ``code``, then give the close frames ``flush`` s; returns how many."""
        sockets = self._live_sockets()
        for socket in sockets:
            try:
                await socket.close(code, "server going away")
            except Exception:
                logger.warning("drain: closing a socket failed", exc_info=True)
        if sockets:
            logger.warning("drain: closed %d socket(s) with %d", len(sockets), code)
            # Their messages still being written (ProtocolConsumer.pipeline) are committed and
            # their broadcasts queued before the outbox is flushed (stop).
            writes = [task for socket in sockets for task in socket.in_flight()]
            if writes:
                await _bounded(asyncio.gather(*writes, return_exceptions=True), "the sockets' writes in flight")
            await asyncio.sleep(flush)
        return len(sockets)

    async def stop(self, *, drain_code: int | None = None, flush: float = 0.5) -> None:
        """End this runtime: drain the sockets (with ``drain_code``) or forget them, publish what
        the outbox holds, cancel every task, close its Redis connections.

        The next :func:`runtime` call on this loop starts a fresh runtime.
        """
        if self.stopped:
            return
        self.stopped = True  # no task starts any more
        if drain_code is not None:
            # Still the loop's runtime meanwhile: the drained sockets' clean-up (leaving rooms,
            # announcing departures) runs through it during the flush.
            await self.drain(drain_code, flush=flush)
        if _runtimes.get(self.loop) is self:
            del _runtimes[self.loop]
        tasks = [t for t in self.tasks.values() if not t.done()]
        for task in tasks:
            task.cancel()
        await _bounded(asyncio.gather(*tasks, return_exceptions=True), "the background tasks' cancellation")
        self.tasks.clear()
        outbox = self.outbox.task
        if outbox is not None and not outbox.done():
            try:
                await asyncio.wait_for(asyncio.shield(outbox), OUTBOX_FLUSH_SECONDS)
            except Exception:
                outbox.cancel()
                await asyncio.gather(outbox, return_exceptions=True)
                logger.warning("stop: %d queued broadcast(s) not published", len(self.outbox.pending))
        await _bounded(self.hub.aclose(), "closing the hub")
        await _bounded(aclose_async_client(), "closing the Redis client")
        self.sockets.clear()
        self.longpoll.clear()


# A shutdown step that has not finished after this long is given up on: a process that is
# stopping must exit (Kubernetes and systemd kill it after their grace period anyway).
STOP_STEP_SECONDS = 5.0


async def _bounded(awaitable: Awaitable[Any], what: str) -> None:
    """Await one step of :meth:`Runtime.stop` for at most STOP_STEP_SECONDS; log when it overran."""
    try:
        await asyncio.wait_for(awaitable, STOP_STEP_SECONDS)
    except TimeoutError:
        logger.warning("stop: %s did not finish within %.0f s; going on", what, STOP_STEP_SECONDS)


_runtimes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Runtime] = weakref.WeakKeyDictionary()


def runtime() -> Runtime:
    """The running event loop's runtime (created on first use)."""
    loop = asyncio.get_running_loop()
    found = _runtimes.get(loop)
    if found is None:
        found = _runtimes[loop] = Runtime(loop)
    return found


def runtimes() -> Iterator[Runtime]:
    """Every runtime not stopped yet, of any loop of this process (tests clean up between them)."""
    return iter(list(_runtimes.values()))


# --- the loop of sync callers --------------------------------------------------------------

_background: asyncio.AbstractEventLoop | None = None
_background_pid: int | None = None
_background_lock = threading.Lock()


def background_loop() -> asyncio.AbstractEventLoop:
    """The process's long-lived loop for sync callers outside a server (Celery, commands).

    Started on first use, in a daemon thread, and again after a fork; a push then never
    pays for a new event loop and new Redis connections.
    """
    global _background, _background_pid
    with _background_lock:
        if _background is None or _background_pid != os.getpid():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="realtime-broadcast", daemon=True)
            thread.start()
            _background, _background_pid = loop, os.getpid()
        return _background
