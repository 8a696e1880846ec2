"""The log-in throttle: lockouts per account and per address, their doors, their admin; the sign-up limit."""

from __future__ import annotations

import http.cookiejar
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import Permission
from django.db.models import F
from django.test import Client
from django.utils import timezone

from tests import services
from tests.conftest import cookie_header

pytestmark = pytest.mark.django_db(transaction=True)

ATTACKER = "203.0.113.9"
ELSEWHERE = "198.51.100.7"
ORIGIN = (b"origin", b"http://127.0.0.1:8000")


def log_in(username: str, password: str, *, address: str = ATTACKER, client: Client | None = None) -> Any:
    """One POST of the log-in form from ``address``."""
    client = client or Client(REMOTE_ADDR=address)
    return client.post("/accounts/login/", {"username": username, "password": password})


def lock_out(username: str, *, address: str = ATTACKER) -> None:
    """Fail the log-in of ``username`` from ``address`` as often as the limit allows."""
    client = Client(REMOTE_ADDR=address)
    for i in range(settings.AXES_FAILURE_LIMIT):
        log_in(username, f"wrong-{i}", client=client)


def age_failures(by: timedelta) -> None:
    """Move every recorded failure ``by`` into the past, as if that much time had gone by."""
    from axes.models import AccessAttempt

    AccessAttempt.objects.update(attempt_time=F("attempt_time") - by)


def test_thirty_wrong_passwords_are_locked_out_after_the_limit_with_429_and_a_retry_time(make_user):
    """Of 30 wrong passwords for one account, those before the limit get the form back (200);
    from the limit on every answer is 429, the log-in page saying when to retry, with Retry-After;
    tries while locked out do not push that time back."""
    make_user("alice")
    limit, cooloff = settings.AXES_FAILURE_LIMIT, settings.AXES_COOLOFF_TIME.total_seconds()
    client = Client(REMOTE_ADDR=ATTACKER)
    answers = [log_in("alice", f"guess-{i}-x9", client=client) for i in range(30)]
    assert [r.status_code for r in answers] == [200] * (limit - 1) + [429] * (30 - limit + 1)
    assert b"didn't match" in answers[0].content
    last = answers[-1]
    page = last.content.decode()
    assert 'id="locked-out"' in page and "Try again after" in page
    assert cooloff - 60 <= int(last["Retry-After"]) <= cooloff
    retry_at = re.search(r'<time datetime="([^"]+)"', page).group(1)
    assert abs((datetime.fromisoformat(retry_at) - timezone.now()).total_seconds() - cooloff) < 60
    first_refusal = answers[limit - 1].content.decode()
    assert f'<time datetime="{retry_at}">' in first_refusal  # the 25 tries while locked out did not move it
    assert "guess-29-x9" not in page  # the password is not shown back
    assert '<form method="post" action="/accounts/login/">' in page  # still the log-in page, in its style


def test_a_locked_account_refuses_even_the_right_password_until_the_cool_off_ends(make_user):
    """After the lockout, the right password from another address is refused (429, no session);
    once the cool-off has passed, the same log-in works."""
    make_user("alice")
    lock_out("alice")
    client = Client(REMOTE_ADDR=ELSEWHERE)
    refused = log_in("alice", "pw-alice-123", client=client)
    assert refused.status_code == 429
    assert "_auth_user_id" not in client.session
    age_failures(settings.AXES_COOLOFF_TIME - timedelta(seconds=30))
    assert log_in("alice", "pw-alice-123", client=client).status_code == 429  # not yet
    age_failures(timedelta(seconds=31))
    allowed = log_in("alice", "pw-alice-123", client=client)
    assert allowed.status_code == 302
    assert client.session["_auth_user_id"] == str(allowed.wsgi_request.user.pk)


