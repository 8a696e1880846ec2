"""Sentry: an unexpected error in a consumer is reported, and nothing secret goes with it.

The SDK is initialised the way production does it (``realtime.sentry.sentry_init``,
with our integrations and ``before_send`` scrubber) but with a real
``sentry_sdk.transport.Transport`` subclass that keeps envelopes in memory instead of
posting them: the SDK's own extension point, so everything up to the network is the
real SDK. Nothing of ours is mocked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from chat.consumers import ChatConsumer
from realtime.auth import ticket_issue
from realtime.handshake import HandshakeAuth
from realtime.sentry import _scrub, sentry_init
from tests.conftest import cookie_header

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://127.0.0.1:8000")
BOOM = "boom from a handler: sentry must see this"


class CapturingTransport(Transport):
    """Keeps every envelope the SDK would send to Sentry."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    def events(self) -> list[dict[str, Any]]:
        return [item.get_event() for env in self.envelopes for item in env.items if item.get_event() is not None]

    def raw(self) -> bytes:
        return b"".join(env.serialize() for env in self.envelopes)


class ExplodingChatConsumer(ChatConsumer):
    """The real ChatConsumer whose ``typing`` and ``message`` handlers hit a bug (ping still works)."""

    async def handle_typing(self, p: dict[str, Any]) -> None:
        raise RuntimeError(BOOM)

    async def handle_message(self, p: dict[str, Any]) -> None:
        body = p["body"]  # a local holding the body, as the real handler has  # noqa: F841
        raise RuntimeError(BOOM)


exploding_app = HandshakeAuth(ExplodingChatConsumer.as_asgi())


@pytest.fixture
def sentry_events() -> Iterator[CapturingTransport]:
    """Sentry initialised through ``sentry_init`` with a capturing transport; the previous client restored after.

    Initialised from a sync fixture (no running loop), as in production where settings
    import before the server's loop starts.
    """
    transport = CapturingTransport()
    previous = sentry_sdk.get_global_scope().client
    assert sentry_init(dsn="https://key@o0.ingest.sentry.io/1", environment="test", release="t", transport=transport)
    try:
        yield transport
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(previous)


async def _open(path: str, headers: list[tuple[bytes, bytes]]) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(exploding_app, path, headers=headers)
    connected, _ = await comm.connect(timeout=5)
    assert connected
    assert (await comm.receive_json_from(timeout=5))["type"] == "hello"
    # Joined, so the frames below pass the chat's permission check and reach the handlers.
    await comm.send_json_to({"type": "join", "room": "lobby"})
    while (await comm.receive_json_from(timeout=5))["type"] != "joined":
        pass
    while not await comm.receive_nothing(timeout=0.3):  # the join's trailing events (features' snapshots)
        await comm.receive_json_from()
    return comm


async def test_handler_exception_is_reported_to_sentry_and_the_socket_survives(alice, lobby, sentry_events) -> None:
    """A bug in a handler: the client gets internal_error, the socket stays usable, Sentry gets the exception."""
    cookie = await sync_to_async(cookie_header)(alice)
    comm = await _open("/ws/chat/", [ORIGIN, (b"cookie", cookie.encode())])

    await comm.send_json_to({"type": "typing", "room": "lobby"})
    err = await comm.receive_json_from(timeout=5)
    assert err["type"] == "error" and err["code"] == "internal_error"
    assert err["request_type"] == "typing"
    assert BOOM not in json.dumps(err)  # the client learns nothing of the internals

    # The socket is still open and still served: a bad frame and a ping are both answered.
    await comm.send_to(text_data="{not json")
    assert (await comm.receive_json_from(timeout=5))["code"] == "invalid_json"
    await comm.send_json_to({"type": "ping", "t": 1})
    assert await comm.receive_json_from(timeout=5) == {"type": "pong", "t": 1}
    await comm.disconnect()

    sentry_sdk.flush(timeout=5)
    events = sentry_events.events()
    assert len(events) == 1
    event = events[0]
    (exc,) = event["exception"]["values"]
    assert exc["type"] == "RuntimeError" and exc["value"] == BOOM
    assert event["level"] == "error"
    assert event["environment"] == "test" and event["release"] == "t"
    frames = exc["stacktrace"]["frames"]
    assert any(f.get("function") == "handle_typing" for f in frames)


async def test_ticket_in_the_query_string_never_reaches_sentry(alice, lobby, sentry_events) -> None:
    """A socket opened with ?ticket=...: the report of its handler's crash carries no trace of the ticket."""
    ticket = await sync_to_async(ticket_issue)(user=alice)
    comm = await _open(f"/ws/chat/?ticket={ticket}", [ORIGIN])
    await comm.send_json_to({"type": "typing", "room": "lobby"})
    assert (await comm.receive_json_from(timeout=5))["code"] == "internal_error"
    await comm.disconnect()

    sentry_sdk.flush(timeout=5)
    assert len(sentry_events.events()) == 1
    raw = sentry_events.raw()
    assert BOOM.encode() in raw
    assert ticket.encode() not in raw
    assert ticket.split(":")[0].encode() not in raw  # not even the signed payload part


async def test_message_body_of_a_crashed_frame_never_reaches_sentry(alice, lobby, sentry_events) -> None:
    """A handler crash while posting a message: the report has the error but not the message body.

    The body sits in the frame's local variables (``text_data``, ``frame``, ``payload``,
    ``p``, ``body``); Sentry must not collect locals.
    """
    secret = "top secret body 4242 ✓"
    cookie = await sync_to_async(cookie_header)(alice)
    comm = await _open("/ws/chat/", [ORIGIN, (b"cookie", cookie.encode())])
    await comm.send_json_to({"type": "message", "room": "lobby", "body": secret, "client_id": "c-1"})
    err = await comm.receive_json_from(timeout=5)
    assert err["code"] == "internal_error" and err["request_type"] == "message"
    await comm.disconnect()

    sentry_sdk.flush(timeout=5)
    assert len(sentry_events.events()) == 1
    raw = sentry_events.raw()
    assert BOOM.encode() in raw
    assert secret.encode() not in raw
    assert json.dumps(secret).encode() not in raw  # nor its JSON-escaped form
    assert b"top secret body" not in raw


def test_scrub_drops_query_string_ticket_url_query_and_body() -> None:
    """before_send removes the body, the query string and the URL's query: where tickets and messages travel."""
    event = {
        "request": {
            "url": "https://chat.example/ws/chat/?ticket=SECRET-TICKET",
            "query_string": "ticket=SECRET-TICKET",
            "data": {"body": "a private message"},
            "method": "GET",
        },
        "message": "kept",
    }
    out = _scrub(event, {})
    assert "SECRET-TICKET" not in json.dumps(out)
    assert "private message" not in json.dumps(out)
    assert out["request"] == {"url": "https://chat.example/ws/chat/", "query_string": "[scrubbed]", "method": "GET"}
    assert out["message"] == "kept"


def test_scrub_leaves_events_without_request_data_alone() -> None:
    """Events with no request, or a request with nothing secret, pass through unchanged."""
    assert _scrub({"message": "x"}, {}) == {"message": "x"}
    request = {"url": "https://chat.example/healthz", "method": "GET"}
    assert _scrub({"request": dict(request)}, {}) == {"request": request}
