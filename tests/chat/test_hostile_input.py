"""Hostile and malformed client frames, through the full ASGI stack on the real Redis layer.

Every bad frame must be answered with the documented ``error`` event (docs/protocol.md,
"Errors never close the socket"), the socket must keep working afterwards (a ping still
gets its pong), and nothing may be stored or broadcast. The only bad input that closes
a socket here is repeated flooding after ``rate_limited`` errors (4008).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import timedelta
from typing import Any

import msgpack
import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from chat import services
from realtime.asgi import application
from realtime.protocol import CloseCode
from tests.chat.test_consumers import ORIGIN, connect, drain, join, recv
from tests.conftest import cookie_header

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    """Users are created per test; the production hasher would make that the slowest part."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- helpers ---------------------------------------------------------------------


async def send_raw(comm: WebsocketCommunicator, *, text: str | None = None, data: bytes | None = None) -> None:
    """Send one frame exactly as given (send_input: the helper cannot send an empty text frame)."""
    if data is not None:
        await comm.send_input({"type": "websocket.receive", "bytes": data})
    else:
        await comm.send_input({"type": "websocket.receive", "text": text})


async def next_frame(comm: WebsocketCommunicator, timeout: float = 5) -> dict[str, Any]:
    """The next frame the server sends, which must be valid UTF-8 JSON (Daphne encodes text as UTF-8)."""
    out = await comm.receive_output(timeout=timeout)
    assert out["type"] == "websocket.send", out
    raw = out["text"]
    raw.encode("utf-8")  # a lone surrogate here would make Daphne's send fail and drop the socket
    return json.loads(raw)


async def assert_alive(comm: WebsocketCommunicator) -> None:
    """The socket still serves frames: a ping is answered by its pong, and nothing came before it."""
    await comm.send_json_to({"type": "ping", "t": 7})
    assert await next_frame(comm) == {"type": "pong", "t": 7}


async def assert_nothing_stored() -> None:
    from chat.models import Message, Room

    assert await sync_to_async(Message.objects.count)() == 0
    assert await sync_to_async(lambda: list(Room.objects.values_list("last_seq", flat=True)))() in ([], [0])


async def expect_error(comm: WebsocketCommunicator, code: str, **fields: Any) -> dict[str, Any]:
    """The next frame is an error with ``code`` (and the given fields); return it."""
    event = await next_frame(comm)
    assert event["type"] == "error", event
    assert event["code"] == code, event
    assert isinstance(event.get("detail"), str) and event["detail"]
    for key, value in fields.items():
        assert event.get(key) == value, (key, event)
    return event


_barrier = itertools.count(1000)


async def settle(comm: WebsocketCommunicator) -> None:
    """Wait until the server has sent everything caused by earlier frames (a ping is a barrier:
    frames are served in order, so its pong comes after them)."""
    t = next(_barrier)
    await comm.send_json_to({"type": "ping", "t": t})
    while await next_frame(comm) != {"type": "pong", "t": t}:
        pass


async def join_settled(comm: WebsocketCommunicator, room: str = "lobby", **extra: Any) -> dict[str, Any]:
    """Join, then wait until everything the join sends (history, features' join events) has arrived."""
    joined = await join(comm, room, **extra)
    await settle(comm)
    return joined


ROOM_TRAFFIC = {"message", "message.updated", "message.deleted", "typing"}


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


# --- undecodable frames ----------------------------------------------------------

