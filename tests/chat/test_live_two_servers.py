"""Two real Daphne processes sharing one Redis and one database, over real sockets.

What one server does must hold across both: the same messages in the same seq order
for everyone, resume on the other server after a reconnect, tickets that work once and
only once whichever process redeems them, and session/account changes that close
sockets wherever they are. The live processes run with WS_SESSION_RECHECK_SECONDS=2.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from django.core import signing
from django.test import Client
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from chat import services as chat_services
from chat.models import Message
from realtime.auth import TICKET_SALT, ticket_issue
from realtime.protocol import CloseCode
from tests import services
from tests.conftest import cookie_header

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- helpers ---------------------------------------------------------------------


def origin_of(server: services.Service) -> str:
    return f"http://127.0.0.1:{server.port}"


async def open_socket(
    server: services.Service, *, cookie: str | None = None, ticket: str | None = None, origin: str | None = "own"
) -> tuple[ClientConnection, dict[str, Any]]:
    """A socket on ``server`` and its hello (Origin: the server's own unless None or given)."""
    url = f"{server.ws_url}/ws/chat/" + (f"?ticket={ticket}" if ticket is not None else "")
    ws = await ws_connect(
        url,
        origin=origin_of(server) if origin == "own" else origin,
        additional_headers={"Cookie": cookie} if cookie else None,
        open_timeout=10,
    )
    hello = await next_event(ws)
    assert hello["type"] == "hello"
    return ws, hello


async def user_socket(server: services.Service, user: Any) -> ClientConnection:
    cookie = await sync_to_async(cookie_header)(user)
    ws, hello = await open_socket(server, cookie=cookie)
    assert hello["user"] == user.username
    return ws


async def refused(server: services.Service, **kwargs: Any) -> int:
    """The HTTP status of a handshake that must be refused."""
    with pytest.raises(InvalidStatus) as info:
        ws, _ = await open_socket(server, **kwargs)
        await ws.close()
    return info.value.response.status_code


async def next_event(ws: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def next_of(ws: ClientConnection, kind: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        event = await next_event(ws, max(0.01, deadline - time.monotonic()))
        if event["type"] == kind:
            return event


async def messages(ws: ClientConnection, count: int, timeout: float = 15) -> list[dict[str, Any]]:
    """The next ``count`` message events, in arrival order (other events skipped)."""
    return [await next_of(ws, "message", timeout) for _ in range(count)]


async def quiet(ws: ClientConnection, within: float = 0.5) -> list[dict[str, Any]]:
    """Everything that arrives within ``within`` seconds."""
    found = []
    deadline = time.monotonic() + within
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            found.append(await next_event(ws, remaining))
        except TimeoutError:
            break
    return found


async def join(ws: ClientConnection, room: str = "lobby", **extra: Any) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "join", "room": room, **extra}))
    return await next_of(ws, "joined")


async def say(ws: ClientConnection, body: str, room: str = "lobby") -> None:
    await ws.send(json.dumps({"type": "message", "room": room, "body": body, "client_id": body}))


