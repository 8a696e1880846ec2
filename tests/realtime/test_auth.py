"""realtime.auth's batched session re-check: the same verdicts as one by one, in two queries.

The periodic re-check (``realtime.runtime.Runtime.recheck``) asks about every open socket of
a process at once; a live test in tests/chat/test_live_two_servers.py shows it closing
real sockets. These prove each verdict and that the cost does not grow with sockets.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.utils import timezone

from realtime.auth import socket_session_check, socket_sessions_check
from realtime.protocol import CloseCode
from tests.conftest import session_cookie

pytestmark = pytest.mark.django_db


def _entry(user) -> tuple[int, str, str]:
    return (user.pk, session_cookie(user), user.get_session_auth_hash())


def test_every_verdict_in_one_batch_matches_the_single_check(make_user, django_assert_num_queries):
    """Valid, logged out, expired, password changed, deactivated, deleted, ticket without a
    session: one call answers each as socket_session_check does, with two queries in all."""
    ok, gone, expired, changed, inactive, deleted, ticket = (make_user(f"rc-{n}") for n in range(7))
    entries = {name: _entry(u) for name, u in
               [("ok", ok), ("gone", gone), ("expired", expired), ("changed", changed),
                ("inactive", inactive), ("deleted", deleted)]}
    entries["ticket"] = (ticket.pk, None, ticket.get_session_auth_hash())
    entries["ok_again"] = entries["ok"]  # a second socket of the same session
    Session.objects.filter(session_key=entries["gone"][1]).delete()
    Session.objects.filter(session_key=entries["expired"][1]).update(expire_date=timezone.now() - timedelta(1))
    changed.set_password("another-pass-789")
    changed.save()
    get_user_model().objects.filter(pk=inactive.pk).update(is_active=False)
    get_user_model().objects.filter(pk=deleted.pk).delete()
    expected = {
        "ok": None, "ok_again": None, "ticket": None,
        "gone": CloseCode.SESSION_ENDED, "expired": CloseCode.SESSION_ENDED, "changed": CloseCode.SESSION_ENDED,
        "inactive": CloseCode.FORBIDDEN, "deleted": CloseCode.FORBIDDEN,
    }
    with django_assert_num_queries(2):
        verdicts = socket_sessions_check(entries.values())
    assert {name: verdicts[entry] for name, entry in entries.items()} == expected
    for name, entry in entries.items():
        user_id, session_key, auth_hash = entry
        assert socket_session_check(user_id=user_id, session_key=session_key, auth_hash=auth_hash) == expected[name]


def test_a_session_of_another_user_does_not_pass(make_user):
    """A socket claiming user A with user B's session key is refused (keys are not interchangeable)."""
    a, b = make_user("rc-a"), make_user("rc-b")
    entry = (a.pk, session_cookie(b), a.get_session_auth_hash())
    assert socket_sessions_check([entry])[entry] == CloseCode.SESSION_ENDED


def test_sessions_in_a_cache_engine_are_checked_one_by_one(make_user, settings):
    """With a non-database session engine the verdicts are the same (read key by key)."""
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cache"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    user, other = make_user("rc-cache"), make_user("rc-cache-2")
    live = _entry(user)
    stale = _entry(other)
    other.set_password("changed-pass-321")
    other.save()
    verdicts = socket_sessions_check([live, stale, (user.pk, "no-such-session", live[2])])
    assert verdicts[live] is None
    assert verdicts[stale] == CloseCode.SESSION_ENDED
    assert verdicts[(user.pk, "no-such-session", live[2])] == CloseCode.SESSION_ENDED


def test_a_session_cookie_names_its_user_and_hash_and_nothing_else_passes(make_user):
    """session_user (the handshake's one database call): the live session gives its user and
    auth hash; unknown, expired, password-changed, inactive and foreign-backend sessions give
    None, and refusing writes nothing (the session row is still there)."""
    from django.contrib.auth import BACKEND_SESSION_KEY

    from realtime.auth import _session_store, session_user

    live, expired, changed, inactive, foreign = (make_user(f"su-{n}") for n in range(5))
    keys = {u: session_cookie(u) for u in (live, expired, changed, inactive, foreign)}
    Session.objects.filter(session_key=keys[expired]).update(expire_date=timezone.now() - timedelta(1))
    changed.set_password("new-pass-555")
    changed.save()
    get_user_model().objects.filter(pk=inactive.pk).update(is_active=False)
    store = _session_store(keys[foreign])
    store[BACKEND_SESSION_KEY] = "some.other.Backend"
    store.save()

    user, auth_hash = session_user(keys[live])
    assert user.pk == live.pk and auth_hash == live.get_session_auth_hash()
    for refused in (expired, changed, inactive, foreign):
        assert session_user(keys[refused]) is None, refused.username
    assert session_user("no-such-session-key") is None
    assert session_user("x") is None  # not even a valid key
    assert Session.objects.filter(session_key=keys[changed]).exists()