UNDECODABLE = [
    pytest.param({"text": "{not json"}, "invalid_json", id="not-json"),
    pytest.param({"text": ""}, "invalid_json", id="empty-text-frame"),
    pytest.param({"text": "   "}, "invalid_json", id="whitespace-frame"),
    pytest.param({"text": '{"type":"ping"} trailing'}, "invalid_json", id="trailing-garbage"),
    pytest.param({"text": "[1,2]"}, "not_an_object", id="array"),
    pytest.param({"text": '"str"'}, "not_an_object", id="string"),
    pytest.param({"text": "42"}, "not_an_object", id="number"),
    pytest.param({"text": "null"}, "not_an_object", id="null"),
    pytest.param({"text": "true"}, "not_an_object", id="bool"),
    pytest.param({"data": b'{"type":"ping"}'}, "binary_not_supported", id="binary-json"),
    pytest.param({"data": b"\x00\xff\xfe"}, "binary_not_supported", id="binary-garbage"),
    pytest.param({"data": b""}, "binary_not_supported", id="binary-empty"),
    # Nesting: refused before the decoder recurses, wherever it is in the frame.
    pytest.param({"text": deep(10_000)}, "invalid_json", id="nested-10000-array"),
    pytest.param({"text": "{" + '"a":{' * 10_000 + "}" * 10_001}, "invalid_json", id="nested-10000-object"),
    pytest.param(
        {"text": '{"type":"message","room":"lobby","body":"hi","x":' + deep(10_000) + "}"},
        "invalid_json",
        id="nested-inside-message",
    ),
    pytest.param({"text": '{"type":"ping","x":' + deep(40) + "}"}, "invalid_json", id="nested-40"),
    # The depth pre-check counts brackets inside strings too; closing brackets in a string
    # must not let real nesting past it (the decoder's own recursion limit still refuses it).
    pytest.param({"text": '{"type":"ping","s":"' + "]" * 10_000 + '","x":' + deep(10_000) + "}"}, "invalid_json",
                 id="nested-behind-string-brackets"),
    # Oversized and non-finite numbers.
    pytest.param({"text": '{"type":"join","room":"lobby","last_seq":' + "9" * 5000 + "}"}, "invalid_json",
                 id="int-5000-digits"),
    pytest.param({"text": '{"type":"join","room":"lobby","last_seq":-' + "9" * 5000 + "}"}, "invalid_json",
                 id="negative-int-5000-digits"),
    pytest.param({"text": '{"type":"ping","t":' + "1" * 100 + "}"}, "invalid_json", id="int-100-digits"),
    pytest.param({"text": '{"type":"ping","t":1e999}'}, "invalid_json", id="float-1e999"),
    pytest.param({"text": '{"type":"ping","t":-1e999}'}, "invalid_json", id="float-minus-1e999"),
    pytest.param({"text": '{"type":"join","room":"lobby","last_seq":1e999}'}, "invalid_json",
                 id="last-seq-1e999"),
    pytest.param({"text": '{"type":"ping","t":NaN}'}, "invalid_json", id="NaN"),
    pytest.param({"text": '{"type":"ping","t":Infinity}'}, "invalid_json", id="Infinity"),
    pytest.param({"text": '{"type":"ping","t":-Infinity}'}, "invalid_json", id="minus-Infinity"),
]


@pytest.mark.parametrize(("frame", "code"), UNDECODABLE)
async def test_undecodable_frame_gets_error_and_socket_survives(alice, lobby, frame, code):
    """A frame that does not decode to an object gets its documented error; the socket stays usable."""
    a = await connect(alice)
    await join_settled(a)
    await send_raw(a, **frame)
    await expect_error(a, code)
    await assert_alive(a)
    await assert_nothing_stored()
    await a.disconnect()


async def test_many_bad_frames_in_a_row_never_close_the_socket(alice, lobby):
    """Garbage is not rate limited into a close: 50 bad frames get 50 errors, then a pong."""
    a = await connect(alice)
    await join_settled(a)
    for _ in range(50):
        await send_raw(a, text="{not json")
    for _ in range(50):
        await expect_error(a, "invalid_json")
    await assert_alive(a)
    await assert_nothing_stored()
    await a.disconnect()


# --- types -----------------------------------------------------------------------

INTERNAL_TYPES = [
    # ASGI and layer message types that the consumer's own dispatch understands: a client
    # naming them must never reach that dispatch.
    {"type": "websocket.disconnect", "code": 1000},
    {"type": "websocket.receive", "text": '{"type":"message","room":"lobby","body":"smuggled"}'},
    {"type": "websocket.connect"},
    {"type": "websocket.close", "code": 1000},
    {"type": "realtime.control", "action": "close", "code": 1000},
    {"type": "realtime.control", "action": "session_end", "session": ""},
    {"type": "realtime.event", "event": {"type": "message", "room": "lobby", "seq": 99, "body": "forged"}},
    {"type": "chat.message", "room": "lobby", "body": "smuggled"},
    # Method names and private attributes.
    {"type": "_private"},
    {"type": "__init__"},
    {"type": "__class__"},
    {"type": "handle_message", "room": "lobby", "body": "smuggled"},
    {"type": "receive"},
    {"type": "close"},
    {"type": "send_event", "event": {"type": "pong"}},
    # Names close to real ones.
    {"type": "Message", "room": "lobby", "body": "smuggled"},
    {"type": "message ", "room": "lobby", "body": "smuggled"},
    {"type": "PING"},
    {"type": "hello"},
    {"type": "error"},
    {"type": ""},
]


