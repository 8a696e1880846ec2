"""The admin's change and add forms, served by one live Daphne, take effect on sockets of another.

The admin pages are fetched and posted over real HTTP (session cookie, CSRF token) to
``daphne_b``; the sockets are on ``daphne``. What crosses between them is only what
production has: the database and Redis. The live processes run with
MODERATION_CACHE_SECONDS=0, so they compare the banned-word list's version on every message.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from chat.models import Membership
from tests import services
from tests.conftest import cookie_header, session_cookie

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def moderator(make_user):
    return make_user("mod", is_staff=True, is_superuser=True)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def admin_submit(server: services.Service, user: Any, path: str, data: dict[str, Any]) -> tuple[int, str]:
    """GET an admin form from ``server`` as ``user``, then POST ``data`` with its CSRF token: (status, Location)."""
    opener = urllib.request.build_opener(_NoRedirect)
    cookie = f"sessionid={session_cookie(user)}"
    with opener.open(urllib.request.Request(server.url + path, headers={"Cookie": cookie}), timeout=15) as page:
        html = page.read().decode()
        csrf_cookie = next(
            v.split(";", 1)[0] for k, v in page.headers.items() if k.lower() == "set-cookie" and "csrftoken=" in v
        )
    token = CSRF_INPUT.search(html)
    assert token, html[:2000]
    body = urllib.parse.urlencode({**data, "csrfmiddlewaretoken": token.group(1)}, doseq=True).encode()
    request = urllib.request.Request(server.url + path, data=body, headers={"Cookie": f"{cookie}; {csrf_cookie}"})
    try:
        with opener.open(request, timeout=15) as response:
            return response.status, response.headers.get("Location", "")
    except urllib.error.HTTPError as redirect:  # the 302 after a save, not followed
        return redirect.code, redirect.headers.get("Location", "")


async def submit(server: services.Service, user: Any, path: str, data: dict[str, Any]) -> tuple[int, str]:
    return await sync_to_async(admin_submit)(server, user, path, data)


async def open_socket(server: services.Service, user: Any) -> ClientConnection:
    cookie = await sync_to_async(cookie_header)(user)
    ws = await ws_connect(f"{server.ws_url}/ws/chat/", origin=f"http://127.0.0.1:{server.port}",
                          additional_headers={"Cookie": cookie}, open_timeout=10)
    assert json.loads(await ws.recv())["type"] == "hello"
    return ws


async def next_of(ws: ClientConnection, kind: str, timeout: float = 10) -> dict[str, Any]:
    """The next event of type ``kind``; other events are skipped."""
    deadline = time.monotonic() + timeout
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic())))
        if event["type"] == kind:
            return event


async def arriving(ws: ClientConnection, within: float) -> list[dict[str, Any]]:
    """Every event that arrives within ``within`` seconds."""
    found = []
    deadline = time.monotonic() + within
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            found.append(json.loads(await asyncio.wait_for(ws.recv(), remaining)))
        except TimeoutError:
            break
    return found


async def join(ws: ClientConnection, room: str = "lobby") -> None:
    await ws.send(json.dumps({"type": "join", "room": room}))
    await next_of(ws, "joined")


async def test_ban_ticked_on_the_change_form_removes_the_socket_on_another_process(
    alice, bob, lobby, moderator, daphne, daphne_b
):
    """Banned ticked on a change form served by one process: bob's socket on another gets removed, then no messages."""
    a, b = await open_socket(daphne, alice), await open_socket(daphne, bob)
    await join(a)
    await join(b)
    membership = await sync_to_async(Membership.objects.get)(room=lobby, user=bob)
    path = f"/admin/chat/membership/{membership.pk}/change/"
    status, location = await submit(daphne_b, moderator, path, {"role": "member", "muted_until_0": "",
                                                                "muted_until_1": "", "banned": "on"})
    assert (status, location) == (302, "/admin/chat/membership/")
    assert await next_of(b, "removed") == {"type": "removed", "room": "lobby", "reason": "banned"}
    await a.send(json.dumps({"type": "message", "room": "lobby", "body": "not for bob", "client_id": "n1"}))
    assert (await next_of(a, "message"))["body"] == "not for bob"
    assert [e for e in await arriving(b, 1.0) if e["type"] == "message"] == []
    await a.close()
    await b.close()


async def test_staff_body_edit_on_the_change_form_reaches_a_socket_on_another_process(
    alice, lobby, moderator, daphne, daphne_b
):
    """A body edited on the message's change form (one process) reaches a joined socket (another) as message.updated."""
    a = await open_socket(daphne, alice)
    await join(a)
    await a.send(json.dumps({"type": "message", "room": "lobby", "body": "call me at 555-0100", "client_id": "p1"}))
    posted = await next_of(a, "message")
    status, _ = await submit(daphne_b, moderator, f"/admin/chat/message/{posted['id']}/change/",
                             {"body": "call me [removed by staff]"})
    assert status == 302
    updated = await next_of(a, "message.updated")
    assert (updated["id"], updated["body"]) == (posted["id"], "call me [removed by staff]")
    await a.close()


async def test_banned_word_added_in_the_admin_masks_the_next_message_on_another_process(
    alice, lobby, moderator, daphne, daphne_b
):
    """A word added on the admin's add form (one process) masks the next message on another: in the message itself."""
    a = await open_socket(daphne, alice)
    await join(a)
    await a.send(json.dumps({"type": "message", "room": "lobby", "body": "well darn", "client_id": "w1"}))
    assert (await next_of(a, "message"))["body"] == "well darn"
    status, _ = await submit(daphne_b, moderator, "/admin/chat/bannedword/add/", {"word": "darn", "action": "mask"})
    assert status == 302
    await a.send(json.dumps({"type": "message", "room": "lobby", "body": "well DARN", "client_id": "w2"}))
    assert (await next_of(a, "message"))["body"] == "well ****"  # masked before it was sent, no worker involved
    await a.close()
