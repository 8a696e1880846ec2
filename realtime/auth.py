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
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.sessions.backends.base import SessionBase
from django.contrib.sessions.backends.db import SessionStore as DbSessionStore
from django.core import signing
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.module_loading import import_string

from realtime import rows
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


def session_user(session_key: str) -> tuple[AbstractBaseUser, str] | None:
    """The user a session cookie stands for, and the session's auth hash; None if none.

    What ``django.contrib.auth.get_user`` decides for a request, read in one go and
    without writing to the session: an unknown or expired session, an unknown backend,
    an inactive user (the backend refuses it) or an auth hash that no longer matches
    (password changed) opens no socket. Django's own HTTP path ends such a session on the
    browser's next request; a handshake only refuses.
    """
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, load_backend
    from django.core.exceptions import ValidationError

    data = _session_data(session_key)
    try:
        user_id = get_user_model()._meta.pk.to_python(data[SESSION_KEY])
        backend_path = data[BACKEND_SESSION_KEY]
    except (KeyError, ValidationError):
        return None
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    backend = load_backend(backend_path)
    if type(backend).get_user is ModelBackend.get_user:
        # ModelBackend.get_user's answer, without building its query (realtime.rows).
        model = get_user_model()
        user = rows.one(model, (model._meta.pk.name,), [user_id])
        if user is not None and not backend.user_can_authenticate(user):
            user = None
    else:
        user = backend.get_user(user_id)
    if user is None:
        return None
    session_hash = data.get(HASH_SESSION_KEY) or ""
    if not (session_hash and constant_time_compare(session_hash, user.get_session_auth_hash())):
        return None
    return user, session_hash


def _session_data(session_key: str) -> dict:
    """What ``SessionStore(session_key).load()`` returns ({} for none), read with one
    prebuilt query when sessions are in the database (Django's default engine)."""
    engine = import_string(settings.SESSION_ENGINE + ".SessionStore")
    if engine is not DbSessionStore:
        return engine(session_key).load()
    store = engine()
    if not store._validate_session_key(session_key):
        return {}
    row = rows.one(engine.get_model_class(), ("session_key",), [session_key], only=("session_data", "expire_date"))
    return store.decode(row.session_data) if row is not None and row.expire_date > timezone.now() else {}


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


#: One open socket's credentials as its handshake established them.
SocketAuth = tuple[int, "str | None", str]  # (user id, session key or None, session auth hash)


def socket_session_check(*, user_id: int, session_key: str | None, auth_hash: str) -> int | None:
    """Whether an open socket may stay open: None if so, else the close code to use.

    Called when the user's account changes (realtime.signals) and on a ``recheck``
    control; the periodic re-check of every socket uses :func:`socket_sessions_check`.
    Deactivation closes with FORBIDDEN; a log-out, a password change or an expired
    session closes with SESSION_ENDED.
    """
    entry = (user_id, session_key, auth_hash)
    return socket_sessions_check([entry])[entry]


def socket_sessions_check(entries: Iterable[SocketAuth]) -> dict[SocketAuth, int | None]:
    """:func:`socket_session_check` for many sockets at once, in two queries for the lot.

    Sockets of one tab reload or of one user share entries; each distinct entry is
    checked once. Sessions are read in one query when the engine keeps them in the
    database (Django's default ``db``; ``cached_db`` too), else one by one.
    """
    from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY

    entries = set(entries)
    users = {u.pk: u for u in get_user_model().objects.filter(pk__in={e[0] for e in entries})}
    sessions = _sessions_load({e[1] for e in entries if e[1] is not None})
    verdicts: dict[SocketAuth, int | None] = {}
    for entry in entries:
        user_id, session_key, auth_hash = entry
        user = users.get(user_id)
        if user is None or not user.is_active:
            verdicts[entry] = CloseCode.FORBIDDEN
            continue
        user_hash = user.get_session_auth_hash()
        if not constant_time_compare(user_hash, auth_hash):
            verdicts[entry] = CloseCode.SESSION_ENDED
            continue
        if session_key is not None:
            data = sessions.get(session_key) or {}
            if str(data.get(SESSION_KEY)) != str(user.pk) or not constant_time_compare(
                data.get(HASH_SESSION_KEY, ""), user_hash
            ):
                verdicts[entry] = CloseCode.SESSION_ENDED
                continue
        verdicts[entry] = None
    return verdicts


def _sessions_load(keys: set[str]) -> dict[str, dict]:
    """Session key -> its data, for the sessions that exist and have not expired."""
    if not keys:
        return {}
    engine = import_string(settings.SESSION_ENGINE + ".SessionStore")
    if issubclass(engine, DbSessionStore):
        store = engine()
        model = engine.get_model_class()
        now = timezone.now()
        found: dict[str, dict] = {}
        ordered = sorted(keys)
        for i in range(0, len(ordered), 500):  # well under SQLite's bound-parameter limit
            for row in model.objects.filter(session_key__in=ordered[i : i + 500], expire_date__gt=now):
                found[row.session_key] = store.decode(row.session_data)
        return found
    loaded = {}
    for key in keys:
        session = engine(key)
        if session.exists(key):
            loaded[key] = session.load()
    return loaded


def session_key_digest(session_key: str | None) -> str:
    """A digest of a session key, safe to send over the channel layer."""
    return hashlib.sha256((session_key or "").encode()).hexdigest()
