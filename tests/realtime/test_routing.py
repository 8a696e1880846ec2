"""realtime.routing: channels' routing, without router frames kept alive per socket.

The routers must route exactly as channels' do (same route, same ``url_route``, same
errors), and an open socket's task must run the consumer with nothing of the routers,
or of ``as_asgi``'s wrapper, left suspended above it.
"""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter as ChannelsURLRouter
from channels.testing import WebsocketCommunicator
from django.urls import path, re_path

from realtime import routing
from realtime.asgi import application
from tests.conftest import cookie_header

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = b"http://127.0.0.1:8000"


def _recorder(name: str) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> tuple[str, Any, str]:
        return name, scope["url_route"], scope["path_remaining"]

    return app


def _routes() -> list[Any]:
    return [
        path("ws/echo/", _recorder("echo")),
        path("rt/lp/<str:action>/", _recorder("longpoll")),
        re_path(r"^room/(?P<slug>[a-z-]+)/$", _recorder("room")),
    ]


@pytest.mark.parametrize(
    "scope",
    [
        {"type": "websocket", "path": "/ws/echo/"},
        {"type": "http", "path": "/rt/lp/poll/"},
        {"type": "websocket", "path": "/room/general-chat/"},
        {"type": "websocket", "path": "/prefix/ws/echo/", "root_path": "/prefix"},
    ],
)
async def test_routes_like_channels_url_router(scope: dict[str, Any]) -> None:
    """Same application, url_route and path_remaining as channels' URLRouter gives."""
    ours = await routing.URLRouter(_routes())(dict(scope), None, None)
    theirs = await ChannelsURLRouter(_routes())(dict(scope), None, None)
    assert ours == theirs


async def test_unrouted_paths_and_types_fail_like_channels() -> None:
    """No route: ValueError at the top, Resolver404 when nested; unknown scope type: ValueError."""
    from django.urls.exceptions import Resolver404

    with pytest.raises(ValueError):
        routing.URLRouter(_routes())({"type": "websocket", "path": "/nowhere/"}, None, None)
    with pytest.raises(Resolver404):
        routing.URLRouter(_routes())({"type": "websocket", "path": "/x/", "path_remaining": "x/"}, None, None)
    with pytest.raises(ValueError):
        routing.ProtocolTypeRouter({})({"type": "lifespan"}, None, None)


def _await_chain(task: Any) -> list[str]:
    """The qualified names of the coroutines a task is suspended in, outermost first."""
    names, coro = [], task.get_coro()
    while coro is not None and hasattr(coro, "cr_code"):
        names.append(coro.cr_code.co_qualname)
        coro = coro.cr_await
    return names


async def test_an_open_chat_socket_runs_the_consumer_with_no_router_frame_above_it(alice: Any) -> None:
    """Handshake authentication, then the consumer's receive loop: no router or as_asgi frame."""
    cookie = await sync_to_async(cookie_header)(alice)
    comm = WebsocketCommunicator(application, "/ws/chat/", headers=[(b"origin", ORIGIN), (b"cookie", cookie.encode())])
    connected, _ = await comm.connect(timeout=5)
    assert connected
    await comm.receive_json_from(timeout=5)  # hello
    # (AdmissionGuard stays above while its handshake slot is held, to free it if the
    # handshake never completes: realtime/handshake.py.)
    chain = [name for name in _await_chain(comm.future) if name != "AdmissionGuard._admitted"]
    assert chain[:2] == ["HandshakeAuth.__call__", "LayerlessConsumer.__call__"], chain
    assert not [name for name in chain if "Router" in name or name.endswith("as_asgi.<locals>.app")], chain
    await comm.disconnect()


async def test_an_open_chat_socket_keeps_one_scope_the_consumer_s(alice: Any) -> None:
    """Memory per socket: the frames an open socket stays suspended in (the admission guard
    with its slot, the authentication) hold the consumer's scope only, not the copies they
    were handed, nor what the handshake read on the way (cookie, session row)."""
    cookie = await sync_to_async(cookie_header)(alice)
    comm = WebsocketCommunicator(application, "/ws/chat/", headers=[(b"origin", ORIGIN), (b"cookie", cookie.encode())])
    connected, _ = await comm.connect(timeout=5)
    assert connected
    await comm.receive_json_from(timeout=5)  # hello
    frames, coro = [], comm.future.get_coro()
    while coro is not None and hasattr(coro, "cr_code"):
        frames.append((coro.cr_code.co_qualname, coro.cr_frame.f_locals))
        coro = coro.cr_await
    names = [name for name, _ in frames]
    assert "AdmissionGuard._admitted" in names and "HandshakeAuth.__call__" in names, names  # both on the chain
    consumer_scope = dict(frames)["LayerlessConsumer.__call__"]["self"].scope
    for name, local in frames:
        scopes = [value for value in local.values() if isinstance(value, dict) and value.get("type") == "websocket"]
        assert all(scope is consumer_scope for scope in scopes), name
        if name.startswith(("AdmissionGuard.", "HandshakeAuth.")):
            assert set(local) <= {"self", "scope", "receive", "send", "slot", "inner", "refused"}, (name, local)
    await comm.disconnect()


async def test_an_open_echo_socket_runs_the_consumer_directly() -> None:
    """OriginGuard hands over too: the echo socket's task is the consumer itself."""
    comm = WebsocketCommunicator(application, "/ws/echo/", headers=[(b"origin", ORIGIN)])
    connected, _ = await comm.connect(timeout=5)
    assert connected
    assert _await_chain(comm.future)[0] == "LayerlessConsumer.__call__"
    await comm.disconnect()
