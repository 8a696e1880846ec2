"""The project package and the reusable real-time core."""

from realtime.celery import app as celery_app

__all__ = ("celery_app",)