async def close_code(ws: ClientConnection, timeout: float = 6) -> int | None:
    """Wait for the server to close the socket; its close code."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd is not None else None


async def alive(ws: ClientConnection) -> bool:
    await ws.send(json.dumps({"type": "ping", "t": 1}))
    return (await next_of(ws, "pong", timeout=5))["t"] == 1


def key(event: dict[str, Any]) -> tuple:
    return (event["seq"], event["id"], event["author"], event["body"], event["client_id"], event["ts"])


# --- one room, two servers -----------------------------------------------------------


async def test_both_servers_deliver_the_same_messages_in_the_same_seq_order(alice, bob, lobby, daphne, daphne_b):
    """alice (server A) and bob (server B) post interleaved; both see all 20 messages, same seqs, none twice."""
    a = await user_socket(daphne, alice)
    b = await user_socket(daphne_b, bob)
    await join(a)
    await join(b)
    n = 10
    for i in range(n):  # sent without waiting: the two processes write concurrently
        await say(a, f"a{i}")
        await say(b, f"b{i}")
    seen_a = await messages(a, 2 * n)
    seen_b = await messages(b, 2 * n)
    for ws in (a, b):
        assert [e for e in await quiet(ws, 0.3) if e["type"] == "message"] == []  # nothing twice
    for seen in (seen_a, seen_b):
        assert sorted(e["seq"] for e in seen) == list(range(1, 2 * n + 1))  # every seq once, no gap
        # Each author's messages arrive in the order they were sent.
        assert [e["body"] for e in seen if e["author"] == "alice"] == [f"a{i}" for i in range(n)]
        assert [e["body"] for e in seen if e["author"] == "bob"] == [f"b{i}" for i in range(n)]
    # The full lists, placed by seq as clients do, are identical on both servers.
    assert sorted(map(key, seen_a)) == sorted(map(key, seen_b))
    stored = await sync_to_async(lambda: [(m.seq, m.body) for m in Message.objects.order_by("seq")])()
    assert stored == [(k[0], k[3]) for k in sorted(map(key, seen_a))]
    await a.close()
    await b.close()


async def test_reconnect_to_the_other_server_resumes_exactly_the_missed_messages(alice, bob, lobby, daphne, daphne_b):
    """alice leaves server A at seq 3, misses 4..7, rejoins on server B with last_seq=3: gets 4..7 once, then live."""
    a = await user_socket(daphne, alice)
    b = await user_socket(daphne_b, bob)
    await join(a)
    await join(b)
    for i in range(3):
        await say(b, f"before{i}")
    got = await messages(a, 3)
    last_seq = max(e["seq"] for e in got)
    assert last_seq == 3
    await a.close()
    for i in range(4):
        await say(b, f"missed{i}")
    await messages(b, 3 + 4)  # committed and broadcast
    a2 = await user_socket(daphne_b, alice)
    joined = await join(a2, last_seq=last_seq)
    assert joined["seq"] == 7 and joined["reset"] is False
    missed = await messages(a2, 4)
    assert [(e["seq"], e["body"]) for e in missed] == [(4, "missed0"), (5, "missed1"), (6, "missed2"), (7, "missed3")]
    await say(b, "live")
    live = await messages(a2, 1)
    assert (live[0]["seq"], live[0]["body"]) == (8, "live")
    assert [e for e in await quiet(a2, 0.5) if e["type"] == "message"] == []
    await a2.close()
    await b.close()


async def test_resume_while_the_room_is_busy_on_the_other_server_loses_and_repeats_nothing(
    alice, bob, lobby, daphne, daphne_b
):
    """Joining with last_seq while messages keep arriving: each seq exactly once (history and live overlap)."""
    b = await user_socket(daphne_b, bob)
    await join(b)
    for i in range(3):
        await say(b, f"old{i}")
    await messages(b, 3)
    a = await user_socket(daphne, alice)

    async def keep_posting() -> None:
        for i in range(12):
            await say(b, f"new{i}")
            await asyncio.sleep(0.01)

    poster = asyncio.create_task(keep_posting())
    await join(a, last_seq=1)
    await poster
    got = await messages(a, 2 + 12)
    assert sorted(e["seq"] for e in got) == list(range(2, 16))
    assert [e for e in await quiet(a, 0.5) if e["type"] == "message"] == []
    await a.close()
    await b.close()


# --- tickets -------------------------------------------------------------------------


def logged_in_client(user: Any, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


async def ticket_over_http(user: Any) -> tuple[Client, str]:
    client = await sync_to_async(logged_in_client)(user)
    response = await sync_to_async(client.post)("/api/ws-ticket/")
    assert response.status_code == 200
    body = response.json()
    assert body["expires_in"] == 60 and isinstance(body["ticket"], str)
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    return client, body["ticket"]


async def test_ticket_opens_one_socket_without_origin_once(alice, lobby, daphne, daphne_b):
    """A ticket from POST /api/ws-ticket/ opens a socket with no Origin, as its user;
    a second use is 403, on either server."""
    _, ticket = await ticket_over_http(alice)
    ws, hello = await open_socket(daphne, ticket=ticket, origin=None)
    assert hello["user"] == "alice"
    await join(ws)
    await say(ws, "via-ticket")
    assert (await next_of(ws, "message"))["author"] == "alice"
    assert await refused(daphne, ticket=ticket, origin=None) == 403
    assert await refused(daphne_b, ticket=ticket, origin=None) == 403
    assert await alive(ws)  # the first socket is unaffected
    await ws.close()


async def test_forged_tampered_and_expired_tickets_are_refused(alice, daphne):
    """Tampered, unsigned, wrongly salted, unknown-nonce and expired tickets: HTTP 403 before accept."""
    _, good = await ticket_over_http(alice)
    short = await sync_to_async(ticket_issue)(user=alice, ttl=1)
    other_payload = signing.b64_encode(json.dumps({"u": alice.pk + 1000, "n": "x"}).encode()).decode()
    forged = [
        good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"),  # signature changed
        other_payload + good[good.index(":"):],  # payload swapped under the good signature
        signing.dumps({"u": alice.pk, "n": "never-issued"}, salt=TICKET_SALT),  # validly signed, no Redis entry
        signing.dumps({"u": alice.pk, "n": "x"}, salt="another.salt"),
        "not-a-ticket",
        "",
        "x" * 600,
    ]
    for ticket in forged:
        assert await refused(daphne, ticket=ticket, origin=None) == 403, ticket
    await asyncio.sleep(1.5)
    assert await refused(daphne, ticket=short, origin=None) == 403
    # None of the refusals consumed the good ticket.
    ws, hello = await open_socket(daphne, ticket=good, origin=None)
    assert hello["user"] == "alice"
    await ws.close()


async def test_ticket_lives_its_own_ttl_not_the_default(alice, daphne):
    """A ticket issued for 600 s (manage.py ws_ticket --ttl 600) still works after the default 60 s;
    one issued for 60 s is refused after 60 s by its signed age alone, even if Redis still held it."""

    def issue_two_minutes_ago(ttl: int) -> str:
        with mock.patch("django.core.signing.time.time", return_value=time.time() - 120):
            return ticket_issue(user=alice, ttl=ttl)

    long_lived = await sync_to_async(issue_two_minutes_ago)(600)
    default = await sync_to_async(issue_two_minutes_ago)(60)  # its Redis entry was set just now
    ws, hello = await open_socket(daphne, ticket=long_lived, origin=None)
    assert hello["user"] == "alice"
    await ws.close()
    assert await refused(daphne, ticket=default, origin=None) == 403


async def test_ticket_with_a_foreign_origin_is_refused(alice, daphne):
    """A ticket does not make a foreign page's handshake acceptable: Origin is still checked when sent."""
    _, ticket = await ticket_over_http(alice)
    assert await refused(daphne, ticket=ticket, origin="https://evil.example") == 403
    assert await refused(daphne, ticket=ticket, origin="null") == 403
    ws, hello = await open_socket(daphne, ticket=ticket, origin="own")
    assert hello["user"] == "alice"
    await ws.close()


