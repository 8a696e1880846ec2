"""The long-polling fallback: the same protocol and authentication as the WebSocket."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import HttpCommunicator, WebsocketCommunicator

from realtime.asgi import application
from tests.conftest import cookie_header

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://127.0.0.1:8000")


async def post(path: str, payload: Any = None, headers: list | None = None) -> tuple[int, Any]:
    body = b"" if payload is None else json.dumps(payload).encode()
    comm = HttpCommunicator(application, "POST", path, body=body, headers=headers or [ORIGIN])
    response = await comm.get_response(timeout=30)
    content = json.loads(response["body"]) if response["body"] else None
    return response["status"], content


async def open_session(user: Any) -> str:
    cookie = await sync_to_async(cookie_header)(user)
    status, data = await post("/rt/lp/open/", headers=[ORIGIN, (b"cookie", cookie.encode())])
    assert status == 200, data
    return data["sid"]


async def poll_until(sid: str, kind: str, cursor: int) -> tuple[dict[str, Any], int]:
    for _ in range(20):
        status, data = await post("/rt/lp/poll/", {"sid": sid, "cursor": cursor})
        assert status == 200
        for event in data["events"]:
            if event["type"] == kind:
                return event, data["cursor"]
        cursor = data["cursor"]
    raise AssertionError(f"no {kind}")


async def test_long_poll_client_chats_with_a_websocket_client(make_user, lobby):
    """A long-polling user and a WebSocket user in one room see each other's messages."""
    alice = await sync_to_async(make_user)("alice")
    bob = await sync_to_async(make_user)("bob")
    sid = await open_session(alice)
    hello, cursor = await poll_until(sid, "hello", 0)
    assert hello["user"] == "alice"
    status, _ = await post("/rt/lp/send/", {"sid": sid, "frames": [{"type": "join", "room": "lobby"}]})
    assert status == 204
    _, cursor = await poll_until(sid, "joined", cursor)

    cookie = await sync_to_async(cookie_header)(bob)
    ws = WebsocketCommunicator(application, "/ws/chat/", headers=[ORIGIN, (b"cookie", cookie.encode())])
    assert (await ws.connect(timeout=5))[0]
    await ws.receive_json_from()
    await ws.send_json_to({"type": "join", "room": "lobby"})
    while (await ws.receive_json_from(timeout=5))["type"] != "joined":
        pass
    await ws.send_json_to({"type": "message", "room": "lobby", "body": "hi from ws"})
    got, cursor = await poll_until(sid, "message", cursor)
    assert got["body"] == "hi from ws" and got["author"] == "bob"

    await post("/rt/lp/send/", {"sid": sid, "frames": [{"type": "message", "room": "lobby", "body": "hi from lp"}]})
    while True:
        event = await ws.receive_json_from(timeout=5)
        if event["type"] == "message" and event["author"] == "alice":
            break
    assert event["body"] == "hi from lp"
    status, _ = await post("/rt/lp/close/", {"sid": sid})
    assert status == 204
    status, _ = await post("/rt/lp/poll/", {"sid": sid, "cursor": cursor})
    assert status == 404
    await ws.disconnect()


async def test_long_poll_refuses_what_the_websocket_refuses(make_user):
    """No credentials, or a foreign Origin with a valid cookie: 403, as at a WebSocket handshake."""
    alice = await sync_to_async(make_user)("alice")
    status, _ = await post("/rt/lp/open/")
    assert status == 403
    cookie = await sync_to_async(cookie_header)(alice)
    status, _ = await post("/rt/lp/open/", headers=[(b"origin", b"https://evil.example"), (b"cookie", cookie.encode())])
    assert status == 403


async def test_bad_frames_over_long_poll_get_error_events(make_user):
    """Invalid frames get the same error events over long-polling; unknown sessions get 404."""
    alice = await sync_to_async(make_user)("alice")
    sid = await open_session(alice)
    _, cursor = await poll_until(sid, "hello", 0)
    await post("/rt/lp/send/", {"sid": sid, "frames": [{"type": "websocket.disconnect"}, [1, 2]]})
    error, cursor = await poll_until(sid, "error", cursor)
    assert error["code"] == "unknown_type"
    status, _ = await post("/rt/lp/poll/", {"sid": "nope", "cursor": 0})
    assert status == 404
    status, _ = await post("/rt/lp/send/", {"sid": sid, "frames": "not a list"})
    assert status == 400
    await post("/rt/lp/close/", {"sid": sid})
