"""The long-polling transport finds its consumer through the settings and the ASGI routes, not by import."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from realtime import longpoll
from tests.conftest import cookie_header
from tests.realtime.test_longpoll import ORIGIN, post

pytestmark = pytest.mark.django_db(transaction=True)


async def _open(user) -> tuple[int, dict]:
    cookie = await sync_to_async(cookie_header)(user)
    return await post("/rt/lp/open/", headers=[ORIGIN, (b"cookie", cookie.encode())])


async def _first_events(sid: str) -> list[dict]:
    status, data = await post("/rt/lp/poll/", {"sid": sid, "cursor": 0})
    assert status == 200
    return data["events"]


async def test_the_session_runs_the_websocket_route_the_setting_names(make_user, settings):
    """Default: a session is the chat socket (it greets with hello). Pointed at /ws/echo/: an echo socket."""
    alice = await sync_to_async(make_user)("alice")
    status, data = await _open(alice)
    assert status == 200
    assert [e["type"] for e in await _first_events(data["sid"])] == ["hello"]
    await post("/rt/lp/close/", {"sid": data["sid"]})

    settings.REALTIME_LONGPOLL_PATH = "/ws/echo/"
    status, data = await _open(alice)
    assert status == 200
    await post("/rt/lp/send/", {"sid": data["sid"], "frames": [{"type": "anything", "n": 1}]})
    assert await _first_events(data["sid"]) == [{"type": "anything", "n": 1}]  # echoed, not `unknown_type`
    await post("/rt/lp/close/", {"sid": data["sid"]})


async def test_a_setting_naming_no_route_is_refused_like_a_handshake(make_user, settings):
    """A path no WebSocket route serves is denied (403), exactly as a WebSocket to it would be."""
    alice = await sync_to_async(make_user)("alice")
    settings.REALTIME_LONGPOLL_PATH = "/ws/nowhere/"
    status, _ = await _open(alice)
    assert status == 403


def test_the_application_comes_from_asgi_application(settings):
    """`_app` is the project's ASGI_APPLICATION, looked up by its setting."""
    from realtime.asgi import application

    assert longpoll._app() is application
