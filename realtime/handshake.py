"""The WebSocket handshake: Origin check and authentication, both before accept.

``OriginGuard`` refuses a handshake whose ``Origin`` is not one of the site's own hosts
(``ALLOWED_HOSTS``) or ``WS_ALLOWED_ORIGINS``: that is what stops cross-site WebSocket
hijacking, since browsers send cookies with any site's WebSocket.

``HandshakeAuth`` then finds the user, from a ``ticket`` query parameter or from the
session cookie. A handshake with neither, or with a bad ticket, is refused with HTTP
403 before the consumer runs. Missing ``Origin`` is tolerated only with a ticket
(non-browser clients send none; a ticket is not ambient authority like a cookie).
``Origin: null`` (sandboxed frames, ``file:`` pages) is always refused.

An account locked out by the log-in throttle (realtime/lockout.py) is refused too, like
the ticket endpoint refuses it: a lockout means no way in until the cool-off or a staff
unlock, and a handshake cannot carry the retry time, so it is a plain 403 here.

``AdmissionGuard`` runs before both: over the process's handshake budget
(realtime.admission) it answers HTTP 503 with ``Retry-After`` and nothing else runs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from asgiref.sync import markcoroutinefunction
from channels.db import database_sync_to_async
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.cookie import parse_cookie
from django.http.request import split_domain_port, validate_host

from realtime import accel, admission, metrics
from realtime.auth import session_user, ticket_redeem
from realtime.lockout import account_lockout_until

logger = logging.getLogger(__name__)


def _header(scope: dict[str, Any], name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value
    return None


def origin_allowed(origin: bytes | None, *, missing_ok: bool) -> bool:
    """Whether a handshake's Origin header may open a socket."""
    if origin is None:
        return missing_ok
    try:
        text = origin.decode("ascii")
    except UnicodeDecodeError:
        return False
    if text in settings.WS_ALLOWED_ORIGINS:
        return True
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query:
        return False
    domain, _port = split_domain_port(parts.netloc)
    return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)


async def deny(scope: dict[str, Any], receive: Any, send: Any, reason: str) -> None:
    """Refuse the handshake with HTTP 403 (logged without the query string)."""
    logger.info("websocket refused at %s: %s", scope.get("path"), reason)
    admission.handshake_done(scope)
    await WebsocketDenier()(scope, receive, send)


async def refuse_busy(scope: dict[str, Any], receive: Any, send: Any, wait: float) -> None:
    """Refuse the handshake with HTTP 503 and ``Retry-After`` (the ASGI denial response).

    Daphne sends only 403 for a refused handshake; the patch ``denial_response`` of
    realtime.accel lets it send this response. Without it a plain 403 goes out instead
    (the clients' backoff still spreads the retries).
    """
    metrics.admission_refused("handshake")
    message = await receive()  # websocket.connect
    if message.get("type") != "websocket.connect":
        return
    if not accel.active("denial_response"):
        await send({"type": "websocket.close"})
        return
    retry = str(admission.retry_after_seconds(wait)).encode()
    await send({"type": "websocket.http.response.start", "status": 503,
                "headers": [(b"retry-after", retry), (b"content-length", b"0")]})
    await send({"type": "websocket.http.response.body", "body": b""})


class AdmissionGuard:
    """Admit handshakes within the process's budget; refuse the rest with 503 + Retry-After."""

    def __init__(self, app: Any) -> None:
        self.app = app

    @markcoroutinefunction
    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[Any]:
        # Returns the coroutine to run instead of awaiting it (see realtime.routing).
        slot, wait = admission.handshake_admit()
        if wait:
            return refuse_busy(scope, receive, send, wait)
        if slot is None:
            return self.app(scope, receive, send)
        return self._admitted({**scope, admission.SCOPE_KEY: slot}, receive, send)

    async def _admitted(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        # The consumer frees the slot once it accepted or refused; this frees it when the
        # handshake never got that far (the client left, Daphne's handshake timeout).
        # This frame lasts as long as the socket: it keeps the slot, not a copy of the scope.
        slot = scope[admission.SCOPE_KEY]
        try:
            inner = self.app(scope, receive, send)
            del scope
            return await inner
        finally:
            admission.slot_done(slot)


class OriginGuard:
    """Refuse WebSocket handshakes from other sites' pages."""

    def __init__(self, app: Any, *, missing_ok: bool = False) -> None:
        self.app = app
        self.missing_ok = missing_ok

    @markcoroutinefunction
    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[Any]:
        # Returns the coroutine to run instead of awaiting it (see realtime.routing).
        if not origin_allowed(_header(scope, b"origin"), missing_ok=self.missing_ok):
            return deny(scope, receive, send, "origin not allowed")
        return self.app(scope, receive, send)


def _session_user_and_lockout(session_key: str) -> tuple[tuple[Any, str] | None, bool]:
    """``session_user`` and whether that account is locked out: both in one thread hop."""
    found = session_user(session_key)
    return found, found is not None and account_lockout_until(found[0]) is not None


class HandshakeAuth:
    """Authenticate a handshake by ticket or session cookie before the consumer runs.

    The session is read in one database call (``realtime.auth.session_user``) and only
    what the socket needs stays in its scope: the user, the session key and its auth
    hash (for re-checks). channels' Cookie and Session middleware would keep two more
    copies of the scope, the parsed cookies and the loaded session for the socket's whole
    life, and cost a second thread hop (bench/fanout S0 and S4).
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        # This frame lasts as long as the socket (it awaits the consumer): it keeps only the
        # scope the consumer gets, not the one it came with, the cookie or the session's
        # row (bench/fanout S0 and S6: memory per socket).
        scope, refused = await self._authenticate(scope)
        if refused is not None:
            return await deny(scope, receive, send, refused)
        return await self.app(scope, receive, send)

    async def _authenticate(self, scope: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """(the consumer's scope, None), or (``scope``, why the handshake is refused)."""
        origin = _header(scope, b"origin")
        tickets = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("ticket")
        if tickets:
            if not origin_allowed(origin, missing_ok=True):
                return scope, "origin not allowed"
            redeemed = await ticket_redeem(tickets[0])
            if redeemed is None:
                return scope, "invalid ticket"
            if await database_sync_to_async(account_lockout_until)(redeemed.user) is not None:
                return scope, "account locked out"
            user, method, session_key, auth_hash = redeemed.user, "ticket", redeemed.session_key, redeemed.auth_hash
        else:
            if not origin_allowed(origin, missing_ok=False):
                return scope, "origin not allowed"
            cookie = _header(scope, b"cookie")
            session_key = parse_cookie(cookie.decode("latin-1")).get(settings.SESSION_COOKIE_NAME) if cookie else None
            found, locked = (
                await database_sync_to_async(_session_user_and_lockout)(session_key) if session_key else (None, False)
            )
            if found is None:
                return scope, "not authenticated"
            if locked:
                return scope, "account locked out"
            (user, auth_hash), method = found, "session"
        return {**scope, "user": user, "auth_method": method, "auth_session_key": session_key,
                "auth_hash": auth_hash}, None
