"""The /ws/echo/ endpoint: frames come back unchanged, and only our own pages may connect.

Two layers: the consumer through the full ASGI stack (``realtime.asgi.application``:
router, ``OriginGuard``, ``EchoConsumer``) with Channels' ``WebsocketCommunicator``;
and the same endpoint over a real socket against a live Daphne process, where a refused
handshake must be an HTTP 403 (not a 500, not an accept-then-close).
"""

from __future__ import annotations

from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from realtime.asgi import application

# The echo needs no rows, but Channels closes stale DB connections around every consumer
# event (``aclose_old_connections``), which pytest-django only allows with DB access.
pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = b"http://127.0.0.1:8000"
EVIL = "https://evil.example"


def communicator(path: str = "/ws/echo/", *, origin: bytes | None = ORIGIN) -> WebsocketCommunicator:
    headers = [] if origin is None else [(b"origin", origin)]
    return WebsocketCommunicator(application, path, headers=headers)


# --- Consumer, through the ASGI stack ------------------------------------------------


async def test_text_frame_is_echoed_as_text() -> None:
    """A text frame comes back as the same text frame (unicode and empty text intact), not as bytes."""
    comm = communicator()
    connected, _ = await comm.connect(timeout=5)
    assert connected
    for text in ("Hello, world!", "héllo ✓ <b>x</b>", ""):
        # send_input, not send_to: the communicator's helper cannot send an empty frame.
        await comm.send_input({"type": "websocket.receive", "text": text})
        out = await comm.receive_output(timeout=5)
        assert out == {"type": "websocket.send", "text": text}
    await comm.disconnect()


async def test_binary_frame_is_echoed_as_binary() -> None:
    """A binary frame comes back byte for byte as a binary frame, even if it is not UTF-8."""
    comm = communicator()
    connected, _ = await comm.connect(timeout=5)
    assert connected
    payload = bytes(range(256)) + b"\xff\xfe\x00"
    await comm.send_to(bytes_data=payload)
    out = await comm.receive_output(timeout=5)
    assert out == {"type": "websocket.send", "bytes": payload}
    await comm.disconnect()


@pytest.mark.parametrize(
    "origin",
    [b"http://127.0.0.1:8000", b"https://localhost", b"http://localhost:5173", b"https://testserver:8443"],
)
async def test_our_own_origins_are_accepted_on_any_scheme_and_port(origin: bytes) -> None:
    """Every host in ALLOWED_HOSTS may connect, over http or https, on any port."""
    comm = communicator(origin=origin)
    connected, _ = await comm.connect(timeout=5)
    assert connected
    await comm.disconnect()


@pytest.mark.parametrize(
    "origin",
    [
        pytest.param(EVIL.encode(), id="forged"),
        pytest.param(None, id="missing"),
        pytest.param(b"null", id="null"),
        pytest.param(b"http://127.0.0.1.evil.example:8000", id="lookalike-host"),
        pytest.param(b"ftp://127.0.0.1", id="other-scheme"),
        pytest.param(b"http://127.0.0.1:8000/path", id="with-path"),
    ],
)
async def test_foreign_missing_and_null_origins_are_refused_before_accept(origin: bytes | None) -> None:
    """A handshake without one of our origins is closed before accept: no socket, no echo."""
    comm = communicator(origin=origin)
    connected, _ = await comm.connect(timeout=5)
    assert not connected


async def test_unknown_websocket_path_is_refused_not_crashed() -> None:
    """A WebSocket to a path with no route is refused at the handshake (no exception in the router)."""
    comm = communicator("/ws/nope/")
    connected, _ = await comm.connect(timeout=5)
    assert not connected


# --- Live Daphne, over a real socket -------------------------------------------------


def _origin(server: Any) -> str:
    return f"http://127.0.0.1:{server.port}"


async def test_live_text_and_binary_echo_over_a_real_socket(daphne: Any) -> None:
    """Through Daphne, text comes back as str and binary as bytes, unchanged."""
    async with connect(f"{daphne.ws_url}/ws/echo/", origin=_origin(daphne), open_timeout=10) as ws:
        await ws.send("Hello, world! ✓")
        assert await ws.recv(decode=None) == "Hello, world! ✓"
        payload = b"\x00\x01\xfe\xff" * 64
        await ws.send(payload)
        got = await ws.recv(decode=None)
        assert isinstance(got, bytes) and got == payload


async def test_live_forged_origin_is_refused_with_http_403(daphne: Any) -> None:
    """Cross-site WebSocket hijacking: a foreign Origin gets HTTP 403 from Daphne, never a socket."""
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"{daphne.ws_url}/ws/echo/", origin=EVIL, open_timeout=10):
            pytest.fail("a forged Origin opened a socket")
    assert info.value.response.status_code == 403


async def test_live_missing_origin_is_refused_with_http_403(daphne: Any) -> None:
    """A client that sends no Origin at all is refused with 403 (the echo takes no tickets)."""
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"{daphne.ws_url}/ws/echo/", open_timeout=10):
            pytest.fail("a handshake without Origin opened a socket")
    assert info.value.response.status_code == 403


async def test_live_unknown_path_is_refused_with_403_not_500(daphne: Any) -> None:
    """An unknown WebSocket path gets HTTP 403 from the live server, not a 500 from the router."""
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"{daphne.ws_url}/ws/nope/", origin=_origin(daphne), open_timeout=10):
            pytest.fail("an unknown path opened a socket")
    assert info.value.response.status_code == 403