def test_failures_from_one_address_across_accounts_lock_that_address_only(make_user):
    """Wrong passwords for different accounts from one address lock the address: a third account's
    right password is refused from it and accepted from elsewhere."""
    for name in ("alice", "bob", "carol"):
        make_user(name)
    names = ["alice", "bob", "nobody"]
    for i in range(settings.AXES_FAILURE_LIMIT):
        log_in(names[i % len(names)], f"wrong-{i}")
    assert log_in("carol", "pw-carol-123").status_code == 429
    assert log_in("carol", "pw-carol-123", address=ELSEWHERE).status_code == 302
    assert log_in("alice", "pw-alice-123", address=ELSEWHERE).status_code == 302  # no account reached the limit


def test_the_throttle_switched_off_counts_and_refuses_nothing(make_user, settings):
    """With LOGIN_THROTTLE=0 (AXES_ENABLED off) the failures past the limit get the form back and
    the right password then logs in; the ticket endpoint does not refuse either."""
    make_user("alice")
    settings.AXES_ENABLED = False
    client = Client(REMOTE_ADDR=ATTACKER)
    tries = settings.AXES_FAILURE_LIMIT + 1
    assert [log_in("alice", f"wrong-{i}", client=client).status_code for i in range(tries)] == [200] * tries
    assert log_in("alice", "pw-alice-123", client=client).status_code == 302
    assert client.post("/api/ws-ticket/").status_code == 200