async def test_ticket_endpoint_needs_login_post_and_csrf(alice):
    """Anonymous: redirect to login; GET: 405; POST without a CSRF token from a CSRF-enforcing client: 403."""
    anonymous = await sync_to_async(Client().post)("/api/ws-ticket/")
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")
    client = await sync_to_async(logged_in_client)(alice, enforce_csrf_checks=True)
    assert (await sync_to_async(client.get)("/api/ws-ticket/")).status_code == 405
    assert (await sync_to_async(client.post)("/api/ws-ticket/")).status_code == 403
    # With the token (as the page sends it), the same client gets a ticket.
    await sync_to_async(client.get)("/accounts/login/")
    token = client.cookies["csrftoken"].value
    response = await sync_to_async(client.post)("/api/ws-ticket/", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200 and response.json()["ticket"]


async def test_ticket_from_a_session_that_logged_out_is_refused(alice, daphne):
    """A ticket carries its session: once that session logs out, the unused ticket is worthless."""
    client, ticket = await ticket_over_http(alice)
    await sync_to_async(client.post)("/accounts/logout/")
    assert await refused(daphne, ticket=ticket, origin=None) == 403


async def test_manage_py_ws_ticket_prints_a_working_ticket(alice, daphne_b, app_env):
    """`manage.py ws_ticket alice` (same Redis and database) prints a ticket as its last line;
    it opens a socket, once."""
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "manage.py", "ws_ticket", "alice"], cwd=services.ROOT, env=app_env,
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    ticket = result.stdout.strip().splitlines()[-1]
    assert ticket not in result.stderr  # never logged
    ws, hello = await open_socket(daphne_b, ticket=ticket, origin=None)
    assert hello["user"] == "alice"
    await ws.close()
    assert await refused(daphne_b, ticket=ticket, origin=None) == 403
    unknown = await asyncio.to_thread(
        subprocess.run, [sys.executable, "manage.py", "ws_ticket", "nobody"], cwd=services.ROOT, env=app_env,
        capture_output=True, text=True, timeout=60,
    )
    assert unknown.returncode != 0 and unknown.stdout.strip() == ""


