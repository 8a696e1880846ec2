"""The fan-out fast path: one pre-encoded WebSocket frame, written straight to each socket.

A broadcast reaches every local socket through ``realtime.hub``. Through the ASGI
``send`` chain each copy would pass the session middleware, Daphne's ``handle_reply``,
autobahn's ``sendMessage`` (which re-encodes the text, builds the frame and formats
debug-log arguments) and Twisted's ``write``, which arms an epoll writer for the socket
and disarms it on the next loop turn: several times the cost of the write itself, per
socket and message (found with py-spy in ``bench/fanout``; the figures are in
docs/performance.md).

Here the hub builds the frame **once** per message and encoding (:func:`frame`, the
bytes autobahn's ``prepareMessage`` would make for a server) and each socket's
:class:`Wire` writes it:

* straight to the kernel socket with one non-blocking ``send`` when Twisted holds
  nothing unsent for that socket (what asyncio's transports do, and what the bare
  ``websockets`` server in ``bench/fanout`` gets for free);
* otherwise, or for the part the kernel did not take, through Twisted's own ``write``,
  so a slow reader is buffered and frames stay in order with everything the socket
  sent through ASGI (those writes are synchronous within ``send``, so they are already
  in Twisted's buffer when a broadcast comes).

Every other event a socket is sent (``ProtocolConsumer.send_event``: hello, joined,
history, errors, pong) takes the same writer with its own frame.

A socket whose ``send`` is not Daphne's (long polling, ``WebsocketCommunicator`` in
tests, a TLS transport) has no Wire and keeps the ASGI path; so does one that
negotiated compression. Nothing about what is delivered changes: the hub filters
exactly as before and the frame carries the same bytes the ASGI path would send.

It reads Twisted's, autobahn's and Daphne's internals, so it is the patch
``direct_writes`` of ``realtime.accel``: off (another release, or ``REALTIME_ACCEL=0``),
:func:`wire_for` finds no Wire and every frame takes the ASGI path and Twisted's writes.
"""

from __future__ import annotations

import functools
import struct
from typing import Any

from realtime import accel

# RFC 6455 5.2: FIN bit plus opcode 1 (text) or 2 (binary); servers do not mask.
_TEXT = 0x81
_BINARY = 0x82


def frame(payload: bytes, binary: bool) -> bytes:
    """One complete, unmasked server frame carrying ``payload``."""
    first = _BINARY if binary else _TEXT
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 1 << 16:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload


def frame_for(asgi_message: dict[str, Any]) -> bytes:
    """The frame for an ASGI ``websocket.send`` message (as ``realtime.protocol`` encodes them)."""
    text = asgi_message.get("text")
    if text is not None:
        return frame(text.encode("utf-8"), binary=False)
    return frame(asgi_message["bytes"], binary=True)


_TRANSPORT_FIELDS = ("socket", "connected", "disconnecting", "_writeDisconnected", "_tempDataLen", "offset",
                     "dataBuffer")
_PROTOCOL_FIELDS = ("state", "STATE_OPEN", "send_queue")


class Wire:
    """Writes whole frames to one Daphne WebSocket connection."""

    __slots__ = ("server", "protocol", "transport", "sock")

    def __init__(self, server: Any, protocol: Any) -> None:
        self.server = server
        self.protocol = protocol
        self.transport = protocol.transport
        self.sock = self.transport.socket

    def write(self, data: bytes) -> bool:
        """Send one frame; False when this socket is not in a state for it (use the ASGI path).

        That is: closing or closed (the ASGI path drops the frame as it always did), or
        autobahn holding writes of its own in its send queue (they must go first).
        """
        protocol = self.protocol
        if protocol.state != protocol.STATE_OPEN or protocol.send_queue:
            return False
        connection = self.server.connections.get(protocol)
        if connection is None or connection.get("disconnected"):
            return False
        t = self.transport
        if not t.connected or t.disconnecting or t._writeDisconnected:
            return False
        sent = 0
        if not t._tempDataLen and t.offset == len(t.dataBuffer):
            try:
                sent = self.sock.send(data)
            except OSError:
                # Would block, or a broken connection: Twisted's write buffers the frame,
                # or finds the connection lost and closes it its usual way.
                sent = 0
        if sent < len(data):
            t.write(data[sent:] if sent else data)
        return True


def wire_for(send: Any) -> Wire | None:
    """The Wire behind an ASGI ``send`` callable, or None when it is not a plain Daphne socket.

    Daphne hands each application ``functools.partial(server.handle_reply, protocol)``;
    middleware in between (channels' session wrapper) keeps it as ``real_send``. None
    for every socket when the patch ``direct_writes`` is not in force (realtime.accel).
    """
    if not accel.active("direct_writes"):
        return None
    try:
        from daphne.server import Server
        from daphne.ws_protocol import WebSocketProtocol
        from twisted.internet.tcp import Connection
    except ImportError:  # pragma: no cover - Daphne is a pinned dependency
        return None
    for _ in range(8):
        if isinstance(send, functools.partial):
            server = getattr(send.func, "__self__", None)
            if (
                isinstance(server, Server)
                and getattr(send.func, "__name__", "") == "handle_reply"
                and len(send.args) == 1
                and isinstance(send.args[0], WebSocketProtocol)
            ):
                protocol = send.args[0]
                transport = protocol.transport
                if (
                    isinstance(transport, Connection)
                    and protocol._perMessageCompress is None
                    # Twisted and autobahn internals Wire.write reads: should a release rename
                    # one, sockets fall back to the ASGI path instead of failing every broadcast.
                    and all(hasattr(transport, name) for name in _TRANSPORT_FIELDS)
                    and all(hasattr(protocol, name) for name in _PROTOCOL_FIELDS)
                ):
                    return Wire(server, protocol)
            return None
        send = getattr(getattr(send, "__self__", None), "real_send", None)
        if send is None:
            return None
    return None