@pytest.mark.parametrize("frame", INTERNAL_TYPES, ids=lambda f: repr(f["type"]))
async def test_unknown_and_internal_types_are_refused_and_never_dispatched(alice, lobby, frame):
    """Unknown types, including ASGI/layer/internal names, get unknown_type; none is dispatched.

    Had ``websocket.disconnect`` or ``realtime.control`` been dispatched, the socket would
    be closed (the ping proves it is not); had ``realtime.event`` been, the forged message
    would arrive before the error; had any message type been, something would be stored.
    """
    a = await connect(alice)
    await join_settled(a)
    await a.send_json_to(frame)
    await expect_error(a, "unknown_type", request_type=frame["type"])
    await assert_alive(a)
    await assert_nothing_stored()
    assert await a.receive_nothing(timeout=0.2)
    await a.disconnect()


async def test_long_unknown_type_is_echoed_truncated(alice):
    """An unknown type is echoed in request_type, cut to 64 characters."""
    a = await connect(alice)
    await a.send_json_to({"type": "x" * 10_000})
    err = await expect_error(a, "unknown_type")
    assert err["request_type"] == "x" * 64
    await assert_alive(a)
    await a.disconnect()


@pytest.mark.parametrize(
    "frame",
    [{}, {"room": "lobby", "body": "no type"}, {"type": None}, {"type": 5}, {"type": ["message"]},
     {"type": {"t": "message"}}, {"type": True}],
    ids=["empty-object", "no-type", "null", "int", "list", "object", "bool"],
)
async def test_missing_or_non_string_type_is_invalid_field(alice, lobby, frame):
    """A frame without a string ``type`` is invalid_field (field 'type')."""
    a = await connect(alice)
    await join_settled(a)
    await a.send_json_to(frame)
    await expect_error(a, "invalid_field", field="type")
    await assert_alive(a)
    await assert_nothing_stored()
    await a.disconnect()


@pytest.mark.parametrize(
    "text",
    [
        '{"type":"\\ud800"}',
        '{"type":"\\udfff\\ud800"}',
        '{"type":"message","room":"no such!","body":"x","client_id":"\\ud800"}',
        '{"type":"ping","t":"1","client_id":"\\udc00"}',
    ],
    ids=["type-high", "type-reversed-pair", "client-id-high", "client-id-low"],
)
async def test_lone_surrogates_are_never_echoed_back(alice, text):
    """Error frames echo request_type and client_id; a lone surrogate there must not reach the wire.

    Daphne encodes every text frame as UTF-8; a lone surrogate cannot be encoded, the send
    raises, and the socket dies with 1011 — the opposite of "errors never close the socket".
    """
    a = await connect(alice)
    await send_raw(a, text=text)
    event = await next_frame(a)  # asserts the frame is encodable
    assert event["type"] == "error"
    await assert_alive(a)
    await a.disconnect()


# --- fields ----------------------------------------------------------------------


async def test_body_over_the_limit_is_refused_and_the_limit_itself_accepted(alice, lobby):
    """4001 characters: body_too_long (with max); exactly 4000 is stored."""
    from chat.models import Message

    a = await connect(alice)
    await join_settled(a)
    await a.send_json_to({"type": "message", "room": "lobby", "body": "x" * 4001, "client_id": "too-long"})
    await expect_error(a, "body_too_long", max=4000, client_id="too-long", request_type="message")
    await assert_alive(a)
    await assert_nothing_stored()
    # Characters, not bytes: 4000 four-byte characters are within the limit.
    await a.send_json_to({"type": "message", "room": "lobby", "body": "😀" * 4000})
    assert (await recv(a, type_="message"))["body"] == "😀" * 4000
    assert await sync_to_async(Message.objects.count)() == 1
    await a.disconnect()


@pytest.mark.parametrize("body", ["", " ", "   \n\t  \r\n", "\u3000", "\u00a0\u2003"],
                         ids=["empty", "space", "mixed-whitespace", "ideographic-space", "nbsp-emspace"])
