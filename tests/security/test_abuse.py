"""Abuse that is not a malformed frame: a reader that never reads, hostile names in the page."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time

import pytest
from asgiref.sync import sync_to_async
from websockets.asyncio.client import connect

from tests import services
from tests.browser.login import submit_login
from tests.conftest import cookie_header

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def _rss_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _raw_socket_that_never_reads(port: int, cookie: str) -> socket.socket:
    """A WebSocket handshake by hand, a join, then nothing: the reply bytes pile up unread."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        f"GET /ws/chat/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\n"
        f"Cookie: {cookie}\r\n\r\n".encode()
    )
    assert s.recv(12) == b"HTTP/1.1 101"
    payload = json.dumps({"type": "join", "room": "lobby"}).encode()
    mask = os.urandom(4)
    s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    return s


async def test_a_reader_that_never_reads_is_dropped_and_others_are_unaffected(app_env, make_user, lobby):
    """A member that stops reading does not slow the others, is closed by the keepalive, and memory stays bounded."""
    env = {**app_env, "CHAT_RATE_BURST": "1000", "CHAT_RATE_PER_SECOND": "1000"}  # the flood is the point here
    server = services.daphne_service(env, extra_args=("--ping-interval", "1", "--ping-timeout", "3")).start()
    stuck = None
    try:
        alice = await sync_to_async(make_user)("alice")
        mallory = await sync_to_async(make_user)("mallory")
        mallory_cookie = await sync_to_async(cookie_header)(mallory)
        stuck = await asyncio.to_thread(_raw_socket_that_never_reads, server.port, mallory_cookie)
        cookie = await sync_to_async(cookie_header)(alice)
        async with connect(f"{server.ws_url}/ws/chat/", origin=server.url, additional_headers={"Cookie": cookie},
                           max_size=2**20) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "join", "room": "lobby"}))
            while json.loads(await ws.recv())["type"] != "joined":
                pass
            before = _rss_mib(server.proc.pid)
            body = "x" * 3900
            started = time.monotonic()
            received = 0
            for i in range(150):
                await ws.send(json.dumps({"type": "message", "room": "lobby", "body": body, "client_id": f"f{i}"}))
            while received < 150:
                event = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if event["type"] == "message":
                    received += 1
            assert time.monotonic() - started < 20  # the reader kept up although one member never reads
            # The keepalive gets no pong from the stuck reader: Daphne closes it.
            from realtime import presence

            stuck_user = f"user.{mallory.pk}"
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and await presence.sockets_in(stuck_user) > 0:
                await asyncio.sleep(0.5)
            assert await presence.sockets_in(stuck_user) == 0
            assert _rss_mib(server.proc.pid) - before < 64  # 150 x 4 KB frames for one reader, not unbounded
    finally:
        if stuck is not None:
            stuck.close()
        server.stop()


@pytest.mark.browser
def test_hostile_room_titles_and_usernames_are_inert_in_the_page(browser, daphne, make_user):
    """Room titles and usernames carrying HTML are stored verbatim and shown as text; no script runs."""
    from chat.models import Room
    from tests.browser.test_chat_page import log_in

    payload = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
    Room.objects.create(slug="lobby", title="Lobby " + payload)
    make_user("alice")
    # Usernames from sign-up are validated; one created directly (an import, an SSO bridge) is not.
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user(username="<b>evil</b>", password="pw-evil-123")
    page = log_in(browser, daphne, "alice")
    evil = browser.new_context().new_page()
    try:
        submit_login(evil, daphne.url, "<b>evil</b>", "pw-evil-123")
        evil.fill("#body", "hello")
        evil.press("#body", "Enter")
        page.wait_for_function("() => [...document.querySelectorAll('#messages .author')]"
                               ".some(a => a.textContent === '<b>evil</b>')")
        page.wait_for_function("() => [...document.querySelectorAll('#presence li')]"
                               ".some(li => li.textContent === '<b>evil</b>')")
        assert payload in page.inner_text("#room-title")
        assert payload in page.inner_text("#room-list")
        for p in (page, evil):
            assert p.evaluate("() => window.__xss") is None
            assert p.locator("#chat img, #chat script, #chat b").count() == 0
    finally:
        evil.context.close()
        page.context.close()
