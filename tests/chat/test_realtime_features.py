"""chat/realtime_features.py: the chat's protocol on the core's surface, and its domain errors on the wire."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from chat import errors, services
from realtime import features
from realtime.protocol import ErrorCode, ProtocolError, registry
from tests.chat.test_consumers import connect, join, recv

WIRE_CODES = {v for k, v in vars(ErrorCode).items() if k.isupper()}


def test_the_chat_declares_its_types_and_events_as_a_feature():
    """join, message, ... and joined, mention, ... are the chat's (owner "chat"); ping, hello, error are the core's."""
    for kind in ("join", "leave", "message", "edit", "delete", "typing"):
        assert registry.client[kind].owner == "chat"
    for kind in ("joined", "left", "removed", "message", "message.updated", "message.deleted", "typing",
                 "announcement", "mention"):
        assert registry.server[kind].owner == "chat"
    assert registry.client["ping"].owner == "core"
    for kind in ("hello", "pong", "error", "presence"):
        assert registry.server[kind].owner == "core"


@pytest.mark.parametrize("error", errors.ALL, ids=lambda e: e.__name__)
def test_every_domain_error_becomes_the_error_frame_of_its_code(error):
    """A chat refusal maps to a protocol error with the same wire code and what it was about."""
    exc = error("refused", room="lobby", id=7)
    frame = features.protocol_error(exc)
    assert isinstance(frame, ProtocolError)
    assert frame.code == error.code and frame.code in WIRE_CODES
    assert frame.as_event() == {"type": "error", "code": error.code, "detail": "refused", "room": "lobby", "id": 7}


def test_an_error_that_is_no_domain_error_is_not_mapped():
    """Anything else stays unmapped: the consumer reports it as internal_error (and to Sentry)."""
    assert features.protocol_error(ValueError("bug")) is None
    assert features.protocol_error(KeyError("room")) is None


def test_services_raise_domain_errors_never_protocol_errors():
    """The services' refusals are chat.errors (the consumer alone turns them into frames)."""
    assert not issubclass(errors.ChatError, ProtocolError)
    assert services.ServiceError is errors.ChatError


@pytest.mark.django_db(transaction=True)
async def test_a_refused_join_and_an_allowed_one_side_by_side(alice, bob, lobby):
    """Joining a private room as an outsider gives the `forbidden` frame; the public room is joined."""
    await sync_to_async(services.room_create)(slug="secret", title="Secret", is_public=False, created_by=bob)
    a = await connect(alice)
    await a.send_json_to({"type": "join", "room": "secret"})
    err = await recv(a, type_="error")
    assert err == {"type": "error", "code": "forbidden", "detail": "this room is private", "room": "secret",
                   "request_type": "join"}
    assert (await join(a))["room"] == "lobby"
    await a.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_features_domain_error_reaches_the_socket_as_its_code(alice, lobby):
    """reactions raise chat's MessageNotFound; the socket gets `message_not_found`, not internal_error."""
    a = await connect(alice)
    await join(a)
    await a.send_json_to({"type": "react", "room": "lobby", "id": 999, "emoji": "👍"})
    err = await recv(a, type_="error")
    assert err["code"] == "message_not_found" and err["id"] == 999 and err["request_type"] == "react"
    await a.disconnect()