async def test_blank_body_is_body_empty(alice, lobby, body):
    """An empty or whitespace-only body is body_empty; the client_id is echoed."""
    a = await connect(alice)
    await join_settled(a)
    await a.send_json_to({"type": "message", "room": "lobby", "body": body, "client_id": "c-9"})
    await expect_error(a, "body_empty", client_id="c-9", request_type="message")
    await assert_alive(a)
    await assert_nothing_stored()
    await a.disconnect()


@pytest.mark.parametrize(
    "body",
    ["a\x00b", "\x00", "bell\x07", "\x1b[31mred\x1b[0m", "back\x08space", "v\x0btab", "form\x0cfeed", "del\x7f",
     "c1\x85next-line", "c1\x9b"],
    ids=["nul", "only-nul", "bell", "ansi-escape", "backspace", "vtab", "formfeed", "del", "nel", "csi"],
)
async def test_control_characters_in_body_are_invalid_field(alice, lobby, body):
    """NUL and other control characters (C0 but TAB/LF/CR, DEL, C1) are refused as invalid_field."""
    a = await connect(alice)
    await join_settled(a)
    await a.send_json_to({"type": "message", "room": "lobby", "body": body})
    await expect_error(a, "invalid_field", field="body", request_type="message")
    await assert_alive(a)
    await assert_nothing_stored()
    await a.disconnect()


async def test_tab_newline_and_carriage_return_are_allowed(alice, lobby):
    """The control characters text needs (TAB, LF, CR) are stored as sent."""
    a = await connect(alice)
    await join_settled(a)
    await a.send_json_to({"type": "message", "room": "lobby", "body": "a\tb\nc\r\nd"})
    assert (await recv(a, type_="message"))["body"] == "a\tb\nc\r\nd"
    await a.disconnect()


@pytest.mark.parametrize("escaped", ["\\ud800", "x\\udfffy", "\\ude00\\ud83d"],
                         ids=["high", "low", "reversed-pair"])
async def test_lone_surrogate_in_body_is_invalid_field(alice, lobby, escaped):
    """A body with a lone surrogate (JSON "\\ud800") cannot be stored as UTF-8: invalid_field."""
    a = await connect(alice)
    await join_settled(a)
    await send_raw(a, text='{"type":"message","room":"lobby","body":"' + escaped + '"}')
    await expect_error(a, "invalid_field", field="body")
    await assert_alive(a)
    await assert_nothing_stored()
    await a.disconnect()


async def test_surrogate_pair_escape_is_a_valid_character(alice, lobby):
    """A proper surrogate pair escape ("\\ud83d\\ude00") is one character and is stored."""
    a = await connect(alice)
    await join_settled(a)
    await send_raw(a, text='{"type":"message","room":"lobby","body":"\\ud83d\\ude00"}')
    assert (await recv(a, type_="message"))["body"] == "😀"
    await a.disconnect()


BAD_SLUGS = [
    pytest.param("../etc", id="dotdot"),
    pytest.param("١٢٣", id="arabic-indic-digits"),
    pytest.param("lobby\n", id="trailing-newline"),
    pytest.param("\nlobby", id="leading-newline"),
    pytest.param("a" * 101, id="101-chars"),
    pytest.param("a" * 65, id="65-chars"),
    pytest.param("", id="empty"),
    pytest.param("Lobby", id="uppercase"),
    pytest.param("lob by", id="space"),
    pytest.param("lobby\x00", id="nul"),
    pytest.param("ｌｏｂｂｙ", id="fullwidth"),
    pytest.param("lobby/../x", id="slash"),
    pytest.param(None, id="null"),
    pytest.param(123, id="int"),
    pytest.param(["lobby"], id="list"),
]


@pytest.mark.parametrize("slug", BAD_SLUGS)
async def test_bad_room_slug_is_invalid_field(alice, lobby, slug):
    """Malformed room slugs are refused by validation (invalid_field, field 'room') for every type."""
    from chat.models import Membership

    a = await connect(alice)
    await join_settled(a)
    for kind in ("join", "message", "leave", "typing"):
        frame: dict[str, Any] = {"type": kind, "room": slug}
        if kind == "message":
            frame["body"] = "hello"
        await a.send_json_to(frame)
        await expect_error(a, "invalid_field", field="room", request_type=kind)
    await assert_alive(a)
    await assert_nothing_stored()
    assert await sync_to_async(Membership.objects.count)() == 1  # only alice's lobby membership
    await a.disconnect()


