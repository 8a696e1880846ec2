"""Celery tasks: thin wrappers that take ids and call services.

Workers ack late and reject on worker loss (settings), so a task interrupted by a crash
runs again: each service here is idempotent. Transient failures (Redis, the database)
retry with backoff a few times, never forever; failures reach Sentry through its
Celery integration.
"""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError
from redis.exceptions import RedisError

from chat import selectors, services

RETRY = {
    "autoretry_for": (RedisError, OperationalError, OSError),
    "retry_backoff": True,
    "retry_backoff_max": 60,
    "max_retries": 5,
    "acks_late": True,
    "reject_on_worker_lost": True,
}


@shared_task(**RETRY)
def announcement_deliver(announcement_id: int) -> int | None:
    """Deliver one announcement; returns the number of sockets it went to."""
    announcement = services.announcement_deliver(announcement_id=announcement_id)
    return announcement.sockets if announcement is not None else None


@shared_task(**RETRY)
def announcements_queue_due() -> int:
    """Queue the announcements that have come due (run by Celery beat every few seconds)."""
    return services.announcements_queue_due()


@shared_task(bind=True, **RETRY)
def room_reminder(self, room: str, text: str) -> int | None:
    """A recurring reminder to a room, for schedules edited in the admin (django-celery-beat).

    Keyed by the task id, so a redelivered run announces once.
    """
    target = selectors.room_by_slug(slug=room)
    if target is None:
        return None
    announcement = services.announcement_create(body=text, room=target, key=f"reminder:{self.request.id}")
    return announcement.pk


@shared_task(**RETRY)
def message_moderate(message_id: int) -> None:
    """The slow-check hook after a message is stored (the word filter itself runs in the write path)."""
    services.message_moderate(message_id=message_id)


@shared_task(**RETRY)
def mentions_notify(message_id: int) -> list[str]:
    """Notify the users a message mentions."""
    return services.mentions_notify(message_id=message_id)
