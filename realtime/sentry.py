"""Sentry error reporting: the Django, Celery and asyncio integrations.

Off unless ``SENTRY_DSN`` is set. Message bodies and tickets must never reach Sentry,
so request bodies and query strings are scrubbed before an event leaves the process.
https://docs.sentry.io/platforms/python/integrations/
"""

from __future__ import annotations

from typing import Any

import sentry_sdk
from sentry_sdk.integrations.asyncio import AsyncioIntegration
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.django import DjangoIntegration


def _scrub(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """Drop request data that could carry a ticket or a message body."""
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("data", None)
        if request.get("query_string"):
            request["query_string"] = "[scrubbed]"
        url = request.get("url")
        if isinstance(url, str) and "?" in url:
            request["url"] = url.split("?", 1)[0]
    return event


def sentry_init(*, dsn: str, environment: str, release: str, traces_sample_rate: float = 0.0, **options: Any) -> bool:
    """Initialise the SDK when ``dsn`` is set; return whether it was."""
    if not dsn:
        return False
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release or None,
        traces_sample_rate=traces_sample_rate,
        send_default_pii=False,
        # Frame locals hold message bodies (text_data, payload) and tickets (query strings).
        include_local_variables=False,
        integrations=[DjangoIntegration(), CeleryIntegration(monitor_beat_tasks=True), AsyncioIntegration()],
        before_send=_scrub,
        **options,
    )
    return True
