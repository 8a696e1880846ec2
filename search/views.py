"""GET /api/search/?q=...[&room=SLUG][&before=ID][&limit=N]: JSON hits, newest first.

Every refusal is a JSON 4xx (bad text 400, unknown room 404, a room one may not read 403,
too many searches 429); the search text is never logged.
"""

from __future__ import annotations

import logging
import math

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_GET
from redis.exceptions import RedisError

from chat import events
from chat.selectors import room_access, room_by_slug
from realtime.protocol import MAX_SEQ, SLUG_RE
from realtime.ratelimit import bucket_take
from search import selectors
from search.query import QueryError, query_parse

logger = logging.getLogger(__name__)

PAGE_DEFAULT, PAGE_MAX = 20, 50


def _error(status: int, error: str, detail: str, **extra) -> JsonResponse:
    response = JsonResponse({"error": error, "detail": detail, **extra}, status=status)
    patch_cache_control(response, private=True, no_store=True)
    return response


@login_required
@require_GET
def search(request: HttpRequest) -> JsonResponse:
    """Messages matching ``q`` in the rooms the user may read now (or in ``room``), newest first.

    ``next_before`` is the cursor of the next page: pass it back as ``before``.
    """
    try:
        query = query_parse(request.GET.get("q", ""))
    except QueryError as exc:
        return _error(400, "invalid_query", str(exc))
    try:
        limit = max(1, min(PAGE_MAX, int(request.GET.get("limit", PAGE_DEFAULT))))
        before = int(request.GET["before"]) if "before" in request.GET else None
        if before is not None and not 0 <= before <= MAX_SEQ:
            raise ValueError(before)
    except ValueError:
        return _error(400, "invalid_field", "before is an id from next_before; limit an integer")
    room = None
    slug = request.GET.get("room")
    if slug is not None:
        room = room_by_slug(slug=slug) if SLUG_RE.fullmatch(slug) else None
        if room is None:
            return _error(404, "room_not_found", "no such room")
        if not room_access(room=room, user=request.user).can_read:
            return _error(403, "forbidden", "you may not read this room")
    wait = _search_wait(user_id=request.user.pk)
    if wait is not None:
        response = _error(429, "rate_limited", "too many searches: try again shortly", retry_after=wait)
        response["Retry-After"] = str(max(1, math.ceil(wait)))
        return response
    page = selectors.message_search(user=request.user, query=query, room=room, before=before, limit=limit)
    results = [{**events.message_event(hit.message), "highlight": hit.highlight} for hit in page.hits]
    response = JsonResponse({"query": query.text, "results": results, "next_before": page.next_before})
    patch_cache_control(response, private=True, no_store=True)
    return response


def _search_wait(*, user_id: int) -> float | None:
    """Take one search from the user's bucket: None if allowed, else the seconds to wait.

    With Redis down searches are let through (and logged): the limit guards the database
    against one user's flood, it is not a permission.
    """
    try:
        allowed, wait = bucket_take(
            key=f"search:{user_id}", burst=settings.SEARCH_RATE_BURST, per_second=settings.SEARCH_RATE_PER_SECOND
        )
    except RedisError:
        logger.warning("search limit not checked: Redis unavailable", exc_info=True)
        return None
    return None if allowed else wait
