"""The single path from server-side code to open sockets.

Everything that reaches a socket from outside its own consumer (chat messages, presence,
admin actions, Celery pushes) goes through this module, so the transport under it can
change without touching features. The transport is ``realtime.hub``: one Redis pub/sub
topic per group (a room, a user, everyone), subscribed once per process, each message
delivered to the process's local sockets with its frame encoded once per encoding.

Two kinds of messages travel on it:

* **events** (``realtime.event``): a protocol event, forwarded to the client as is;
* **controls** (``realtime.control``): instructions to the consumer itself (leave a room,
  close the socket), never forwarded.

Callable from async code (``a``-prefixed functions) and from sync code (the rest). From
a thread that ``sync_to_async`` started (Django views, consumers' database calls) the
sync functions run on the server's own event loop; anywhere else (Celery workers,
management commands) they run on one long-lived background loop per process, so a
push never pays for a new event loop and a new Redis connection
(tests/realtime/test_push.py proves the reuse; tests/realtime/test_broadcast.py the
commit order).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Future
from contextlib import asynccontextmanager
from typing import Any

from asgiref.sync import SyncToAsync, async_to_sync
from django.db import transaction

from realtime import metrics, presence
from realtime.hub import hub

logger = logging.getLogger(__name__)

EVENT = "realtime.event"
CONTROL = "realtime.control"
EVERYONE = "everyone"

# Sync pushes from outside a server loop wait at most this long for Redis.
PUBLISH_TIMEOUT = 10


def room_group(slug: str) -> str:
    """The group of every socket that joined room ``slug``."""
    return f"room.{slug}"


def user_group(user_id: int) -> str:
    """The group of every socket of one user, on every process."""
    return f"user.{user_id}"


# --- async API -------------------------------------------------------------------


async def apublish(group: str, message: dict[str, Any]) -> None:
    """Send a raw message to a group's subscribers on every process (prefer the typed helpers below)."""
    try:
        await hub().publish(group, message)
    except Exception:
        metrics.redis_error("publish")
        raise


async def agroup_size(group: str) -> int:
    """How many sockets are in a group right now, across every process (from presence)."""
    return await presence.sockets_in(group)


@asynccontextmanager
async def alisten(group: str) -> AsyncIterator[asyncio.Queue]:
    """Receive a group's messages on a queue while the block runs (tools and tests)."""
    listener = _QueueListener()
    await hub().subscribe(group, listener)
    try:
        yield listener.queue
    finally:
        await hub().unsubscribe(group, listener)


class _QueueListener:
    def __init__(self) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()

    def hub_deliver(self, message: dict[str, Any], frames: dict[Any, Any]) -> None:
        self.queue.put_nowait(message)

    def hub_resync(self) -> None:
        pass


def _room_event(slug: str, event: dict[str, Any], exclude: str | None = None) -> dict[str, Any]:
    return {"type": EVENT, "event": event, "exclude": exclude, "room": slug, "ts": time.time()}


def _event(event: dict[str, Any]) -> dict[str, Any]:
    return {"type": EVENT, "event": event, "ts": time.time()}


def _control(action: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"type": CONTROL, "action": action, **params}


async def aroom_send(slug: str, event: dict[str, Any], *, exclude: str | None = None) -> None:
    """Send a protocol event to everyone in a room (``exclude``: a channel name to skip)."""
    await apublish(room_group(slug), _room_event(slug, event, exclude))


async def auser_send(user_id: int, event: dict[str, Any]) -> None:
    """Send a protocol event to every socket of a user, whatever room they have open."""
    await apublish(user_group(user_id), _event(event))


async def aeveryone_send(event: dict[str, Any]) -> None:
    """Send a protocol event to every open socket."""
    await apublish(EVERYONE, _event(event))


async def auser_control(user_id: int, action: str, **params: Any) -> None:
    """Tell every socket of a user to act (``room_remove``, ``session_end``, ``close``)."""
    await apublish(user_group(user_id), _control(action, params))


# --- sync API --------------------------------------------------------------------

_loop: asyncio.AbstractEventLoop | None = None
_loop_pid: int | None = None
_loop_lock = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    """The process's long-lived publishing loop, started on first use (fork-safe)."""
    global _loop, _loop_pid
    with _loop_lock:
        if _loop is None or _loop_pid != os.getpid():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="realtime-broadcast", daemon=True)
            thread.start()
            _loop, _loop_pid = loop, os.getpid()
        return _loop


