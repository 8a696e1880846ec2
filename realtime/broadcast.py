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

Every envelope is built here (:func:`room_envelope`, :func:`user_envelope`,
:func:`control_envelope`), so each carries the same fields; events carry ``ts``, the
publish time the hub turns into the fan-out latency metric.

Callable from async code (``a``-prefixed functions) and from sync code (the rest). From
a thread that ``sync_to_async`` started (Django views, consumers' database calls) the
sync functions run on the server's own event loop; anywhere else (Celery workers,
management commands) they run on the process's background loop
(``realtime.runtime.background_loop``), so a push never pays for a new event loop and a
new Redis connection (tests/realtime/test_push.py proves the reuse;
tests/realtime/test_broadcast.py the commit order).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Future
from contextlib import asynccontextmanager
from typing import Any

from asgiref.sync import SyncToAsync, async_to_sync
from django.db import transaction

from realtime import metrics, presence
from realtime.hub import Subscriber
from realtime.protocol import presence_event
from realtime.runtime import background_loop, presence_announcer, runtime

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


# --- envelopes: every message on the hub is built here --------------------------------


def room_envelope(slug: str, event: dict[str, Any], exclude: str | None = None) -> dict[str, Any]:
    """A protocol event for room ``slug``'s sockets (``exclude``: a socket's conn id to skip)."""
    return {"type": EVENT, "event": event, "exclude": exclude, "room": slug, "ts": time.time()}


def user_envelope(event: dict[str, Any]) -> dict[str, Any]:
    """A protocol event for a user's or everyone's sockets, whatever room they have open."""
    return {"type": EVENT, "event": event, "ts": time.time()}


def control_envelope(action: str, params: dict[str, Any]) -> dict[str, Any]:
    """An instruction to the consumers themselves, never forwarded to a client."""
    return {"type": CONTROL, "action": action, **params}


# --- async API -------------------------------------------------------------------


async def apublish(group: str, message: dict[str, Any]) -> None:
    """Send a built envelope to a group's subscribers on every process (prefer the typed helpers below)."""
    try:
        await runtime().hub.publish(group, message)
    except Exception:
        metrics.redis_error("publish")
        raise


async def agroup_size(group: str) -> int:
    """How many sockets are in a group right now, across every process (from presence)."""
    return await presence.sockets_in(group)


async def asubscribe(group: str, subscriber: Subscriber) -> None:
    """Deliver a group's messages to ``subscriber`` (a socket) in this process (realtime.hub.Hub.subscribe)."""
    await runtime().hub.subscribe(group, subscriber)


async def aunsubscribe(group: str, subscriber: Subscriber) -> None:
    """Stop delivering a group's messages to ``subscriber``."""
    await runtime().hub.unsubscribe(group, subscriber)


@asynccontextmanager
async def alisten(group: str) -> AsyncIterator[asyncio.Queue]:
    """Receive a group's messages on a queue while the block runs (tools and tests)."""
    listener = _QueueListener()
    await asubscribe(group, listener)
    try:
        yield listener.queue
    finally:
        await aunsubscribe(group, listener)


class _QueueListener:
    def __init__(self) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()

    def hub_deliver(self, message: dict[str, Any], frames: dict[Any, Any]) -> None:
        self.queue.put_nowait(message)

    def hub_resync(self) -> None:
        pass


async def aroom_send(slug: str, event: dict[str, Any], *, exclude: str | None = None) -> None:
    """Send a protocol event to everyone in a room (``exclude``: a channel name to skip)."""
    await apublish(room_group(slug), room_envelope(slug, event, exclude))


async def auser_send(user_id: int, event: dict[str, Any]) -> None:
    """Send a protocol event to every socket of a user, whatever room they have open."""
    await apublish(user_group(user_id), user_envelope(event))


async def aeveryone_send(event: dict[str, Any]) -> None:
    """Send a protocol event to every open socket."""
    await apublish(EVERYONE, user_envelope(event))


async def auser_control(user_id: int, action: str, **params: Any) -> None:
    """Tell every socket of a user to act (``room_remove``, ``session_end``, ``close``)."""
    await apublish(user_group(user_id), control_envelope(action, params))


@presence_announcer
async def apresence_send(room: str, *, joined: list[str], left: list[str], exclude: str | None = None) -> None:
    """Tell a room who came and who went (installed as the runtime's presence announcer).

    The event is the core's ``presence`` event, built by ``realtime.protocol.presence_event``
    (docs/protocol.md); an app that builds its own installs its sender with
    ``realtime.runtime.presence_announcer``.
    """
    await aroom_send(room, presence_event(room=room, joined=joined, left=left), exclude=exclude)


# --- sync API --------------------------------------------------------------------


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
    future: Future = asyncio.run_coroutine_threadsafe(call(), background_loop())
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
    queues the message on the server's loop (its runtime's outbox) and returns: the one
    database thread does not wait for a Redis round trip per message, and a Redis
    outage does not hold every other query of the process for the publish timeout.
    Elsewhere (Celery, management commands) it publishes before returning.
    """
    if _in_server_thread():
        loop = SyncToAsync.threadlocal.main_event_loop
        loop.call_soon_threadsafe(_outbox_put, group, message)
    else:
        run_sync(lambda: apublish(group, message))


def room_send_on_commit(slug: str, event: dict[str, Any]) -> None:
    """Send to a room once the current transaction commits (never if it rolls back)."""
    transaction.on_commit(_safely(lambda: _after_commit(room_group(slug), room_envelope(slug, event))))


def room_send_many_on_commit(sends: list[tuple[str, dict[str, Any]]]) -> None:
    """Send ``(slug, event)`` pairs, in order, once the current transaction commits (one commit hook).

    A batch of messages (group commit) is handed to the server's loop in one wake-up and
    published in one pipelined round trip, instead of one of each per message.
    """
    if not sends:
        return
    transaction.on_commit(_safely(lambda: _after_commit_many(
        [(room_group(slug), room_envelope(slug, event)) for slug, event in sends]  # ts: the commit's time
    )))


def _after_commit_many(messages: list[tuple[str, dict[str, Any]]]) -> None:
    """Publish committed changes in order: queued on the server's loop at once, else sent now."""
    if _in_server_thread():
        SyncToAsync.threadlocal.main_event_loop.call_soon_threadsafe(_outbox_put_many, messages)
    else:
        run_sync(lambda: _apublish_many(messages))


async def _apublish_many(messages: list[tuple[str, dict[str, Any]]]) -> None:
    try:
        await runtime().hub.publish_many(messages)
    except Exception:
        metrics.redis_error("publish")
        raise


def user_send_on_commit(user_id: int, event: dict[str, Any]) -> None:
    """Send to a user's sockets once the current transaction commits."""
    transaction.on_commit(_safely(lambda: _after_commit(user_group(user_id), user_envelope(event))))


def user_control_on_commit(user_id: int, action: str, **params: Any) -> None:
    """Send a control to a user's sockets once the current transaction commits."""
    transaction.on_commit(_safely(lambda: _after_commit(user_group(user_id), control_envelope(action, params))))


def _outbox_put(group: str, message: dict[str, Any]) -> None:
    """On the server's loop: queue a committed message on its runtime's outbox."""
    runtime().outbox.put(group, message)


def _outbox_put_many(messages: list[tuple[str, dict[str, Any]]]) -> None:
    """On the server's loop: queue committed messages, in order, on its runtime's outbox."""
    outbox = runtime().outbox
    for group, message in messages:
        outbox.put(group, message)
