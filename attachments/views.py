"""Uploading to a room and fetching files. Writes through attachments.services, reads through its selectors.

Every door here asks chat.selectors.room_access (through the service and the selector):
a room the user may not read, and a file they may not see, answer 404 as if absent.
"""

from __future__ import annotations

import logging
import math

from django.conf import settings
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.cache import patch_cache_control
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST
from redis.exceptions import RedisError

from attachments import events, selectors, services
from attachments.errors import UploadRejected, UploadTooLarge
from attachments.models import INLINE_TYPES
from attachments.uploads import SizeCapUploadHandler
from chat.errors import ChatError
from realtime.protocol import SLUG_RE
from realtime.ratelimit import bucket_take

logger = logging.getLogger(__name__)

# Room the multipart framing (boundaries, part headers, a short file name) may take
# beyond the file itself before a Content-Length alone refuses the request.
MULTIPART_SLACK = 64 * 1024


def _error(status: int, code: str, detail: str, **extra) -> JsonResponse:
    return JsonResponse({"error": code, "detail": detail, **extra}, status=status)


def _too_large() -> JsonResponse:
    limit = settings.UPLOAD_MAX_BYTES
    return _error(413, UploadTooLarge.code, f"files are limited to {limit} bytes", limit=limit)


@csrf_exempt  # checked by upload's inner view, after the size cap is installed (Django's docs on upload handlers)
@require_POST
def upload(request: HttpRequest, slug: str) -> HttpResponse:
    """``POST /api/rooms/<slug>/uploads/`` (field ``file``): 201 and the attachment's JSON.

    The declared Content-Length is checked before the body is parsed, and the size cap
    stops the parse while it streams, so an oversized body is never stored as a file.
    """
    if not request.user.is_authenticated:
        return _error(403, "not_authenticated", "log in first")
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return _error(400, "invalid_request", "Content-Length is not a number")
    if declared > settings.UPLOAD_MAX_BYTES + MULTIPART_SLACK:
        return _too_large()
    cap = SizeCapUploadHandler(request, limit=settings.UPLOAD_MAX_BYTES)
    request.upload_handlers.insert(0, cap)
    return _upload(request, slug, cap)


@csrf_protect
def _upload(request: HttpRequest, slug: str, cap: SizeCapUploadHandler) -> HttpResponse:
    if not SLUG_RE.fullmatch(slug):
        return _error(404, "room_not_found", "no such room")
    file = request.FILES.get("file")
    if cap.exceeded:
        return _too_large()
    if file is None:
        return _error(400, UploadRejected.code, "send the file in the multipart field `file`")
    wait = _upload_wait(user_id=request.user.pk)
    if wait is not None:
        response = _error(429, "rate_limited", "too many uploads; try again later", retry_after=wait)
        response["Retry-After"] = str(max(1, math.ceil(wait)))
        return response
    try:
        attachment = services.upload_store(room_slug=slug, user=request.user, file=file)
    except UploadTooLarge:
        return _too_large()
    except UploadRejected as exc:
        return _error(400, exc.code, exc.detail)
    except ChatError:
        # Unknown, private, banned: all look like no room at all.
        return _error(404, "room_not_found", "no such room")
    response = JsonResponse(events.attachment_event(attachment), status=201)
    patch_cache_control(response, private=True, no_store=True)
    return response


def _upload_wait(*, user_id: int) -> float | None:
    """Take one upload from the user's bucket: None if allowed, else seconds to wait (Redis down: allowed, logged)."""
    try:
        allowed, wait = bucket_take(
            key=f"upload:{user_id}",
            burst=settings.UPLOAD_RATE_BURST,
            per_second=settings.UPLOAD_RATE_PER_MINUTE / 60,
        )
    except RedisError:
        logger.warning("upload limit not checked: Redis unavailable", exc_info=True)
        return None
    return None if allowed else wait


@require_GET
def file(request: HttpRequest, token: str) -> HttpResponse:
    """The file itself, to readers of its room only (404 for everyone else)."""
    attachment = selectors.attachment_readable(token=token, user=request.user)
    if attachment is None:
        raise Http404("no such file")
    inline = attachment.content_type in INLINE_TYPES
    return _serve(attachment.file, content_type=attachment.content_type if inline else "application/octet-stream",
                  name=attachment.name, inline=inline)


@require_GET
def thumbnail(request: HttpRequest, token: str) -> HttpResponse:
    """A picture's thumbnail (WebP), to the same readers as the file."""
    attachment = selectors.attachment_readable(token=token, user=request.user)
    if attachment is None or not attachment.thumbnail:
        raise Http404("no such file")
    stem = attachment.name.rsplit(".", 1)[0]
    return _serve(attachment.thumbnail, content_type="image/webp", name=f"{stem}-thumbnail.webp", inline=True)


def _serve(field, *, content_type: str, name: str, inline: bool) -> FileResponse:
    """Stream stored bytes with the headers that keep them what they are: typed, private, never sniffed."""
    response = FileResponse(field.open("rb"), content_type=content_type, as_attachment=not inline, filename=name)
    response["X-Content-Type-Options"] = "nosniff"
    # Even if a browser rendered the bytes as a page, they could run nothing and reach nothing.
    response["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    patch_cache_control(response, private=True, max_age=300)
    response["Vary"] = "Cookie"
    return response
