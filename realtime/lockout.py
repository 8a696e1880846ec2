"""Log-in lockouts (django-axes): whether an account or an address is locked out, and until when.

django-axes counts failed log-ins per account and per client address (settings, "Log-in
throttle") and refuses a log-in while either count is at the limit within the cool-off.
This module answers the same question outside a log-in, for the doors that let an account
in without its password: the ticket endpoint, the WebSocket handshake and the long-poll
open. It also renders the log-in page's 429 answer, which says when to retry.
"""

from __future__ import annotations

import functools
import math
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any
from urllib.parse import parse_qs

from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.forms import AuthenticationForm
from django.core import signing
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.cookie import parse_cookie
from django.shortcuts import render
from django.utils import timezone

from realtime.auth import TICKET_SALT, session_user


def lockout_until(*, username: str | None = None, ip_address: str | None = None) -> datetime | None:
    """When the lockout of ``username`` or of ``ip_address`` lifts; None if neither is locked out.

    Mirrors axes' count: an attempt row (one per account, address and user agent) counts
    all its failures while its latest failure is within the cool-off. So a lockout lasts
    until enough of the newest rows to reach the limit have aged out.
    """
    if not settings.AXES_ENABLED:
        return None
    cooloff = settings.AXES_COOLOFF_TIME
    limit = settings.AXES_FAILURE_LIMIT
    since = timezone.now() - cooloff
    ends = []
    for field, value in (("username", username), ("ip_address", ip_address)):
        if not value:
            continue
        with connection.cursor() as cursor:
            cursor.execute(_attempts_sql(field), [value, connection.ops.adapt_datetimefield_value(since)])
            rows = [(_aware(attempt_time), failures) for attempt_time, failures in cursor.fetchall()]
        total = 0
        for attempt_time, failures in rows:
            total += failures
            if total >= limit:
                ends.append(attempt_time + cooloff)
                break
    return max(ends, default=None)


@functools.cache
def _attempts_sql(field: str) -> str:
    # Every handshake asks (account_lockout_until): the SQL is built once, not by the ORM
    # per handshake, whose query building cost more than the query (docs/performance.md).
    q = connection.ops.quote_name
    meta = AccessAttempt._meta
    return (f"SELECT {q('attempt_time')}, {q('failures_since_start')} FROM {q(meta.db_table)} "
            f"WHERE {q(meta.get_field(field).column)} = %s AND {q('attempt_time')} >= %s "
            f"ORDER BY {q('attempt_time')} DESC")


def _aware(value: Any) -> datetime:
    """A timestamp column as an aware datetime (SQLite's cursor returns it naive, in UTC)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if timezone.is_aware(value) else timezone.make_aware(value, dt_timezone.utc)


def account_lockout_until(user: AbstractBaseUser) -> datetime | None:
    """When the lockout of ``user``'s account lifts; None if it is not locked out.

    Only the account's own count applies: an address's lockout stops log-ins from it, not
    a session that logged in before.
    """
    return lockout_until(username=user.get_username())


def lockout_payload(until: datetime) -> dict[str, Any]:
    """The JSON body of a refusal for a locked-out account: when to retry, as a time and in seconds."""
    return {"error": "locked_out", "retry_at": until.isoformat(), "retry_after": _seconds_until(until)}


def lockout_refusal(until: datetime) -> JsonResponse:
    """HTTP 429 for a locked-out account, with ``Retry-After``."""
    response = JsonResponse(lockout_payload(until), status=429)
    response["Retry-After"] = str(_seconds_until(until))
    return response


def lockout_response(
    request: HttpRequest, original_response: Any = None, credentials: dict | None = None
) -> HttpResponse:
    """The log-in page with the time to retry, HTTP 429 (``AXES_LOCKOUT_CALLABLE``).

    axes calls this with differing positional arguments in its sync and async middleware,
    so only ``request`` is read. The form is unbound: it shows no password back.
    """
    username = str(request.POST.get("username", ""))[:150]
    until = lockout_until(username=username, ip_address=getattr(request, "axes_ip_address", None))
    if until is None:  # the rows aged out between the refusal and now: a full cool-off is the safe answer
        until = timezone.now() + settings.AXES_COOLOFF_TIME
    context = {
        "form": AuthenticationForm(request, initial={"username": username}),
        "next": request.POST.get("next", ""),
        "locked_until": until,
        "retry_after": _seconds_until(until),
    }
    response = render(request, "registration/login.html", context, status=429)
    response["Retry-After"] = str(context["retry_after"])
    return response


def handshake_lockout_until(scope: dict[str, Any]) -> datetime | None:
    """The lockout of the account a handshake's ticket or session cookie names (sync; a DB call).

    For telling a refused long-poll open why: the ticket's signed user is read without
    redeeming it (the handshake already did, or refused it).
    """
    user = None
    tickets = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("ticket")
    if tickets:
        if len(tickets[0]) > 512:  # longer than any ticket (realtime.auth.ticket_redeem)
            return None
        try:
            payload = signing.loads(tickets[0], salt=TICKET_SALT)
        except signing.BadSignature:
            return None
        if isinstance(payload, dict):
            user = get_user_model().objects.filter(pk=payload.get("u")).first()
    else:
        cookie = next((v for k, v in scope.get("headers", []) if k == b"cookie"), None)
        session_key = parse_cookie(cookie.decode("latin-1")).get(settings.SESSION_COOKIE_NAME) if cookie else None
        found = session_user(session_key) if session_key else None
        user = found[0] if found else None
    return account_lockout_until(user) if user is not None else None


def _seconds_until(until: datetime) -> int:
    return max(1, math.ceil((until - timezone.now()).total_seconds()))
