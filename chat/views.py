"""Chat pages and the history API. Reads through chat.selectors, writes through chat.services."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseNotModified, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_GET, require_http_methods
from redis.exceptions import RedisError

from chat import avatars, errors, events, selectors, services
from chat.forms import RoomForm, SignupForm
from realtime import features
from realtime.protocol import SLUG_RE
from realtime.ratelimit import bucket_take

logger = logging.getLogger(__name__)


def _rooms_payload(request: HttpRequest) -> list[dict]:
    return [events.room_entry(listing) for listing in selectors.room_list(user=request.user)]


# --- JSON API helpers: a refusal is a JSON 4xx, never a redirect or a 500 ---------------

#: The HTTP status of each chat refusal.
_STATUS = {
    errors.RoomNotFound: 404, errors.MessageNotFound: 404, errors.InvalidRequest: 400,
    errors.Blocked: 400, errors.Forbidden: 403, errors.Banned: 403, errors.Muted: 403,
}


def _refusal(exc: errors.ChatError) -> JsonResponse:
    """A chat refusal as JSON with the status of its kind."""
    return JsonResponse({"error": exc.code, "detail": exc.detail, **exc.context}, status=_STATUS.get(type(exc), 403))


def _api_login_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Like ``login_required``, but a JSON 401 instead of a redirect to the login page."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return JsonResponse({"error": "not_authenticated", "detail": "log in first"}, status=401)
        return view(request, *args, **kwargs)

    return wrapper


def _json_body(request: HttpRequest) -> dict[str, Any]:
    """The request's JSON object; InvalidRequest if it is not one."""
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise errors.InvalidRequest("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise errors.InvalidRequest("the body must be a JSON object")
    return body


def _room_or_refusal(slug: str):
    """The room of a URL's slug, or RoomNotFound."""
    room = selectors.room_by_slug(slug=slug) if SLUG_RE.fullmatch(slug) else None
    if room is None:
        raise errors.RoomNotFound("no such room", room=slug)
    return room


@login_required
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """The chat: room list, messages, composer, presence."""
    rooms = _rooms_payload(request)
    config = {
        "user": request.user.get_username(),
        "rooms": rooms,
        # By default a room rather than a DM (DM slugs sort first).
        "room": request.GET.get("room") or next(
            (r["slug"] for r in rooms if r["kind"] != "dm"), rooms[0]["slug"] if rooms else None),
        "maxBody": settings.REALTIME["MAX_BODY_CHARS"],
        "pingMs": settings.REALTIME["CLIENT_PING_MS"],
        "moderates": selectors.rooms_moderated(user=request.user),
        "avatar": events.avatar_url(request.user),
    }
    context = {"config": config, "room_form": RoomForm(), "feature_scripts": features.scripts()}
    return render(request, "chat/index.html", context)


@login_required
@require_GET
def rooms_list(request: HttpRequest) -> JsonResponse:
    """The rooms the user can see, with their latest seq (for unread counts)."""
    response = JsonResponse({"rooms": _rooms_payload(request)})
    patch_cache_control(response, private=True, no_cache=True)
    return response


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    """Create an account and log in; past the sign-up limit of the client's address, 429 and when to retry."""
    if request.user.is_authenticated:
        return redirect("chat:index")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        wait = _signup_wait(address=request.META.get("REMOTE_ADDR", ""))
        if wait is not None:
            context = {"form": form, "retry_at": timezone.now() + timedelta(seconds=wait),
                       "retry_after": max(1, math.ceil(wait))}
            response = render(request, "registration/signup.html", context, status=429)
            response["Retry-After"] = str(context["retry_after"])
            return response
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("chat:index")
    return render(request, "registration/signup.html", {"form": form})


def _signup_wait(*, address: str) -> float | None:
    """Take one sign-up from the address's bucket: None if allowed, else the seconds to wait.

    Only valid forms take one, so a mistyped password costs nothing. Daphne runs with
    --proxy-headers, so REMOTE_ADDR is the client. With Redis down, sign-ups are let
    through (and logged): the limit is a brake on mass sign-ups, not an authentication.
    """
    try:
        allowed, wait = bucket_take(
            key=f"signup:{address}",
            burst=settings.SIGNUP_LIMIT,
            per_second=settings.SIGNUP_LIMIT / settings.SIGNUP_WINDOW_SECONDS,
        )
    except RedisError:
        logger.warning("sign-up limit not checked: Redis unavailable", exc_info=True)
        return None
    return None if allowed else wait


@login_required
@require_http_methods(["POST"])
def room_new(request: HttpRequest) -> HttpResponse:
    """Create a room from the chat page's form and open it."""
    form = RoomForm(request.POST)
    if form.is_valid():
        try:
            room = services.room_create(
                slug=form.cleaned_data["slug"],
                title=form.cleaned_data["title"],
                is_public=form.cleaned_data["is_public"],
                created_by=request.user,
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            return redirect(f"/?room={room.slug}")
    return render(request, "chat/room_new.html", {"room_form": form}, status=400)


@login_required
@require_GET
def room_messages(request: HttpRequest, slug: str) -> HttpResponse:
    """A page of older messages: ``?before=SEQ`` (default: the newest), ``&limit=N`` (<= 100).

    ``?around=SEQ`` instead: the messages on either side of SEQ and SEQ itself (a search hit).

    Members only. Sent with an ETag and a private Cache-Control, so the browser's cache
    answers repeated reads and the socket carries only live traffic.
    """
    if not SLUG_RE.fullmatch(slug):
        return JsonResponse({"error": "room_not_found"}, status=404)
    room = selectors.room_by_slug(slug=slug)
    if room is None:
        return JsonResponse({"error": "room_not_found"}, status=404)
    if not selectors.room_access(room=room, user=request.user).can_read:
        return JsonResponse({"error": "forbidden"}, status=403)
    try:
        limit = max(1, min(100, int(request.GET.get("limit", settings.REALTIME["HISTORY_PAGE"]))))
        before = int(request.GET["before"]) if "before" in request.GET else room.last_seq + 1
        around = int(request.GET["around"]) if "around" in request.GET else None
    except ValueError:
        return JsonResponse({"error": "invalid_field", "detail": "before, around and limit are integers"}, status=400)
    if around is not None:
        page = selectors.room_around(room=room, seq=around, limit=limit)
    else:
        page = selectors.room_before(room=room, before_seq=before, limit=limit)
    body = {
        "room": slug,
        "messages": [events.message_event(m) for m in page],
        "has_more": bool(page) and page[0].seq > 1,
    }
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    etag = '"' + hashlib.sha256(payload).hexdigest()[:32] + '"'
    if etag in request.headers.get("If-None-Match", ""):
        response: HttpResponse = HttpResponseNotModified()
    else:
        response = HttpResponse(payload, content_type="application/json")
    response["ETag"] = etag
    # A page before a given seq only changes on an edit or delete: cache briefly, then revalidate.
    patch_cache_control(response, private=True, max_age=30 if "before" in request.GET and around is None else 0)
    response["Vary"] = "Cookie"
    return response


@login_required
@require_http_methods(["POST"])
def avatar_upload(request: HttpRequest) -> JsonResponse:
    """Set one's profile picture from a multipart ``picture`` file; 200 with its ``avatar`` URL, or 400 and why."""
    upload = request.FILES.get("picture")
    if upload is None:
        return JsonResponse({"error": "invalid_field", "detail": "send the picture as the file field 'picture'"},
                            status=400)
    if upload.size > avatars.MAX_BYTES:
        return JsonResponse({"error": "too_large", "detail": "the picture is larger than 5 MB"}, status=413)
    try:
        avatar = services.avatar_set(user=request.user, data=upload.read())
    except avatars.AvatarRefused as exc:
        return JsonResponse({"error": "invalid_image", "detail": str(exc)}, status=400)
    return JsonResponse({"avatar": avatar.url})


@login_required
@require_GET
def avatar_image(request: HttpRequest, user_id: int) -> HttpResponse:
    """A profile picture, to logged-in users: always our own re-encoded PNG, never sniffed as anything else."""
    avatar = selectors.avatar_of(user_id=user_id)
    if avatar is None:
        return JsonResponse({"error": "not_found"}, status=404)
    response = HttpResponse(bytes(avatar.png), content_type="image/png")
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Content-Disposition"] = 'inline; filename="avatar.png"'
    # The URL carries the version (?v=): a new picture is a new URL, so browsers may keep this one.
    patch_cache_control(response, private=True, max_age=86400)
    return response


# --- Direct messages, members, one's own notification setting, people ------------------


@_api_login_required
@require_http_methods(["POST"])
def dm_open(request: HttpRequest) -> JsonResponse:
    """``POST {"users": ["bob", ...]}``: the DM with those people, 201 when new, 200 when it existed."""
    try:
        body = _json_body(request)
        users = body.get("users")
        if not isinstance(users, list) or not all(isinstance(u, str) and 0 < len(u) <= 150 for u in users):
            raise errors.InvalidRequest("users is a list of usernames", field="users")
        if len(users) > services.DM_MAX_OTHERS + 1:
            raise errors.InvalidRequest(f"a direct message holds at most {services.DM_MAX_OTHERS} other people",
                                        field="users")
        room, created = services.dm_open(opener=request.user, usernames=users)
    except errors.ChatError as exc:
        return _refusal(exc)
    entry = events.room_entry(selectors.room_listing(room=room, user=request.user))
    return JsonResponse({"room": room.slug, "created": created, "entry": entry}, status=201 if created else 200)


def _member_entry(membership) -> dict[str, Any]:
    return {"user": membership.user.get_username(), "name": selectors.display_name(membership.user),
            "role": membership.role}


@_api_login_required
@require_http_methods(["GET", "POST"])
def room_members(request: HttpRequest, slug: str) -> JsonResponse:
    """``GET``: a room's members (members only). ``POST {"user": "bob"}``: invite (owner, moderators)."""
    try:
        room = _room_or_refusal(slug)
        if request.method == "GET":
            access = selectors.room_access(room=room, user=request.user)
            access.require("read")
            mine = access.membership
            response = JsonResponse({
                "room": room.slug, "dm": room.is_dm,
                "role": mine.role if mine is not None else None,
                "members": [_member_entry(m) for m in selectors.room_members(room=room)],
            })
            patch_cache_control(response, private=True, no_cache=True)
            return response
        username = _json_body(request).get("user")
        if not isinstance(username, str) or not 0 < len(username) <= 150:
            raise errors.InvalidRequest("user is a username", field="user")
        membership, created = services.member_invite(room=room, by=request.user, username=username)
    except errors.ChatError as exc:
        return _refusal(exc)
    return JsonResponse({"room": room.slug, **_member_entry(membership)}, status=201 if created else 200)


@_api_login_required
@require_http_methods(["DELETE"])
def room_member(request: HttpRequest, slug: str, username: str) -> HttpResponse:
    """``DELETE``: take a member out of the room (owner, moderators); their sockets leave at once."""
    try:
        room = _room_or_refusal(slug)
        services.member_remove(room=room, by=request.user, username=username)
    except errors.ChatError as exc:
        return _refusal(exc)
    return HttpResponse(status=204)


@_api_login_required
@require_http_methods(["POST"])
def room_mute(request: HttpRequest, slug: str) -> JsonResponse:
    """``POST {"muted": true|false}``: silence a room's notifications for oneself."""
    try:
        room = _room_or_refusal(slug)
        muted = _json_body(request).get("muted")
        if not isinstance(muted, bool):
            raise errors.InvalidRequest("muted is true or false", field="muted")
        membership = services.room_notifications_set(room=room, user=request.user, muted=muted)
    except errors.ChatError as exc:
        return _refusal(exc)
    return JsonResponse({"room": room.slug, "muted": membership.notifications_muted})


@_api_login_required
@require_GET
def people(request: HttpRequest) -> JsonResponse:
    """``?q=``: active people whose username or name starts with it (usernames and display names only)."""
    q = request.GET.get("q", "")[:150]
    found = selectors.people_search(q=q, exclude=request.user)
    response = JsonResponse({"people": [{"user": u.get_username(), "name": selectors.display_name(u)} for u in found]})
    patch_cache_control(response, private=True, no_cache=True)
    return response