# --- session end ---------------------------------------------------------------------


async def test_logout_closes_that_sessions_sockets_with_4001(alice, daphne, daphne_b):
    """POST /accounts/logout/ closes the sockets opened with that session (on every server) with 4001;
    a socket of the same user from another session stays open."""
    client = await sync_to_async(logged_in_client)(alice)
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    on_a, _ = await open_socket(daphne, cookie=cookie)
    on_b, _ = await open_socket(daphne_b, cookie=cookie)
    other = await user_socket(daphne, alice)  # a second browser: its own session
    started = time.monotonic()
    response = await sync_to_async(client.post)("/accounts/logout/")
    assert response.status_code == 302
    assert await close_code(on_a) == CloseCode.SESSION_ENDED
    assert await close_code(on_b) == CloseCode.SESSION_ENDED
    assert time.monotonic() - started < 5
    await asyncio.sleep(2.5)  # past a periodic re-check
    assert await alive(other)
    await other.close()


async def test_ticket_socket_ends_with_its_session(alice, daphne_b):
    """A socket opened with a ticket from POST /api/ws-ticket/ closes (4001) when that session logs out."""
    client, ticket = await ticket_over_http(alice)
    ws, _ = await open_socket(daphne_b, ticket=ticket, origin=None)
    await sync_to_async(client.post)("/accounts/logout/")
    assert await close_code(ws) == CloseCode.SESSION_ENDED


async def test_deactivation_closes_every_socket_of_the_user_with_4003(alice, bob, daphne, daphne_b):
    """is_active=False + save(): every socket of the user, on both servers, closes with 4003; others stay."""
    cookie = await sync_to_async(cookie_header)(alice)
    on_a, _ = await open_socket(daphne, cookie=cookie)
    on_b, _ = await open_socket(daphne_b, cookie=cookie)
    bobs = await user_socket(daphne, bob)

    def deactivate() -> None:
        alice.is_active = False
        alice.save()

    await sync_to_async(deactivate)()
    assert await close_code(on_a) == CloseCode.FORBIDDEN
    assert await close_code(on_b) == CloseCode.FORBIDDEN
    assert await alive(bobs)
    # The session still exists, but it no longer opens sockets; nor does a ticket.
    assert await refused(daphne_b, cookie=cookie) == 403
    ticket = await sync_to_async(ticket_issue)(user=alice)
    assert await refused(daphne, ticket=ticket, origin=None) == 403
    await bobs.close()


async def test_password_change_closes_sockets_with_4001(alice, daphne_b):
    """Changing the password ends the sessions it invalidates: their sockets close with 4001."""
    ws = await user_socket(daphne_b, alice)

    def change_password() -> None:
        alice.set_password("a-new-password-456")
        alice.save()

    await sync_to_async(change_password)()
    assert await close_code(ws) == CloseCode.SESSION_ENDED