def _in_server_thread() -> bool:
    """Whether this thread was started by sync_to_async from a live event loop."""
    return getattr(SyncToAsync.threadlocal, "main_event_loop_pid", None) == os.getpid() and getattr(
        SyncToAsync.threadlocal, "main_event_loop", None
    ) is not None


def run_sync(make: Callable[[], Awaitable[Any]]) -> Any:
    """Run a coroutine from sync code without creating an event loop per call."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("called the sync broadcast API from async code; await the a-prefixed function")
    async def call() -> Any:
        return await make()

    if _in_server_thread():
        return async_to_sync(call)()
    future: Future = asyncio.run_coroutine_threadsafe(call(), _background_loop())
    return future.result(timeout=PUBLISH_TIMEOUT)


def room_send(slug: str, event: dict[str, Any], *, exclude: str | None = None) -> None:
    """Sync :func:`aroom_send`."""
    run_sync(lambda: aroom_send(slug, event, exclude=exclude))


def user_send(user_id: int, event: dict[str, Any]) -> None:
    """Sync :func:`auser_send`."""
    run_sync(lambda: auser_send(user_id, event))


def everyone_send(event: dict[str, Any]) -> None:
    """Sync :func:`aeveryone_send`."""
    run_sync(lambda: aeveryone_send(event))


def user_control(user_id: int, action: str, **params: Any) -> None:
    """Sync :func:`auser_control`."""
    run_sync(lambda: auser_control(user_id, action, **params))


def _safely(fn: Callable[[], None]) -> Callable[[], None]:
    """A commit hook that logs a failed publish instead of raising after the commit.

    The write is already durable; a client that missed the event gets it from history
    on its next join (resume by seq), so the failure is reported, not re-raised.
    """

    def hook() -> None:
        try:
            fn()
        except Exception:
            logger.exception("broadcast after commit failed")

    return hook


def _after_commit(group: str, message: dict[str, Any]) -> None:
    """Publish a committed change: queued on the server's loop, else sent synchronously.

    On a server thread (a consumer's or view's database call) the commit hook only
    queues the message on the server's loop (:class:`_Outbox`) and returns: the one
    database thread does not wait for a Redis round trip per message, and a Redis
    outage does not hold every other query of the process for the publish timeout.
    Elsewhere (Celery, management commands) it publishes before returning.
    """
    if _in_server_thread():
        loop = SyncToAsync.threadlocal.main_event_loop
        loop.call_soon_threadsafe(_outbox_put, loop, group, message)
    else:
        run_sync(lambda: apublish(group, message))


def room_send_on_commit(slug: str, event: dict[str, Any]) -> None:
    """Send to a room once the current transaction commits (never if it rolls back)."""
    transaction.on_commit(_safely(lambda: _after_commit(room_group(slug), _room_event(slug, event))))


def user_send_on_commit(user_id: int, event: dict[str, Any]) -> None:
    """Send to a user's sockets once the current transaction commits."""
    transaction.on_commit(_safely(lambda: _after_commit(user_group(user_id), _event(event))))


def user_control_on_commit(user_id: int, action: str, **params: Any) -> None:
    """Send a control to a user's sockets once the current transaction commits."""
    transaction.on_commit(_safely(lambda: _after_commit(user_group(user_id), _control(action, params))))


class _Outbox:
    """Messages committed on this server's threads, published in commit order.

    One task drains the queue; what accumulated while it waited on Redis goes out in
    one pipelined round trip, in order (a room's seqs are published in the order they
    were committed, as clients and ``ChatConsumer.accepts`` expect).
    """

    BATCH = 256

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: deque[tuple[str, dict[str, Any]]] = deque()
        self.task: asyncio.Task | None = None

    def put(self, group: str, message: dict[str, Any]) -> None:
        self.pending.append((group, message))
        if self.task is None or self.task.done():
            self.task = self.loop.create_task(self._drain(), name="realtime-outbox")

    async def _drain(self) -> None:
        while self.pending:
            batch = [self.pending.popleft() for _ in range(min(len(self.pending), self.BATCH))]
            try:
                await hub().publish_many(batch)
            except Exception:
                metrics.redis_error("publish")
                logger.exception("broadcast after commit failed (%d messages)", len(batch))


_outboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Outbox] = weakref.WeakKeyDictionary()


def _outbox_put(loop: asyncio.AbstractEventLoop, group: str, message: dict[str, Any]) -> None:
    """On ``loop``: queue a committed message on its outbox."""
    outbox = _outboxes.get(loop)
    if outbox is None:
        outbox = _outboxes[loop] = _Outbox(loop)
    outbox.put(group, message)
