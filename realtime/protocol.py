"""The wire protocol, defined once: message types, their fields, limits, error and close codes.

Every frame is an object with a ``type``. Client frames are validated against their
:class:`MessageSpec` before any handler sees them; server events are described in the
same registry so ``docs/protocol.md`` can be checked against the code
(tests/realtime/test_protocol_docs.py). This module holds the core's own types (ping,
pong, hello, error, presence); the apps register theirs through realtime.features.

Two encodings carry the same objects: JSON text frames (the default, subprotocol
``chat.v1.json`` or none) and MessagePack binary frames (subprotocol
``chat.v1.msgpack``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack

# --- Subprotocols ----------------------------------------------------------------

SUBPROTOCOL_JSON = "chat.v1.json"
SUBPROTOCOL_MSGPACK = "chat.v1.msgpack"


# --- Close codes -----------------------------------------------------------------
# 1000-1015 are RFC 6455's; 4000-4999 are ours. Clients must not reconnect
# automatically after SESSION_ENDED or FORBIDDEN; they may after the others.


class CloseCode:
    """Named WebSocket close codes; docs/protocol.md lists them."""

    NORMAL = 1000
    #: The server is shutting down or draining: reconnect now (elsewhere). RFC 6455's
    #: 1001 would say the same, but Daphne lets applications send only 1000 and 3000-4999.
    GOING_AWAY = 4000
    #: Daphne refused a frame larger than WS_MAX_FRAME_BYTES (it may also just drop the connection: 1006).
    MESSAGE_TOO_BIG = 1009
    #: The user logged out, changed password, or the ticket's session ended.
    SESSION_ENDED = 4001
    #: The account was deactivated or banned site-wide.
    FORBIDDEN = 4003
    #: The socket kept sending after being rate limited.
    RATE_LIMITED = 4008
    #: The user already has the maximum number of open sockets.
    TOO_MANY_CONNECTIONS = 4029


#: Close codes after which a client must not reconnect by itself: reconnecting would
#: only be refused again until the user acts (logs in, closes a tab).
NO_RECONNECT: frozenset[int] = frozenset(
    {CloseCode.SESSION_ENDED, CloseCode.FORBIDDEN, CloseCode.TOO_MANY_CONNECTIONS}
)


CLOSE_CODE_DOCS: dict[int, str] = {
    CloseCode.NORMAL: "normal closure",
    CloseCode.GOING_AWAY: "server going away (shutting down or draining): reconnect now, to another process",
    CloseCode.MESSAGE_TOO_BIG: "a frame over the size limit: Daphne closes with 1009 or drops the connection (1006)",
    CloseCode.SESSION_ENDED: "session ended (log-out, password change); do not reconnect, log in again",
    CloseCode.FORBIDDEN: "account deactivated or banned; do not reconnect",
    CloseCode.RATE_LIMITED: "kept sending after being rate limited; reconnect after a pause",
    CloseCode.TOO_MANY_CONNECTIONS: "too many open sockets for this user; close a tab",
}


# --- Error codes (the ``code`` of an ``error`` event) ----------------------------


class ErrorCode:
    """Codes of ``{"type":"error"}`` events; the socket stays open after each."""

    INVALID_JSON = "invalid_json"
    INVALID_FRAME = "invalid_frame"
    NOT_AN_OBJECT = "not_an_object"
    BINARY_NOT_SUPPORTED = "binary_not_supported"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_FIELD = "invalid_field"
    BODY_TOO_LONG = "body_too_long"
    BODY_EMPTY = "body_empty"
    ROOM_NOT_FOUND = "room_not_found"
    FORBIDDEN = "forbidden"
    BANNED = "banned"
    NOT_JOINED = "not_joined"
    MUTED = "muted"
    RATE_LIMITED = "rate_limited"
    MESSAGE_NOT_FOUND = "message_not_found"
    BLOCKED = "blocked"
    INVALID_ATTACHMENT = "invalid_attachment"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal_error"


ERROR_CODE_DOCS: dict[str, str] = {
    ErrorCode.INVALID_JSON: "the text frame is not valid JSON (or nests too deeply, or has an oversized number)",
    ErrorCode.INVALID_FRAME: "the binary frame is not valid MessagePack",
    ErrorCode.NOT_AN_OBJECT: "the frame decodes to something other than an object",
    ErrorCode.BINARY_NOT_SUPPORTED: "a binary frame on the JSON protocol",
    ErrorCode.UNKNOWN_TYPE: "no client message has this `type`",
    ErrorCode.INVALID_FIELD: "a field is missing, of the wrong type, or malformed",
    ErrorCode.BODY_TOO_LONG: "the body is over the limit (default 4000 characters)",
    ErrorCode.BODY_EMPTY: "the body is empty or whitespace only",
    ErrorCode.ROOM_NOT_FOUND: "no room has this slug",
    ErrorCode.FORBIDDEN: "the user may not enter this room or act on this message",
    ErrorCode.BANNED: "the user is banned from this room",
    ErrorCode.NOT_JOINED: "the socket has not joined this room",
    ErrorCode.MUTED: "the user is muted in this room",
    ErrorCode.RATE_LIMITED: "too many messages; `retry_after` says when to try again",
    ErrorCode.MESSAGE_NOT_FOUND: "no message with this id in this room",
    ErrorCode.BLOCKED: "the text contains a word this site does not allow; nothing was stored or changed",
    ErrorCode.INVALID_ATTACHMENT: "an attachment is not your own unsent upload to this room, or more than 10; "
    "nothing was stored",
    ErrorCode.UNAVAILABLE: "the server could not complete the request; nothing was stored, retry",
    ErrorCode.INTERNAL: "an unexpected server error; reported, the socket stays open",
}


class ProtocolError(Exception):
    """A client frame that cannot be served; becomes an ``error`` event, never a close."""

    def __init__(self, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.extra = extra

    def as_event(self) -> dict[str, Any]:
        """The ``error`` event this failure is reported as."""
        return {"type": "error", "code": self.code, "detail": self.detail, **self.extra}


# --- Field validation ------------------------------------------------------------

SLUG_RE = re.compile(r"[a-z0-9-]{1,64}", re.ASCII)
CLIENT_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}", re.ASCII)
MAX_SEQ = 2**63 - 1
#: Control characters refused in bodies: C0 except TAB, LF and CR; DEL; C1.
CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def echo_safe(value: str, limit: int = 64) -> str:
    """A client-supplied string to echo in an error: cut to ``limit`` and encodable as UTF-8.

    JSON can carry lone surrogates (``"\\ud800"``); echoed as they are, they make the
    server's UTF-8 encoding of the error frame fail, and the socket die with it.
    """
    return value[:limit].encode("utf-8", "replace").decode("utf-8")


def check_slug(value: Any) -> str:
    """A room slug: 1-64 of ``a-z``, ``0-9`` and ``-`` (ASCII only, nothing after)."""
    if not isinstance(value, str) or not SLUG_RE.fullmatch(value):
        raise ValueError("must be 1-64 characters of a-z, 0-9 and -")
    return value


def check_client_id(value: Any) -> str:
    """A client-chosen id for idempotent sends: 1-64 of ``A-Za-z0-9_.:-``."""
    if not isinstance(value, str) or not CLIENT_ID_RE.fullmatch(value):
        raise ValueError("must be 1-64 characters of A-Z, a-z, 0-9, _ . : -")
    return value


def check_seq(value: Any) -> int:
    """A sequence number: an integer from 0 to 2**63-1."""
    if not _is_int(value) or not 0 <= value <= MAX_SEQ:
        raise ValueError("must be an integer from 0 to 2**63-1")
    return value


def check_id(value: Any) -> int:
    """A positive database id."""
    if not _is_int(value) or not 1 <= value <= MAX_SEQ:
        raise ValueError("must be a positive integer")
    return value


def check_text(value: Any) -> str:
    """Any string that can be stored: valid Unicode without lone surrogates."""
    if not isinstance(value, str):
        raise ValueError("must be a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode") from None
    return value


def check_number(value: Any) -> int | float:
    """Any finite JSON number (the heartbeat's timestamp)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a number")
    if isinstance(value, int) and abs(value) > 2**53:
        raise ValueError("must be at most 2**53 in magnitude")
    if isinstance(value, float) and not math.isfinite(value):  # NaN, or inf (MessagePack can carry both)
        raise ValueError("must be a finite number")
    return value


def body_check(value: Any, *, max_chars: int) -> str:
    """A message body: text, not blank, within the limit, without control characters."""
    value = check_text(value)
    if len(value) > max_chars:
        raise ProtocolError(ErrorCode.BODY_TOO_LONG, f"body is longer than {max_chars} characters", max=max_chars)
    if not value.strip():
        raise ProtocolError(ErrorCode.BODY_EMPTY, "body is empty")
    if CONTROL_RE.search(value):
        raise ProtocolError(ErrorCode.INVALID_FIELD, "body contains control characters", field="body")
    return value


@dataclass(frozen=True)
class Field:
    """One field of a message: its name, checker, whether required, and what it means."""

    name: str
    check: Callable[[Any], Any]
    required: bool = True
    doc: str = ""


@dataclass(frozen=True)
class MessageSpec:
    """A message type: its fields, what it does, and an example (used by the docs)."""

    type: str
    fields: tuple[Field, ...] = ()
    doc: str = ""
    example: dict[str, Any] = field(default_factory=dict)
    #: Counts against the per-user message rate limit.
    rate_limited: bool = False
    #: Who defines it: ``core``, or the feature (app) that registered it (docs/protocol.md says).
    owner: str = "core"

    def validate(self, frame: dict[str, Any]) -> dict[str, Any]:
        """The frame's known fields, checked; unknown fields are ignored."""
        clean: dict[str, Any] = {}
        for f in self.fields:
            if f.name not in frame or frame[f.name] is None:
                if f.required:
                    raise ProtocolError(
                        ErrorCode.INVALID_FIELD, f"field '{f.name}' is required", field=f.name
                    )
                continue
            try:
                clean[f.name] = f.check(frame[f.name])
            except ValueError as exc:
                raise ProtocolError(ErrorCode.INVALID_FIELD, f"field '{f.name}' {exc}", field=f.name) from None
        return clean


ROOM = Field("room", check_slug, doc="room slug")


class Registry:
    """Client message types by name, and the server events the docs describe.

    The core registers its types first, then each app its own (realtime.features); a
    name is taken once (see ``register``), so nothing can shadow ``ping`` or ``join``.
    """

    def __init__(self) -> None:
        self.client: dict[str, MessageSpec] = {}
        self.server: dict[str, MessageSpec] = {}

    def register(self, spec: MessageSpec) -> MessageSpec:
        """Add a client message type; a name already taken is a programming error."""
        if spec.type in self.client:
            raise ValueError(f"client message type {spec.type!r} is already registered")
        self.client[spec.type] = spec
        return spec

    def register_event(self, spec: MessageSpec) -> MessageSpec:
        """Describe a server event (documentation and the docs check only)."""
        if spec.type in self.server:
            raise ValueError(f"server event type {spec.type!r} is already registered")
        self.server[spec.type] = spec
        return spec

    def spec_for(self, frame: dict[str, Any]) -> MessageSpec:
        """The spec for a decoded client frame; unknown types are refused by name lookup only."""
        kind = frame.get("type")
        if not isinstance(kind, str):
            raise ProtocolError(ErrorCode.INVALID_FIELD, "field 'type' is required and must be a string", field="type")
        spec = self.client.get(kind)
        if spec is None:
            raise ProtocolError(ErrorCode.UNKNOWN_TYPE, "unknown message type", request_type=echo_safe(kind))
        return spec


registry = Registry()

# --- The core's own types ----------------------------------------------------------
# Only what every app on the core shares: the greeting, the heartbeat, errors and
# presence. An app registers its own types and events from its ``realtime_features``
# module (realtime.features); the chat's are in chat/realtime_features.py.

PING = registry.register(
    MessageSpec(
        "ping",
        (
            Field("t", check_number, required=False, doc="any number, echoed back (e.g. a timestamp)"),
            Field("rtt", check_number, required=False, doc="the client's last measured round trip, ms"),
        ),
        doc="Application heartbeat; answered by `pong` with the same `t`.",
        example={"type": "ping", "t": 1732550000000},
    )
)

for _spec in (
    MessageSpec("hello", doc="First frame after accept: who you are and the limits in force.",
                example={"type": "hello", "user": "alice", "protocol": "chat.v1.json", "max_body": 4000,
                         "ping_ms": 25000}),
    MessageSpec("pong", doc="Reply to `ping`.", example={"type": "pong", "t": 1732550000000}),
    MessageSpec("presence", doc="People came or went (two tabs of one user are one entry).",
                example={"type": "presence", "room": "lobby", "joined": ["bob"], "left": []}),
    MessageSpec("error", doc="A frame could not be served; the socket stays open.",
                example={"type": "error", "code": "body_too_long", "detail": "body is longer than 4000 characters",
                         "max": 4000, "request_type": "message", "client_id": "c-1f2e"}),
):
    registry.register_event(_spec)


# --- The core's events, built here and only here ------------------------------------


def hello_event(*, user: str, protocol: str, max_body: int, ping_ms: int) -> dict[str, Any]:
    """``hello``: the first frame after accept."""
    return {"type": "hello", "user": user, "protocol": protocol, "max_body": max_body, "ping_ms": ping_ms}


def pong_event(*, t: Any) -> dict[str, Any]:
    """``pong``: the heartbeat's answer, echoing ``t``."""
    return {"type": "pong", "t": t}


def presence_event(*, room: str, joined: list[str], left: list[str]) -> dict[str, Any]:
    """``presence``: who came to or went from a room (sent through realtime.broadcast.apresence_send)."""
    return {"type": "presence", "room": room, "joined": joined, "left": left}


# --- Encodings ---------------------------------------------------------------------

# Deeper nesting than this is refused before the decoder can recurse into it.
MAX_DEPTH = 32


def _too_deep(text: str) -> bool:
    """Whether brackets nest deeper than MAX_DEPTH (counting those inside strings too).

    Python's decoder recurses per level; refusing deep frames up front keeps a hostile
    frame from costing a RecursionError's worth of stack. Most frames have few brackets,
    so the scan only runs when the count could exceed the limit.
    """
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    depth = 0
    for ch in text:
        if ch == "[" or ch == "{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif ch == "]" or ch == "}":
            depth -= 1
    return False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_float(text: str) -> float:
    # 1e999 parses to inf, which json.dumps would send back as the non-JSON token Infinity.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number too large")
    return value


