"""The Celery app: Redis as broker, tasks discovered in installed apps.

Workers ack late and reject on worker loss, so a task interrupted by a crash is
redelivered; every task must therefore be idempotent (see chat/tasks.py).
https://docs.celeryq.dev/en/stable/django/first-steps-with-django.html
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime.settings")

app = Celery("realtime")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