async def test_longest_valid_slug_is_looked_up_not_refused(alice):
    """A 64-character slug is well formed: it is looked up (room_not_found), not invalid_field."""
    a = await connect(alice)
    await a.send_json_to({"type": "join", "room": "a" * 64})
    await expect_error(a, "room_not_found", room="a" * 64)
    await assert_alive(a)
    await a.disconnect()


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        ({"type": "join", "room": "lobby", "last_seq": -1}, "last_seq"),
        ({"type": "join", "room": "lobby", "last_seq": 2**63}, "last_seq"),
        ({"type": "join", "room": "lobby", "last_seq": 1.5}, "last_seq"),
        ({"type": "join", "room": "lobby", "last_seq": "3"}, "last_seq"),
        ({"type": "join", "room": "lobby", "last_seq": True}, "last_seq"),
        ({"type": "message", "room": "lobby", "body": 5}, "body"),
        ({"type": "message", "room": "lobby", "body": ["hi"]}, "body"),
        ({"type": "message", "room": "lobby"}, "body"),
        ({"type": "message", "room": "lobby", "body": "hi", "client_id": "has space"}, "client_id"),
        ({"type": "message", "room": "lobby", "body": "hi", "client_id": "x" * 65}, "client_id"),
        ({"type": "message", "room": "lobby", "body": "hi", "client_id": 7}, "client_id"),
        ({"type": "edit", "room": "lobby", "id": 0, "body": "x"}, "id"),
        ({"type": "edit", "room": "lobby", "id": "1", "body": "x"}, "id"),
        ({"type": "delete", "room": "lobby", "id": -3}, "id"),
        ({"type": "delete", "room": "lobby", "id": 2**64}, "id"),
        ({"type": "ping", "t": "now"}, "t"),
        ({"type": "ping", "t": True}, "t"),
        ({"type": "ping", "t": 2**60}, "t"),
        ({"type": "ping", "rtt": [1]}, "rtt"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
async def test_wrong_field_types_are_invalid_field(alice, lobby, frame, field):
    """Out-of-range or wrongly typed fields are invalid_field naming the field."""
    a = await connect(alice)
    await join_settled(a)
    await a.send_json_to(frame)
    await expect_error(a, "invalid_field", field=field, request_type=frame["type"])
    await assert_alive(a)
    await assert_nothing_stored()
    await a.disconnect()


# --- rooms and memberships -------------------------------------------------------


async def test_room_that_does_not_exist(alice, lobby):
    """Joining an unknown room is room_not_found; posting to it is then not_joined; nothing is created."""
    from chat.models import Membership, Room

    a = await connect(alice)
    await a.send_json_to({"type": "join", "room": "nowhere"})
    await expect_error(a, "room_not_found", room="nowhere", request_type="join")
    await a.send_json_to({"type": "message", "room": "nowhere", "body": "hello?"})
    await expect_error(a, "not_joined", room="nowhere")
    await assert_alive(a)
    await assert_nothing_stored()
    assert not await sync_to_async(Room.objects.filter(slug="nowhere").exists)()
    assert await sync_to_async(Membership.objects.count)() == 0
    await a.disconnect()


async def test_room_deleted_after_join_is_room_not_found(alice, make_user):
    """A joined room that was deleted since: posting gets room_not_found, nothing stored."""
    from chat.models import Room

    await sync_to_async(Room.objects.create)(slug="temp", title="Temp")
    a = await connect(alice)
    await join_settled(a, "temp")
    await sync_to_async(Room.objects.filter(slug="temp").delete)()
    await a.send_json_to({"type": "message", "room": "temp", "body": "anyone?"})
    await expect_error(a, "room_not_found", room="temp")
    await assert_alive(a)
    await assert_nothing_stored()
    await a.disconnect()


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "message", "room": "lobby", "body": "not joined"},
        {"type": "edit", "room": "lobby", "id": 1, "body": "x"},
        {"type": "delete", "room": "lobby", "id": 1},
        {"type": "typing", "room": "lobby"},
        {"type": "leave", "room": "lobby"},
    ],
    ids=lambda f: f["type"],
)
async def test_acting_in_a_room_not_joined_is_not_joined(alice, bob, lobby, frame):
    """Anything but join in a room this socket has not joined is not_joined, and reaches no one."""
    a, b = await connect(alice), await connect(bob)
    await join_settled(b)
    await a.send_json_to(frame)
    await expect_error(a, "not_joined", room="lobby", request_type=frame["type"])
    await assert_alive(a)
    await assert_nothing_stored()
    assert [e for e in await drain(b) if e["type"] in ROOM_TRAFFIC] == []
    await a.disconnect()
    await b.disconnect()


