"""Celery tasks: thin wrappers that call services."""

from __future__ import annotations

from celery import shared_task

from attachments import services
from chat.tasks import RETRY


@shared_task(**RETRY)
def attachments_sweep() -> int:
    """Remove uploads left unattached for a day (Celery beat, hourly)."""
    return services.attachments_sweep()
