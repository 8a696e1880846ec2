"""Who a socket belongs to: WebSocket tickets and the session checks of open sockets.

Browsers authenticate with the Django session cookie. Other clients, and pages on other
domains (regional edges) where the cookie does not travel, present a **ticket**: a
short-lived, single-use, signed token from ``POST /api/ws-ticket/`` or
``manage.py ws_ticket``. A ticket carries no secret of its own: its nonce points at a
Redis entry that holds the issuing session's key, so redeeming it once deletes it
(no replay), revoking it is deleting it, and the socket it opens still ends when that
session does.

Tickets are never logged; only their nonce's hash is ever stored as a key.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.sessions.backends.base import SessionBase
from django.core import signing
from django.utils.crypto import constant_time_compare
from django.utils.module_loading import import_string

from realtime.protocol import CloseCode
from realtime.redis_pool import redis_async, redis_sync

TICKET_SALT = "realtime.ticket.v1"
NO_SESSION = "-"


def _ticket_key(nonce: str) -> str:
    return "ticket:" + hashlib.sha256(nonce.encode()).hexdigest()


@dataclass(frozen=True)
class Redeemed:
    """What a valid ticket yields: the user, and the session it was issued from, if any."""

    user: AbstractBaseUser
    session_key: str | None
    auth_hash: str


def ticket_issue(*, user: AbstractBaseUser, session_key: str | None = None, ttl: int | None = None) -> str:
    """A new single-use ticket for ``user``, valid ``ttl`` seconds (default: the setting)."""
    ttl = ttl or settings.REALTIME["TICKET_TTL"]
    nonce = secrets.token_urlsafe(18)
    redis_sync().set(_ticket_key(nonce), session_key or NO_SESSION, ex=ttl)
    return signing.dumps({"u": user.pk, "n": nonce, "t": ttl}, salt=TICKET_SALT, compress=False)


def ticket_revoke(ticket: str) -> bool:
    """Make a ticket unusable; returns whether it was still live."""
    try:
        payload = signing.loads(ticket, salt=TICKET_SALT)
    except signing.BadSignature:
        return False
    return bool(redis_sync().delete(_ticket_key(str(payload.get("n", "")))))


def _ticket_user(user_id: object) -> AbstractBaseUser | None:
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    return user


async def ticket_redeem(ticket: str) -> Redeemed | None:
    """The ticket's user and session, consuming it; None if forged, expired, used or revoked."""
    from channels.db import database_sync_to_async

    if not ticket or len(ticket) > 512:
        return None
    try:
        payload = signing.loads(ticket, salt=TICKET_SALT)
        if not isinstance(payload, dict) or not isinstance(payload.get("n"), str):
            return None
        # The signed age limit is the ticket's own ttl (manage.py ws_ticket --ttl), not the default.
        ttl = payload.get("t", settings.REALTIME["TICKET_TTL"])
        if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl <= 0:
            return None
        signing.loads(ticket, salt=TICKET_SALT, max_age=ttl)
    except signing.BadSignature:  # includes SignatureExpired
        return None
    session_key = await redis_async().getdel(_ticket_key(payload["n"]))
    if session_key is None:
        return None
    session_key = session_key.decode()
    user = await database_sync_to_async(_ticket_user)(payload.get("u"))
    if user is None:
        return None
    if session_key != NO_SESSION:
        session = _session_store(session_key)
        if not await database_sync_to_async(_session_belongs_to)(session, user):
            return None
    return Redeemed(
        user=user,
        session_key=None if session_key == NO_SESSION else session_key,
        auth_hash=user.get_session_auth_hash(),
    )


def _session_store(session_key: str | None) -> SessionBase:
    engine = import_string(settings.SESSION_ENGINE + ".SessionStore")
    return engine(session_key)


def _session_belongs_to(session: SessionBase, user: AbstractBaseUser) -> bool:
    from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY

    if not session.session_key or not session.exists(session.session_key):
        return False
    return str(session.get(SESSION_KEY)) == str(user.pk) and constant_time_compare(
        session.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash()
    )


def socket_session_check(*, user_id: int, session_key: str | None, auth_hash: str) -> int | None:
    """Whether an open socket may stay open: None if so, else the close code to use.

    Called from the consumer's periodic re-check and whenever the user's account
    changes (realtime.signals): deactivation closes with FORBIDDEN; a log-out, a
    password change or an expired session closes with SESSION_ENDED.
    """
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is None or not user.is_active:
        return CloseCode.FORBIDDEN
    if not constant_time_compare(user.get_session_auth_hash(), auth_hash):
        return CloseCode.SESSION_ENDED
    if session_key is not None:
        session = _session_store(session_key)
        if not _session_belongs_to(session, user):
            return CloseCode.SESSION_ENDED
    return None


def session_key_digest(session_key: str | None) -> str:
    """A digest of a session key, safe to send over the channel layer."""
    return hashlib.sha256((session_key or "").encode()).hexdigest()