def test_staff_see_and_lift_a_lockout_in_the_admin_and_non_staff_cannot(make_user):
    """A staff member with the access-attempt permissions sees until when the account is locked out
    and unlocks it, from any one of its rows, after which it logs in; a non-staff user gets the
    admin's log-in page instead and the lockout stays."""
    from axes.models import AccessAttempt

    make_user("alice")
    moderator = make_user("moderator", is_staff=True)
    moderator.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="axes", codename__in=["view_accessattempt", "delete_accessattempt"]))
    mallory = make_user("mallory")
    limit = settings.AXES_FAILURE_LIMIT
    for i in range(limit):  # from two addresses, neither of which reaches the limit itself
        log_in("alice", f"wrong-{i}", address=ATTACKER if i < limit // 2 + 1 else ELSEWHERE)
    assert log_in("alice", "pw-alice-123", address="192.0.2.1").status_code == 429
    one_row = AccessAttempt.objects.get(username="alice", ip_address=ATTACKER).pk
    unlock = {"action": "unlock_accounts", "_selected_action": [str(one_row)]}

    outsider = Client()
    outsider.force_login(mallory)
    listing = outsider.get("/admin/axes/accessattempt/")
    assert listing.status_code == 302 and listing["Location"].startswith("/admin/login/")
    assert outsider.post("/admin/axes/accessattempt/", unlock).status_code == 302
    assert AccessAttempt.objects.filter(username="alice").count() == 2

    staff = Client()
    staff.force_login(moderator)
    listing = staff.get("/admin/axes/accessattempt/")
    assert listing.status_code == 200
    page = listing.content.decode()
    assert "alice" in page and ATTACKER in page and "Locked out until" in page
    # Both rows show the lockout's end, although neither row alone reached the limit.
    assert page.count('class="field-locked_out_until nowrap">') == 2 and "not locked out" not in page
    assert staff.post("/admin/axes/accessattempt/", unlock).status_code == 302
    assert not AccessAttempt.objects.filter(username="alice").exists()
    assert log_in("alice", "pw-alice-123", address="192.0.2.1").status_code == 302


def test_the_ticket_endpoint_refuses_a_locked_account_with_the_retry_time(make_user):
    """A logged-in account that gets locked out is refused a ticket (429 JSON, retry_at and
    Retry-After); an account that is not locked out still gets one from the same address."""
    alice, bob = make_user("alice"), make_user("bob")
    clients = {}
    for user in (alice, bob):
        clients[user.username] = Client(REMOTE_ADDR=ELSEWHERE)
        clients[user.username].force_login(user)
    assert "ticket" in clients["alice"].post("/api/ws-ticket/").json()
    lock_out("alice")
    refused = clients["alice"].post("/api/ws-ticket/")
    assert refused.status_code == 429
    body = refused.json()
    assert body["error"] == "locked_out" and "ticket" not in body
    cooloff = settings.AXES_COOLOFF_TIME.total_seconds()
    assert cooloff - 60 <= body["retry_after"] <= cooloff and int(refused["Retry-After"]) == body["retry_after"]
    assert datetime.fromisoformat(body["retry_at"]) > timezone.now()
    allowed = clients["bob"].post("/api/ws-ticket/")
    assert allowed.status_code == 200 and allowed.json()["ticket"]


async def _lp_open(headers: list, query: str = "") -> tuple[int, Any]:
    from realtime.asgi import application

    comm = HttpCommunicator(application, "POST", "/rt/lp/open/" + query, body=b"", headers=headers)
    response = await comm.get_response(timeout=30)
    return response["status"], json.loads(response["body"]) if response["body"] else None


async def test_the_long_poll_open_refuses_a_locked_account_by_cookie_and_by_ticket(make_user):
    """A locked-out account's long-poll open, with its session cookie or with a ticket issued before
    the lockout, is answered 429 with the retry time and opens no session; another account opens one."""
    from realtime.auth import ticket_issue
    from realtime.longpoll import registry

    alice, bob = await sync_to_async(make_user)("alice"), await sync_to_async(make_user)("bob")
    alice_cookie = (b"cookie", (await sync_to_async(cookie_header)(alice)).encode())
    ticket = await sync_to_async(ticket_issue)(user=alice)
    await sync_to_async(lock_out)("alice")
    before = set(registry.sockets)
    for headers, query in (([ORIGIN, alice_cookie], ""), ([ORIGIN], "?" + urllib.parse.urlencode({"ticket": ticket}))):
        status, body = await _lp_open(headers, query)
        assert status == 429, body
        assert body["error"] == "locked_out" and body["retry_after"] > 0 and "sid" not in body
    assert set(registry.sockets) == before
    bob_cookie = (b"cookie", (await sync_to_async(cookie_header)(bob)).encode())
    status, body = await _lp_open([ORIGIN, bob_cookie])
    assert status == 200 and body["sid"]
    await registry.sockets.pop(body["sid"]).end()


async def test_the_websocket_handshake_refuses_a_locked_account_before_accept(make_user):
    """A locked-out account's handshake, by cookie or by a ticket issued before the lockout, is
    refused before accept; the same handshake of an account that is not locked out is accepted."""
    from realtime.asgi import application
    from realtime.auth import ticket_issue

    alice, bob = await sync_to_async(make_user)("alice"), await sync_to_async(make_user)("bob")
    alice_cookie = (b"cookie", (await sync_to_async(cookie_header)(alice)).encode())
    ticket = await sync_to_async(ticket_issue)(user=alice)
    await sync_to_async(lock_out)("alice")
    for path, headers in (("/ws/chat/", [ORIGIN, alice_cookie]), (f"/ws/chat/?ticket={ticket}", [ORIGIN])):
        ws = WebsocketCommunicator(application, path, headers=headers)
        connected, _ = await ws.connect(timeout=5)
        assert not connected, path
    bob_cookie = (b"cookie", (await sync_to_async(cookie_header)(bob)).encode())
    ws = WebsocketCommunicator(application, "/ws/chat/", headers=[ORIGIN, bob_cookie])
    assert (await ws.connect(timeout=5))[0]
    assert (await ws.receive_json_from(timeout=5))["type"] == "hello"
    await ws.disconnect()


def test_sign_ups_are_limited_per_address(settings):
    """Past SIGNUP_LIMIT accounts from one address the sign-up page answers 429 with when to retry
    and creates no account; another address still signs up."""
    from django.contrib.auth import get_user_model

    settings.SIGNUP_LIMIT = 2

    def sign_up(name: str, address: str) -> Any:
        form = {"username": name, "password1": "x-Strong-pass-91", "password2": "x-Strong-pass-91"}
        return Client(REMOTE_ADDR=address).post("/accounts/signup/", form)

    assert [sign_up(f"new{i}", ATTACKER).status_code for i in range(2)] == [302, 302]
    refused = sign_up("new2", ATTACKER)
    assert refused.status_code == 429
    page = refused.content.decode()
    assert 'id="signup-limited"' in page and "Try again after" in page
    window = settings.SIGNUP_WINDOW_SECONDS
    assert 0 < int(refused["Retry-After"]) <= window / 2 + 1  # one of two sign-ups comes back after half the window
    assert not get_user_model().objects.filter(username="new2").exists()
    # From another address: forms with errors take nothing from its bucket, so two accounts still
    # follow three mistyped forms, and only the third account is refused.
    for _ in range(3):
        mistyped = Client(REMOTE_ADDR=ELSEWHERE).post(
            "/accounts/signup/", {"username": "typo", "password1": "x-Strong-pass-91", "password2": "x-Strong-pass-19"})
        assert mistyped.status_code == 200
    assert [sign_up(f"other{i}", ELSEWHERE).status_code for i in range(3)] == [302, 302, 429]


@pytest.fixture
def logged_daphne(app_env):
    """A Daphne with DEBUG logging and its access log on, to read what it writes."""
    server = services.daphne_service({**app_env, "LOG_LEVEL": "DEBUG"}, access_log=True).start()
    yield server
    server.stop()


class _Browser:
    """Enough of a browser for Django's forms: cookies and the CSRF token."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar),
                                                  _NoRedirect())

    def csrf(self) -> str:
        return next(c.value for c in self.jar if c.name == "csrftoken")

    def request(self, path: str, data: dict | None = None) -> tuple[int, dict, str]:
        body = None
        headers = {"Referer": self.base_url + path}
        if data is not None:
            body = urllib.parse.urlencode({**data, "csrfmiddlewaretoken": self.csrf()}).encode()
            headers["X-CSRFToken"] = self.csrf()
        req = urllib.request.Request(self.base_url + path, data=body, headers=headers)
        try:
            with self.opener.open(req, timeout=30) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@pytest.mark.live
def test_live_lockout_page_and_logs_keep_no_password_or_ticket(logged_daphne, make_user):
    """Through Daphne (the async middleware path): the limit-th wrong password gets the 429 page with
    the retry time; neither a password tried nor a ticket issued appears in the server's log."""
    make_user("alice")
    browser = _Browser(logged_daphne.url)
    browser.request("/accounts/login/")
    statuses = []
    for i in range(settings.AXES_FAILURE_LIMIT):
        status, headers, page = browser.request("/accounts/login/", {"username": "alice", "password": f"pw-7c1d-{i}"})
        statuses.append(status)
    assert statuses == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]
    assert 'id="locked-out"' in page and int(headers["Retry-After"]) > 0
    status, _, _ = browser.request("/accounts/login/", {"username": "alice", "password": "pw-alice-123"})
    assert status == 429

    # A ticket for another account, over a session the test client made (the address is locked out).
    session = Client()
    session.force_login(make_user("bob"))
    browser.jar.set_cookie(http.cookiejar.Cookie(
        0, "sessionid", session.cookies["sessionid"].value, None, False, "127.0.0.1", False, False, "/", True,
        False, None, True, None, None, {}))
    status, _, body = browser.request("/api/ws-ticket/", {})
    assert status == 200, body
    ticket = json.loads(body)["ticket"]
    log = logged_daphne.log()
    assert "AXES" in log or "POST /accounts/login/" in log  # the log is on and saw the log-ins
    assert "pw-7c1d" not in log and "pw-alice-123" not in log
    assert ticket not in log and ticket.split(":")[0] not in log
