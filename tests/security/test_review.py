"""The security review, each item checked: logs, compression, CSRF, cookies and HSTS, hostile handshakes."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests import services
from tests.conftest import cookie_header
from tests.services import ROOT

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def logged_daphne(app_env):
    """A Daphne with its access log on and DEBUG logging, to read what it writes."""
    server = services.daphne_service({**app_env, "LOG_LEVEL": "DEBUG"}, access_log=True).start()
    yield server
    server.stop()


async def test_tickets_and_message_bodies_never_reach_the_logs(logged_daphne, make_user, lobby):
    """A ticketed socket posting a distinctive body leaves neither the ticket nor the body in the log."""
    from realtime.auth import ticket_issue

    alice = await sync_to_async(make_user)("alice")
    ticket = await sync_to_async(ticket_issue)(user=alice)
    body = "secret-body-7f3a9c"
    async with connect(f"{logged_daphne.ws_url}/ws/chat/?ticket={ticket}") as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "join", "room": "lobby"}))
        await ws.send(json.dumps({"type": "message", "room": "lobby", "body": body}))
        await ws.send(json.dumps({"type": "message", "room": "lobby", "body": body + "\x00"}))  # refused
        while True:
            event = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if event["type"] == "error":
                break
    refused = f"{logged_daphne.ws_url}/ws/chat/?ticket={ticket}"  # used: refused, and logged as such
    with pytest.raises(InvalidStatus):
        async with connect(refused):
            pass
    await asyncio.sleep(0.5)
    log = logged_daphne.log()
    assert "WSCONNECT /ws/chat/" in log  # the access log is on
    assert ticket not in log and ticket.split(":")[0] not in log
    assert body not in log


async def test_permessage_deflate_is_never_negotiated(daphne, make_user):
    """A client offering permessage-deflate gets no extension back (compression side channels, CPU)."""
    alice = await sync_to_async(make_user)("alice")
    cookie = await sync_to_async(cookie_header)(alice)
    async with connect(f"{daphne.ws_url}/ws/chat/", origin=daphne.url, additional_headers={"Cookie": cookie},
                       compression="deflate") as ws:
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        await ws.recv()


@pytest.mark.parametrize(
    "path, data",
    [
        ("/accounts/login/", {"username": "alice", "password": "pw-alice-123"}),
        ("/accounts/signup/",
         {"username": "mallory", "password1": "x-Strong-pass-91", "password2": "x-Strong-pass-91"}),
        ("/accounts/logout/", {}),
        ("/rooms/new/", {"slug": "evil", "title": "Evil", "is_public": "on"}),
        ("/api/ws-ticket/", {}),
    ],
)
def test_every_form_and_post_endpoint_requires_a_csrf_token(make_user, path, data):
    """A cross-site POST without the CSRF token is refused with 403 on every form and POST API."""
    alice = make_user("alice")
    client = Client(enforce_csrf_checks=True)
    if path not in ("/accounts/login/", "/accounts/signup/"):
        client.force_login(alice)
    response = client.post(path, data)
    assert response.status_code == 403


def test_production_settings_set_secure_cookies_and_hsts():
    """With DJANGO_DEBUG=0: Secure and HttpOnly session cookie, Secure CSRF cookie, HSTS a year with subdomains."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(DJANGO_DEBUG="0", DJANGO_SECRET_KEY="s" * 60, DJANGO_ALLOWED_HOSTS="chat.example.com")
    code = (
        "from django.conf import settings as s; import json; print(json.dumps([s.SESSION_COOKIE_SECURE, "
        "s.SESSION_COOKIE_HTTPONLY, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, "
        "s.SECURE_SSL_REDIRECT, s.DEBUG]))"
    )
    result = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [True, True, True, 31536000, True, True, False]


def _raw_handshake(port: int, extra: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(
            b"GET /ws/echo/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + extra + b"\r\n"
        )
        try:
            return s.recv(4096)
        except (TimeoutError, ConnectionResetError):
            return b""


async def test_header_injection_and_half_open_handshakes_leave_the_server_healthy(daphne):
    """Header-injection bytes are refused; handshakes that never complete do not stop others connecting."""
    for extra in (b"Origin: http://127.0.0.1\r\nX-Evil: a\rInjected: b\r\n", b"Origin: http://127.0.0.1\x00evil\r\n",
                  b"Origin: http://evil.example\r\n\r\nGET / HTTP/1.1\r\n"):
        reply = await asyncio.to_thread(_raw_handshake, daphne.port, extra)
        assert not reply.startswith(b"HTTP/1.1 101"), reply[:200]
    # Ten sockets that send half a handshake and then nothing.
    stuck = []
    for _ in range(10):
        s = socket.create_connection(("127.0.0.1", daphne.port), timeout=5)
        s.sendall(b"GET /ws/echo/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        stuck.append(s)
    try:
        started = time.monotonic()
        async with connect(f"{daphne.ws_url}/ws/echo/", origin=daphne.url) as ws:
            await ws.send("still here")
            assert await ws.recv() == "still here"
        assert time.monotonic() - started < 5
    finally:
        for s in stuck:
            s.close()