async def test_another_socket_of_the_same_user_joining_does_not_join_this_one(alice, lobby):
    """Joined rooms are per socket: a second tab that joined does not let the first post."""
    a1, a2 = await connect(alice), await connect(alice)
    await join_settled(a2)
    await a1.send_json_to({"type": "message", "room": "lobby", "body": "from tab 1"})
    await expect_error(a1, "not_joined", room="lobby")
    await assert_nothing_stored()
    await a1.disconnect()
    await a2.disconnect()


async def test_private_room_is_forbidden_to_non_members(alice, bob):
    """Joining a private room without a membership is forbidden; no membership is created, nothing leaks."""
    from chat import services
    from chat.models import Membership

    await sync_to_async(services.room_create)(slug="staff", title="Staff", is_public=False, created_by=bob)
    b = await connect(bob)
    await join_settled(b, "staff")
    a = await connect(alice)
    await a.send_json_to({"type": "join", "room": "staff"})
    await expect_error(a, "forbidden", room="staff", request_type="join")
    await a.send_json_to({"type": "message", "room": "staff", "body": "let me in"})
    await expect_error(a, "not_joined", room="staff")
    await assert_alive(a)
    await assert_nothing_stored()
    assert not await sync_to_async(Membership.objects.filter(user=alice).exists)()
    assert [e for e in await drain(b) if e["type"] in ROOM_TRAFFIC | {"presence"}] == []
    await a.disconnect()
    await b.disconnect()


async def test_muted_member_cannot_post(alice, lobby):
    """A member muted until a future time gets muted (with until) and stores nothing; when it lapses, they can post."""
    from django.utils import timezone

    from chat.models import Membership

    a = await connect(alice)
    await join_settled(a)
    until = timezone.now() + timedelta(hours=1)
    membership = await sync_to_async(Membership.objects.get)(user=alice, room=lobby)
    # Through the service: its ``membership`` event is what makes the socket re-read the mute.
    await sync_to_async(services.member_mute)(membership=membership, until=until)
    await recv(a, type_="membership")
    await a.send_json_to({"type": "message", "room": "lobby", "body": "can you hear me", "client_id": "m-1"})
    err = await expect_error(a, "muted", room="lobby", client_id="m-1")
    assert err["until"] == until.isoformat()
    await assert_alive(a)
    await assert_nothing_stored()
    # A mute that lapses needs no event: the time is checked on every message.
    await sync_to_async(services.member_mute)(membership=membership, until=timezone.now() + timedelta(seconds=1))
    await recv(a, type_="membership")
    await asyncio.sleep(1.1)
    await a.send_json_to({"type": "message", "room": "lobby", "body": "back", "client_id": "m-1"})
    assert (await recv(a, type_="message"))["body"] == "back"
    await a.disconnect()


async def test_muted_member_cannot_edit(alice, lobby):
    """A mute also stops edits of one's own earlier messages."""
    from django.utils import timezone

    from chat.models import Membership, Message

    a = await connect(alice)
    await join_settled(a)
    await a.send_json_to({"type": "message", "room": "lobby", "body": "original"})
    msg = await recv(a, type_="message")
    await sync_to_async(Membership.objects.filter(user=alice, room=lobby).update)(
        muted_until=timezone.now() + timedelta(hours=1)
    )
    await a.send_json_to({"type": "edit", "room": "lobby", "id": msg["id"], "body": "changed"})
    await expect_error(a, "muted")
    assert (await sync_to_async(Message.objects.get)(pk=msg["id"])).body == "original"
    await a.disconnect()


async def test_banned_member_cannot_join(alice, lobby):
    """A banned member's join is refused with banned; they receive nothing from the room."""
    from chat.models import Membership

    await sync_to_async(Membership.objects.create)(user=alice, room=lobby, banned=True)
    a = await connect(alice)
    await a.send_json_to({"type": "join", "room": "lobby"})
    await expect_error(a, "banned", room="lobby", request_type="join")
    await a.send_json_to({"type": "message", "room": "lobby", "body": "let me back"})
    await expect_error(a, "not_joined", room="lobby")
    await assert_alive(a)
    await assert_nothing_stored()
    await a.disconnect()