async def test_ban_from_another_process_removes_the_member_on_a_live_server(bob, lobby, daphne_b):
    """A ban made in another process (here the test's, as the admin would) reaches the live server's socket."""
    b = await user_socket(daphne_b, bob)
    await join(b)
    membership = await sync_to_async(lambda: bob.memberships.get(room=lobby))()
    await sync_to_async(chat_services.member_ban)(membership=membership)
    removed = await next_of(b, "removed")
    assert removed == {"type": "removed", "room": "lobby", "reason": "banned"}
    await b.send(json.dumps({"type": "join", "room": "lobby"}))
    assert (await next_of(b, "error"))["code"] == "banned"
    await b.close()


async def test_periodic_recheck_closes_sockets_whose_session_or_user_vanished(alice, bob, daphne, daphne_b):
    """Changes that send no signal are caught by the periodic re-check (every 2 s here):
    a session row deleted behind the app's back closes with 4001, a deleted user with 4003."""
    from django.contrib.sessions.models import Session

    client = await sync_to_async(logged_in_client)(alice)
    session_key = client.cookies["sessionid"].value
    ws_alice, _ = await open_socket(daphne, cookie=f"sessionid={session_key}")
    ws_bob = await user_socket(daphne_b, bob)
    await sync_to_async(Session.objects.filter(session_key=session_key).delete)()
    await sync_to_async(type(bob).objects.filter(pk=bob.pk).delete)()  # a queryset delete: no post_save
    started = time.monotonic()
    assert await close_code(ws_alice, timeout=8) == CloseCode.SESSION_ENDED
    assert await close_code(ws_bob, timeout=8) == CloseCode.FORBIDDEN
    assert time.monotonic() - started < 6


# --- hostile frames over a real socket ---------------------------------------------------


async def test_hostile_frames_on_the_wire_get_errors_and_the_socket_survives(alice, lobby, daphne):
    """Through Daphne's own UTF-8 encoding: lone surrogates echoed back, 1e999 and deep nesting get
    error frames that are valid JSON, and the socket keeps working."""
    ws = await user_socket(daphne, alice)
    await join(ws)
    hostile = [
        ('{"type":"\\ud800"}', "unknown_type"),
        ('{"type":"message","room":"lobby","body":"x","client_id":"\\udfff"}', "invalid_field"),
        ('{"type":"message","room":"lobby","body":"\\ud800"}', "invalid_field"),
        ('{"type":"ping","t":1e999}', "invalid_json"),
        ("[" * 10_000 + "]" * 10_000, "invalid_json"),
        ('{"type":"websocket.disconnect"}', "unknown_type"),
    ]
    for text, code in hostile:
        await ws.send(text)
        raw = await asyncio.wait_for(ws.recv(), 5)
        while json.loads(raw)["type"] != "error":  # skip join-time extras
            raw = await asyncio.wait_for(ws.recv(), 5)
        assert "Infinity" not in raw and "NaN" not in raw
        assert json.loads(raw)["code"] == code, raw
        assert await alive(ws)
    assert await sync_to_async(Message.objects.count)() == 0
    await ws.close()


async def test_oversized_frame_ends_the_connection_and_stores_nothing(alice, daphne):
    """A frame over WS_MAX_FRAME_BYTES (64 KiB) is refused by Daphne itself and ends the connection.

    docs/protocol.md says 1009; Daphne's autobahn fails such connections by dropping TCP
    (failByDrop), so clients see an abnormal closure (1006, no close frame). Either way
    the frame never reaches the consumer.
    """
    ws = await user_socket(daphne, alice)
    await ws.send(json.dumps({"type": "message", "room": "lobby", "body": "x" * 70_000}))
    assert await close_code(ws) in (CloseCode.MESSAGE_TOO_BIG, None)
    assert await sync_to_async(Message.objects.count)() == 0
