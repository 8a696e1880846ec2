"""The push API: server-side code (Celery tasks, admin actions, services) speaks first.

Three audiences — a room, one user (every socket of theirs, on every process, in any
room), everyone — each in a sync and an async form, all through the single broadcast
path (``realtime.broadcast``). Sync calls from Celery workers and management commands
run on one long-lived event loop per process and reuse its Redis connections, instead
of ``async_to_sync(group_send)``'s new loop and new connection per call.

A push is a broadcast like any other: its envelope is built by realtime.broadcast, with
the same fields (``ts`` included, so pushes count in the fan-out latency metric).

Every push may carry an ``event_id``: a socket delivers each id at most once, so a task
that is redelivered after a crash (acks_late) never shows the same event twice.
Each call returns how many sockets the audience had when it was sent.
"""

from __future__ import annotations

from typing import Any

from realtime import broadcast, metrics


def _with_id(event: dict[str, Any], event_id: str | None) -> dict[str, Any]:
    return {**event, "event_id": event_id} if event_id else event


async def apush_room(slug: str, event: dict[str, Any], *, event_id: str | None = None) -> int:
    """Send ``event`` to every socket in room ``slug``."""
    await broadcast.aroom_send(slug, _with_id(event, event_id))
    return await broadcast.agroup_size(broadcast.room_group(slug))


async def apush_user(user_id: int, event: dict[str, Any], *, event_id: str | None = None) -> int:
    """Send ``event`` to every socket of one user."""
    await broadcast.auser_send(user_id, _with_id(event, event_id))
    return await broadcast.agroup_size(broadcast.user_group(user_id))


async def apush_everyone(event: dict[str, Any], *, event_id: str | None = None) -> int:
    """Send ``event`` to every open socket."""
    await broadcast.aeveryone_send(_with_id(event, event_id))
    return await broadcast.agroup_size(broadcast.EVERYONE)


@metrics.push_timed("room")
def push_room(slug: str, event: dict[str, Any], *, event_id: str | None = None) -> int:
    """Sync :func:`apush_room`."""
    return broadcast.run_sync(lambda: apush_room(slug, event, event_id=event_id))


@metrics.push_timed("user")
def push_user(user_id: int, event: dict[str, Any], *, event_id: str | None = None) -> int:
    """Sync :func:`apush_user`."""
    return broadcast.run_sync(lambda: apush_user(user_id, event, event_id=event_id))


@metrics.push_timed("everyone")
def push_everyone(event: dict[str, Any], *, event_id: str | None = None) -> int:
    """Sync :func:`apush_everyone`."""
    return broadcast.run_sync(lambda: apush_everyone(event, event_id=event_id))