async def test_edit_or_delete_of_an_unknown_message_is_message_not_found(alice, bob, lobby, make_user):
    """Ids of messages that do not exist, or belong to another room, are message_not_found."""
    from chat import services

    other = await sync_to_async(services.room_create)(slug="other", title="Other", created_by=bob)
    theirs, _ = await sync_to_async(services.message_post)(room=other, author=bob, body="elsewhere")
    a = await connect(alice)
    await join_settled(a)
    for frame in (
        {"type": "edit", "room": "lobby", "id": 999, "body": "x"},
        {"type": "delete", "room": "lobby", "id": 999},
        {"type": "edit", "room": "lobby", "id": theirs.pk, "body": "x"},
        {"type": "delete", "room": "lobby", "id": theirs.pk},
    ):
        await a.send_json_to(frame)
        await expect_error(a, "message_not_found")
    await assert_alive(a)
    await a.disconnect()


# --- rate limit ------------------------------------------------------------------


async def test_flood_is_rate_limited_then_closed_with_4008(alice, lobby, settings):
    """Past the burst: rate_limited errors with retry_after, then close 4008; only the burst is stored."""
    from chat.models import Message

    settings.REALTIME = {
        **settings.REALTIME, "RATE_BURST": 3, "RATE_PER_SECOND": 0.5, "RATE_STRIKES_BEFORE_CLOSE": 3,
    }
    a = await connect(alice)
    await join_settled(a)
    for i in range(10):
        await a.send_json_to({"type": "message", "room": "lobby", "body": f"flood {i}", "client_id": f"f{i}"})
    stored, limited = [], []
    while True:
        out = await a.receive_output(timeout=5)
        if out["type"] == "websocket.close":
            assert out["code"] == CloseCode.RATE_LIMITED
            break
        event = json.loads(out["text"])
        if event["type"] == "message":
            stored.append(event["client_id"])
        elif event["type"] == "error":
            assert event["code"] == "rate_limited", event
            assert event["request_type"] == "message"
            assert 0 < event["retry_after"] <= 2.0  # one token at 0.5/s
            limited.append(event["client_id"])
    # The refusals need no round trip (the bucket is in the process), so the close can
    # overtake the live echo of the last stored message: what arrived is a prefix.
    assert stored == ["f0", "f1", "f2"][:len(stored)]
    assert limited == ["f3", "f4", "f5"]
    # Nothing after the close is sent, and nothing more is stored.
    assert await a.receive_nothing(timeout=0.3)
    ids = await sync_to_async(lambda: sorted(Message.objects.values_list("client_id", flat=True)))()
    assert ids == ["f0", "f1", "f2"]
    await a.disconnect()


async def test_rate_limit_is_per_user_across_sockets(alice, bob, lobby, settings):
    """The bucket is the user's: a second socket does not get a fresh burst; other users are unaffected."""
    from chat.models import Message

    settings.REALTIME = {
        **settings.REALTIME, "RATE_BURST": 2, "RATE_PER_SECOND": 0.5, "RATE_STRIKES_BEFORE_CLOSE": 5,
    }
    a1, a2, b = await connect(alice), await connect(alice), await connect(bob)
    for c in (a1, a2, b):
        await join_settled(c)
    await a1.send_json_to({"type": "message", "room": "lobby", "body": "1"})
    await recv(a1, type_="message")
    await a1.send_json_to({"type": "message", "room": "lobby", "body": "2"})
    await recv(a1, type_="message")
    await a2.send_json_to({"type": "message", "room": "lobby", "body": "3"})
    err = await recv(a2, type_="error")
    assert err["code"] == "rate_limited" and err["retry_after"] > 0
    await b.send_json_to({"type": "message", "room": "lobby", "body": "bob's"})
    while (await recv(b, type_="message"))["author"] != "bob":
        pass
    bodies = await sync_to_async(lambda: sorted(Message.objects.values_list("body", flat=True)))()
    assert bodies == ["1", "2", "bob's"]
    for c in (a1, a2, b):
        await c.disconnect()


