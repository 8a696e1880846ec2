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
(tests/realtime/test_broadcast.py proves the reuse).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
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
        metrics.layer_error("publish")
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


async def aroom_send(slug: str, event: dict[str, Any], *, exclude: str | None = None) -> None:
    """Send a protocol event to everyone in a room (``exclude``: a channel name to skip)."""
    message = {"type": EVENT, "event": event, "exclude": exclude, "room": slug, "ts": time.time()}
    await apublish(room_group(slug), message)


async def auser_send(user_id: int, event: dict[str, Any]) -> None:
    """Send a protocol event to every socket of a user, whatever room they have open."""
    await apublish(user_group(user_id), {"type": EVENT, "event": event, "ts": time.time()})


async def aeveryone_send(event: dict[str, Any]) -> None:
    """Send a protocol event to every open socket."""
    await apublish(EVERYONE, {"type": EVENT, "event": event, "ts": time.time()})


async def auser_control(user_id: int, action: str, **params: Any) -> None:
    """Tell every socket of a user to act (``room_remove``, ``session_end``, ``close``)."""
    await apublish(user_group(user_id), {"type": CONTROL, "action": action, **params})


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


def room_send_on_commit(slug: str, event: dict[str, Any]) -> None:
    """Send to a room once the current transaction commits (never if it rolls back)."""
    transaction.on_commit(_safely(lambda: room_send(slug, event)))


def user_send_on_commit(user_id: int, event: dict[str, Any]) -> None:
    """Send to a user's sockets once the current transaction commits."""
    transaction.on_commit(_safely(lambda: user_send(user_id, event)))


def user_control_on_commit(user_id: int, action: str, **params: Any) -> None:
    """Send a control to a user's sockets once the current transaction commits."""
    transaction.on_commit(_safely(lambda: user_control(user_id, action, **params)))
