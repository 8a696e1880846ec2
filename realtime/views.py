"""HTTP endpoints of the real-time core: the echo page, health, WebSocket tickets, edges, metrics."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from realtime.auth import ticket_issue
from realtime.redis_pool import redis_sync


@require_GET
def echo_page(request: HttpRequest) -> HttpResponse:
    """The article's echo example, against our own /ws/echo/."""
    return render(request, "echo.html")


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness and readiness: the database and Redis answer (503 otherwise)."""
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception:
        checks["database"] = "error"
    try:
        redis_sync().ping()
        checks["redis"] = "ok"
    except Exception:
        checks["redis"] = "error"
    healthy = all(v == "ok" for v in checks.values())
    return JsonResponse({"status": "ok" if healthy else "error", **checks}, status=200 if healthy else 503)


@never_cache
@require_POST
@login_required
def ws_ticket(request: HttpRequest) -> JsonResponse:
    """A single-use WebSocket ticket for the logged-in user (CSRF-protected POST).

    A locked-out account gets 429 with the time to retry, not a ticket (realtime/lockout.py).
    """
    from django.conf import settings

    from realtime.lockout import account_lockout_until, lockout_refusal

    until = account_lockout_until(request.user)
    if until is not None:
        return lockout_refusal(until)
    ticket = ticket_issue(user=request.user, session_key=request.session.session_key)
    return JsonResponse({"ticket": ticket, "expires_in": settings.REALTIME["TICKET_TTL"]})


@require_GET
def edges(request: HttpRequest) -> JsonResponse:
    """The regional edges (wss and health URLs); ``preferred`` for the CDN's ``CF-IPCountry``."""
    from django.utils.cache import patch_cache_control, patch_vary_headers

    from realtime.edges import country_header_read, edges_describe

    response = JsonResponse(edges_describe(country=country_header_read(request.headers.get("CF-IPCountry"))))
    # Per-country answers must not be shared by caches that ignore Vary (most CDNs do).
    patch_vary_headers(response, ["CF-IPCountry"])
    patch_cache_control(response, private=True, max_age=300)
    return response


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics of this process (and its realtime.web siblings); 403 without the bearer token
    or an allowed address."""
    from realtime.metrics import CONTENT_TYPE, SIBLINGS_HEADER, exposition, scrape_allowed

    if not scrape_allowed(
        authorization=request.headers.get("Authorization", ""), remote_addr=request.META.get("REMOTE_ADDR", "")
    ):
        return HttpResponse("forbidden\n", status=403, content_type="text/plain; charset=utf-8")
    siblings = request.headers.get(SIBLINGS_HEADER) != "0"
    return HttpResponse(exposition(siblings=siblings, host=request.get_host()), content_type=CONTENT_TYPE)