async def test_pings_and_errors_do_not_spend_the_message_budget(alice, lobby, settings):
    """Only rate-limited types (message, edit, delete) take tokens: pings and invalid frames do not."""
    from chat.models import Message

    settings.REALTIME = {
        **settings.REALTIME, "RATE_BURST": 2, "RATE_PER_SECOND": 0.5, "RATE_STRIKES_BEFORE_CLOSE": 1,
    }
    a = await connect(alice)
    await join_settled(a)
    for _ in range(20):
        await assert_alive(a)
        await a.send_json_to({"type": "message", "room": "lobby", "body": ""})
        await expect_error(a, "body_empty")
    await a.send_json_to({"type": "message", "room": "lobby", "body": "still allowed"})
    assert (await recv(a, type_="message"))["body"] == "still allowed"
    assert await sync_to_async(Message.objects.count)() == 1
    await a.disconnect()


# --- the MessagePack encoding ------------------------------------------------------


async def connect_msgpack(user: Any) -> WebsocketCommunicator:
    cookie = await sync_to_async(cookie_header)(user)
    comm = WebsocketCommunicator(
        application, "/ws/chat/", headers=[ORIGIN, (b"cookie", cookie.encode())], subprotocols=["chat.v1.msgpack"]
    )
    connected, subprotocol = await comm.connect(timeout=5)
    assert connected and subprotocol == "chat.v1.msgpack"
    assert msgpack.unpackb(await comm.receive_from(timeout=5))["type"] == "hello"
    return comm


async def next_packed(comm: WebsocketCommunicator) -> dict[str, Any]:
    out = await comm.receive_output(timeout=5)
    assert out["type"] == "websocket.send" and "bytes" in out, out
    return msgpack.unpackb(out["bytes"])


PACKED = [
    pytest.param({"data": b"\xc1"}, "invalid_frame", id="never-used-byte"),
    pytest.param({"data": b""}, "invalid_frame", id="empty"),
    pytest.param({"data": msgpack.packb({"type": "ping"}) + b"\x00"}, "invalid_frame", id="trailing-data"),
    pytest.param({"data": b"\xdd\xff\xff\xff\xff"}, "invalid_frame", id="array-claiming-4G-items"),
    pytest.param({"data": b"\xc6\xff\xff\xff\xff"}, "invalid_frame", id="bin-claiming-4GB"),
    pytest.param({"data": b"\x91" * 10_000 + b"\xc0"}, "invalid_frame", id="nested-10000"),  # arrays in arrays
    pytest.param({"data": msgpack.packb({1: "int key"})}, "invalid_frame", id="int-map-key"),
    pytest.param({"data": b"\x81\xa4type\xa2\xed\xa0"}, "invalid_frame", id="invalid-utf8-string"),
    pytest.param({"text": '{"type":"ping"}'}, "invalid_frame", id="text-frame"),
    pytest.param({"data": msgpack.packb([1, 2])}, "not_an_object", id="array"),
    pytest.param({"data": msgpack.packb("str")}, "not_an_object", id="string"),
    pytest.param({"data": msgpack.packb({"type": b"ping"})}, "invalid_field", id="bytes-type"),
    pytest.param({"data": msgpack.packb({"type": "ping", "t": float("inf")})}, "invalid_field", id="inf"),
    pytest.param({"data": msgpack.packb({"type": "ping", "t": float("nan")})}, "invalid_field", id="nan"),
    pytest.param({"data": msgpack.packb({"type": "join", "room": "lobby", "last_seq": 2**64 - 1})},
                 "invalid_field", id="uint64-last-seq"),
    pytest.param({"data": msgpack.packb({"type": "message", "room": "lobby", "body": b"bytes body"})},
                 "invalid_field", id="bytes-body"),
    pytest.param({"data": msgpack.packb({"type": "websocket.disconnect"})}, "unknown_type", id="internal-type"),
]


@pytest.mark.parametrize(("frame", "code"), PACKED)
async def test_bad_msgpack_frames_get_errors_and_the_socket_survives(alice, lobby, frame, code):
    """On chat.v1.msgpack, undecodable or invalid frames get their error (as MessagePack); the socket survives."""
    a = await connect_msgpack(alice)
    await a.send_to(bytes_data=msgpack.packb({"type": "join", "room": "lobby"}))
    await a.send_to(bytes_data=msgpack.packb({"type": "ping", "t": 1}))
    while (await next_packed(a)) != {"type": "pong", "t": 1}:
        pass
    await send_raw(a, **frame)
    event = await next_packed(a)
    assert event["type"] == "error" and event["code"] == code, event
    await a.send_to(bytes_data=msgpack.packb({"type": "ping", "t": 3}))
    assert await next_packed(a) == {"type": "pong", "t": 3}
    await assert_nothing_stored()
    await a.disconnect()