def _parse_int(digits: str) -> int:
    if len(digits) > 20:
        raise ValueError("number too large")
    return int(digits)


class JsonCodec:
    """JSON text frames: the default encoding."""

    subprotocol = SUBPROTOCOL_JSON
    binary = False

    @staticmethod
    def decode(text: str | None, data: bytes | None) -> Any:
        """A client frame to a Python value, or ProtocolError."""
        if text is None:
            raise ProtocolError(ErrorCode.BINARY_NOT_SUPPORTED, "binary frames are not accepted on the JSON protocol")
        if _too_deep(text):
            raise ProtocolError(ErrorCode.INVALID_JSON, f"nesting deeper than {MAX_DEPTH} levels")
        try:
            return json.loads(text, parse_constant=_reject_constant, parse_int=_parse_int, parse_float=_parse_float)
        except (ValueError, RecursionError):
            raise ProtocolError(ErrorCode.INVALID_JSON, "frame is not valid JSON") from None

    @staticmethod
    def encode(event: dict[str, Any]) -> dict[str, Any]:
        """The ASGI ``websocket.send`` message carrying ``event``."""
        return {"type": "websocket.send", "text": json.dumps(event, ensure_ascii=False, separators=(",", ":"))}


class MsgpackCodec:
    """MessagePack binary frames, negotiated with the ``chat.v1.msgpack`` subprotocol."""

    subprotocol = SUBPROTOCOL_MSGPACK
    binary = True

    @staticmethod
    def decode(text: str | None, data: bytes | None) -> Any:
        """A client frame to a Python value, or ProtocolError."""
        if data is None:
            raise ProtocolError(ErrorCode.INVALID_FRAME, "text frames are not accepted on the MessagePack protocol")
        try:
            return msgpack.unpackb(data, raw=False, strict_map_key=True)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, RecursionError):
            raise ProtocolError(ErrorCode.INVALID_FRAME, "frame is not valid MessagePack") from None

    @staticmethod
    def encode(event: dict[str, Any]) -> dict[str, Any]:
        """The ASGI ``websocket.send`` message carrying ``event``."""
        return {"type": "websocket.send", "bytes": msgpack.packb(event, use_bin_type=True)}


CODECS = {SUBPROTOCOL_JSON: JsonCodec, SUBPROTOCOL_MSGPACK: MsgpackCodec}


def codec_negotiate(offered: list[str]) -> tuple[type[JsonCodec] | type[MsgpackCodec], str | None]:
    """The codec for the client's offered subprotocols, and the one to accept (None: none offered)."""
    for name in offered:
        if name in CODECS:
            return CODECS[name], name
    return JsonCodec, None


def frame_decode(codec: Any, text: str | None, data: bytes | None) -> dict[str, Any]:
    """Decode a frame and require an object."""
    value = codec.decode(text, data)
    if not isinstance(value, dict):
        raise ProtocolError(ErrorCode.NOT_AN_OBJECT, "a frame must be an object with a 'type'")
    return value
