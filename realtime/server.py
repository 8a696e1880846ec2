"""The project's Daphne: Daphne's server and command line, with lighter idle sockets.

    python -m realtime.server [any daphne option] realtime.asgi:application

takes exactly Daphne's options (it *is* Daphne's command line, with its ``server_class``
set to :class:`Server` below). Everything the app does also works under plain
``daphne``; this only changes what an open WebSocket costs the process, idle (bench/fanout
S0) and per frame received (S1), without changing a byte on the wire
(docs/performance.md):

* **The input queue.** Daphne gives each connection an ``asyncio.Queue``: three deques
  and an ``asyncio.Event`` with a fourth, before anything is queued. A
  WebSocket has exactly one reader (the application's ``receive``), so
  :class:`InputQueue` (a list and at most one waiting future) does the same job.
* **The HTTP request that was upgraded.** Twisted's ``HTTPChannel`` registers itself as
  the TCP connection's producer and stays registered after Daphne hands the connection
  to the WebSocket protocol, keeping the channel, the request, its headers and body
  buffer alive for the socket's whole life. After the upgrade the channel
  is mid-request, so its pause and resume never reach the network; releasing it once
  the socket is open changes no behaviour.
* **autobahn's per-socket copies.** autobahn copies 29 factory options onto every
  protocol instance (unless the instance already has them) and keeps the parsed
  handshake (raw request, header dicts, response text) after the socket opens. Here the
  options are read from the factory through the class, and the handshake leftovers are
  dropped once the socket is open (Daphne keeps using ``request.path`` for its access
  log; that stays).
* **Per frame received.** A small client frame is unmasked by :class:`SmallFrameUnmasker`
  instead of autobahn's native masker, whose set-up alone cost more than the work; and
  autobahn's ``message`` event, fired for every message although nothing here listens,
  is skipped (``WebSocketProtocol.onMessageEnd``).
* **Start-up objects.** What importing Django, Twisted and the app built is frozen out of
  the cyclic collector's way before serving (``Server.run``).

Each replaced internal is a patch listed in ``realtime.accel``, applied by
:func:`main` only on the Daphne, autobahn and Twisted releases it was written for
(``REALTIME_ACCEL=0``: none; then this is Daphne's server, with only the freeze).

HTTP requests are served exactly as by Daphne.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import struct
import sys
import time
from concurrent.futures import CancelledError
from functools import partial
from typing import Any

from autobahn.websocket import protocol as autobahn_protocol
from autobahn.websocket import xormasker as autobahn_xormasker
from autobahn.websocket.types import ConnectionDeny
from daphne import cli as daphne_cli
from daphne import server as daphne_server
from daphne import ws_protocol as daphne_ws
from twisted.internet import tcp
from twisted.web import http

from realtime import accel
from realtime.wire import Wire

#: Daphne's logger: the checker's warnings and errors read as Daphne's own.
daphne_logger = logging.getLogger("daphne.server")

#: FIN bit plus opcode 9 (ping); servers do not mask (RFC 6455 5.5.2).
_PING = 0x89


class InputQueue:
    """A connection's ASGI input: ``asyncio.Queue``'s ``put_nowait`` and ``get`` for one reader.

    ASGI has one ``receive`` caller per connection; a second concurrent ``get`` is a bug
    in the application and raises instead of silently waiting forever.
    """

    __slots__ = ("_items", "_head", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._head = 0
        self._waiter: asyncio.Future[None] | None = None

    def qsize(self) -> int:
        return len(self._items) - self._head

    def empty(self) -> bool:
        return self._head == len(self._items)

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while self._head == len(self._items):
            if self._waiter is not None:
                raise RuntimeError("InputQueue.get: another receive() is already waiting")
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        items = self._items
        item = items[self._head]
        self._head += 1
        if self._head == len(items):
            items.clear()
            self._head = 0
        else:
            items[self._head - 1] = None  # do not keep a consumed message alive
        return item


class _FromFactory:
    """A protocol option read from the factory (autobahn then keeps no per-socket copy).

    A non-data descriptor: an instance may still set its own value, as autobahn allows.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return getattr(instance.factory, self.name)


# Below this many bytes a client frame is unmasked with Python's integers rather than
# autobahn's native NVX masker, whose per-frame set-up costs more than unmasking a chat
# message or a ping; above it NVX's SIMD loop wins (figures: docs/performance.md).
SMALL_FRAME_BYTES = 1024


class SmallFrameUnmasker:
    """autobahn's XOR masker interface (``process``, ``pointer``, ``reset``) for small payloads.

    Stateful like autobahn's: a frame's payload may arrive in several pieces, each
    continuing the mask where the previous stopped (RFC 6455 5.3).
    """

    __slots__ = ("_mask", "_ptr")

    def __init__(self, mask: bytes) -> None:
        self._mask = bytes(mask)
        self._ptr = 0

    def pointer(self) -> int:
        return self._ptr

    def reset(self) -> None:
        self._ptr = 0

    def process(self, data: bytes) -> bytes:
        n = len(data)
        if not n:
            return b""
        shift = self._ptr & 3
        mask = self._mask[shift:] + self._mask[:shift]
        self._ptr += n
        key = (mask * (n // 4 + 1))[:n]
        return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


# autobahn's own factory, from the module that defines it (never patched).
_autobahn_create_xor_masker = autobahn_xormasker.create_xor_masker


def create_xor_masker(mask: bytes, length: int | None = None) -> Any:
    """autobahn's factory, with :class:`SmallFrameUnmasker` for payloads under SMALL_FRAME_BYTES."""
    if length is not None and length < SMALL_FRAME_BYTES:
        return SmallFrameUnmasker(mask)
    return _autobahn_create_xor_masker(mask, length)


def install_form_parse_off() -> None:
    """Patch ``form_parse_off`` (realtime.accel): Twisted leaves request bodies to the application.

    Twisted's ``Request.requestReceived`` reads a whole ``multipart/form-data`` or
    urlencoded body into memory and parses it into ``request.args``, which Daphne never
    reads (it hands the body to Django, which parses it itself, streaming files to disk).
    For an upload of UPLOAD_MAX_BYTES that is the whole file in memory, twice, and a
    malformed body got a bare 400 from Twisted before Django could answer.
    """
    from daphne.http_protocol import WebRequest

    original = WebRequest.__init__
    if getattr(original, "form_parse_off", False):
        return  # installed already (accel.reinstall after a fork)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._parsePOSTFormSubmission = False

    __init__.form_parse_off = True  # type: ignore[attr-defined]
    WebRequest.__init__ = __init__


def install_xor_masker() -> None:
    """Patch ``xor_masker`` (realtime.accel): autobahn's frame parser uses :func:`create_xor_masker`.

    The parser looks the factory up in its module on every frame, so this is module-wide:
    for every autobahn protocol of the process. The masks are the same bytes either way
    (tests/realtime/test_server.py, and autobahn's own tests in make conformance).
    """
    autobahn_protocol.create_xor_masker = create_xor_masker


class _Requested:
    """What Daphne still reads of the handshake request once the socket is open."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


# The handshake as autobahn parsed it: read while opening (server side) and never after.
_HANDSHAKE_LEFTOVERS = (
    "http_headers",
    "http_request_data",
    "http_response_data",
    "http_request_params",
    "http_status_line",
    "http_request_host",
    "http_request_uri",
    "http_request_path",
    "websocket_origin",
    "websocket_protocols",
    "websocket_extensions",
    "_wskey",
)


class WebSocketProtocol(daphne_ws.WebSocketProtocol):
    """Daphne's WebSocket protocol, without per-socket copies of what it no longer reads.

    As defined here it is Daphne's exactly; the ``install_*`` functions below (patches of
    realtime.accel) give it its lean parts.
    """

    def open_and_release_handshake(self) -> None:
        """Daphne's ``onOpen``, then :meth:`release_handshake` (patch ``handshake_release``)."""
        super().onOpen()
        self.release_handshake()

    def lean_on_message_end(self) -> None:
        """autobahn's, without firing its ``message`` event when nothing listens for it.

        autobahn hands every message to ``onMessage`` (Daphne's, which queues it for the
        application) and then also fires a ``message`` event for listeners registered
        with ``protocol.on("message", ...)``: a gathered Deferred, stored, with callbacks,
        per message, a measurable share of a ping round trip (bench/fanout S1). Nothing
        here registers one; if anything does, autobahn's own method runs.
        """
        listeners = self._listeners
        if (listeners and listeners.get("message")) or self._parent is not None or self.trackedTimings:
            super().onMessageEnd()
            return
        if not self.failedByMe:
            self._onMessage(b"".join(self.message_data), self.message_is_binary)
        self.message_data = None

    def direct_auto_ping(self) -> None:
        """autobahn's ``_sendAutoPing``, with the ping frame written as broadcast frames are (realtime.wire).

        Daphne pings every open socket every ``--ping-interval`` seconds. Through
        autobahn's ``sendFrame`` each ping armed and disarmed an epoll writer (Twisted's
        ``write``), about a quarter of a millisecond: with 5,000 idle sockets, 7 % of a core
        only for pings. The payload (send time, sequence number, random tail) and the pong
        timeout are autobahn's; a socket the direct write cannot take (not open, autobahn
        holding frames of its own, frame logging on) goes through ``sendFrame`` as before.
        """
        self.autoPingPendingCall = None
        self.autoPingPendingSent = time.time_ns()
        self.autoPingPendingSeq += 1
        payload = struct.pack(">QL", self.autoPingPendingSent, self.autoPingPendingSeq) + os.urandom(
            self.autoPingSize - 12)
        self.autoPingPending = payload
        if self.state == self.STATE_OPEN:
            direct = not self.logFrames and not self.trackedTimings and len(payload) <= 125
            if not (direct and Wire(self.server, self).write(bytes((_PING, len(payload))) + payload)):
                self.sendFrame(opcode=9, payload=payload)
        if self.autoPingTimeout:
            self.autoPingTimeoutCall = self.factory._batched_timer.call_later(
                self.autoPingTimeout, self.onAutoPingTimeout)

    def handle_reply_with_denial(self, message: dict[str, Any]) -> None:
        """Daphne's ``handle_reply``, plus ASGI's denial response before accept.

        ``websocket.http.response.start`` (status and headers) then
        ``websocket.http.response.body`` refuse the handshake with that status and those
        headers (realtime.handshake's 503 + ``Retry-After``); Daphne alone can only
        refuse with 403. The body is not sent (autobahn's error response has none).

        A ``websocket.send`` once the close handshake began is dropped, as Daphne drops a
        reply to a connection that is gone: autobahn raises ``Disconnected`` for it, and the
        application (a reply crossing the client's close) took that for its own failure (an
        error logged and reported per frame; bench/reconnect.py's mass cut showed them).
        """
        kind = message.get("type")
        if kind == "websocket.send" and self.state in (self.STATE_CLOSING, self.STATE_CLOSED):
            return
        if kind == "websocket.http.response.start" and self.state == self.STATE_CONNECTING:
            headers = [(bytes(k).decode("latin-1"), bytes(v).decode("latin-1")) for k, v in message.get("headers", ())]
            self._denial = (int(message["status"]), headers)
            return
        if kind == "websocket.http.response.body" and self.__dict__.get("_denial") is not None:
            if message.get("more_body") or self.state != self.STATE_CONNECTING:
                return
            status = self._denial[0]
            reason = http.RESPONSES.get(status, b"Refused").decode("latin-1")
            self.handshake_deferred.errback(ConnectionDeny(code=status, reason=reason))
            del self.handshake_deferred
            self.server.protocol_disconnected(self)
            return
        daphne_ws.WebSocketProtocol.handle_reply(self, message)

    def fail_handshake_with_headers(self, reason: str, code: int = 400, responseHeaders: Any = None) -> None:
        """autobahn's ``failHandshake``, with the headers of a denial response (see above)."""
        denial = self.__dict__.get("_denial")
        if responseHeaders is None and denial is not None and denial[0] == code:
            responseHeaders = denial[1]
        daphne_ws.WebSocketProtocol.failHandshake(self, reason, code, responseHeaders)

    def release_handshake(self) -> None:
        """Drop the upgraded HTTP request and autobahn's parsed handshake (see the module doc)."""
        transport = self.transport
        if isinstance(transport, tcp.Connection) and isinstance(getattr(transport, "producer", None), http.HTTPChannel):
            transport.unregisterProducer()
        request = self.__dict__.get("request")
        if request is not None:
            self.request = _Requested(request.path)
        for name in _HANDSHAKE_LEFTOVERS:
            self.__dict__.pop(name, None)


def install_auto_ping() -> None:
    """Patch ``auto_ping`` (realtime.accel): :meth:`WebSocketProtocol.direct_auto_ping`."""
    WebSocketProtocol._sendAutoPing = WebSocketProtocol.direct_auto_ping


def install_app_checker() -> None:
    """Patch ``app_checker`` (realtime.accel): :meth:`Server.lean_application_checker`."""
    Server.application_checker = Server.lean_application_checker


def install_timeout_checker() -> None:
    """Patch ``timeout_checker`` (realtime.accel): :meth:`Server.lean_timeout_checker`."""
    Server.timeout_checker = Server.lean_timeout_checker


def install_denial_response() -> None:
    """Patch ``denial_response`` (realtime.accel): :meth:`WebSocketProtocol.handle_reply_with_denial`."""
    WebSocketProtocol.handle_reply = WebSocketProtocol.handle_reply_with_denial
    WebSocketProtocol.failHandshake = WebSocketProtocol.fail_handshake_with_headers


def install_on_message_end() -> None:
    """Patch ``on_message_end`` (realtime.accel): :meth:`WebSocketProtocol.lean_on_message_end`."""
    WebSocketProtocol.onMessageEnd = WebSocketProtocol.lean_on_message_end


def install_handshake_release() -> None:
    """Patch ``handshake_release`` (realtime.accel): drop the handshake once a socket is open."""
    WebSocketProtocol.onOpen = WebSocketProtocol.open_and_release_handshake


def install_factory_options() -> None:
    """Patch ``factory_options`` (realtime.accel): autobahn's options read from the factory.

    autobahn copies each of ``CONFIG_ATTRS`` onto a new protocol unless the protocol
    already has it; a descriptor on the class makes it "have" them all.
    """
    for name in WebSocketProtocol.CONFIG_ATTRS:
        setattr(WebSocketProtocol, name, _FromFactory(name))


#: The patches that live on WebSocketProtocol: with none in force, Daphne's class serves.
PROTOCOL_PATCHES = ("on_message_end", "handshake_release", "factory_options", "denial_response", "auto_ping")


class Server(daphne_server.Server):
    """Daphne's server with :class:`WebSocketProtocol` and :class:`InputQueue` for WebSockets."""

    #: Daphne's timeout checker runs every this many seconds (``Server.run``'s callLater).
    TIMEOUT_TICK = 2

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._app_due: set[Any] = set()  # connections the application checker looks at next (``app_checker``)
        # The timeout checker's (``timeout_checker``): connections checked every tick, and
        # open WebSockets filed under the number of the tick that checks them next.
        self._ticking: set[Any] = set()
        self._wheel: dict[int, set[Any]] = {}
        self._tick = -1  # the last tick number done: (time - _tick_origin) // TIMEOUT_TICK
        self._tick_origin: float | None = None

    @property
    def ws_factory(self) -> Any:
        try:
            return self.__dict__["ws_factory"]
        except KeyError:  # before run(), as on Daphne's own Server
            raise AttributeError("ws_factory") from None

    @ws_factory.setter
    def ws_factory(self, factory: Any) -> None:
        # Daphne.run builds its factory and then only configures it: every protocol it
        # builds from here on is ours (when a patch of ours is on it).
        if any(accel.active(name) for name in PROTOCOL_PATCHES):
            factory.protocol = WebSocketProtocol
        self.__dict__["ws_factory"] = factory

    def run(self) -> None:
        """Daphne's ``run``, once what start-up built is out of the cyclic collector's way.

        Django, Twisted, autobahn and the application are imported by now: objects that
        live as long as the process. Every full collection walked them all, a stall for
        every socket of the process while many sockets join (bench/fanout). Frozen
        (``gc.freeze``, after collecting what start-up left behind), they are no longer
        walked, and those collections got shorter (docs/performance.md has the figures).
        Only objects alive now are frozen; sockets and everything built for them later
        are collected as before.
        """
        gc.collect()
        gc.freeze()
        super().run()

    # --- the timeout checker (patch ``timeout_checker``) ----------------------------------

    def protocol_connected(self, protocol: Any) -> None:
        """Daphne's, and (patch ``timeout_checker``) the connection is checked from the next tick."""
        super().protocol_connected(protocol)
        if accel.active("timeout_checker"):
            self._ticking.add(protocol)

    def _timeouts_due(self, protocol: Any) -> float:
        """When an open WebSocket's ``check_timeouts`` next has something to do: its ping, or its end of life."""
        due = protocol.last_ping + self.ping_interval
        if self.websocket_timeout >= 0:
            due = min(due, protocol.socket_opened + self.websocket_timeout)
        return due

    def _check_open(self, protocol: Any) -> None:
        """Check one connection (Daphne's ``check_timeouts``) and file it for its next check."""
        protocol.check_timeouts()
        if isinstance(protocol, daphne_ws.WebSocketProtocol) and protocol.state == protocol.STATE_OPEN:
            # The first tick strictly after the due time (ticks are numbered by the clock,
            # below): never early, as Daphne's checks are strict.
            slot = int((self._timeouts_due(protocol) - self._tick_origin) // self.TIMEOUT_TICK) + 1
            slot = max(slot, self._tick + 1)
            self._wheel.setdefault(slot, set()).add(protocol)
            protocol._timeout_slot = slot
        else:
            self._ticking.add(protocol)

    def lean_timeout_checker(self) -> None:
        """Daphne's ``timeout_checker``, for the connections that may be due (patch ``timeout_checker``).

        Daphne calls every connection's ``check_timeouts`` every 2 s: with 16,000 idle
        sockets in a process, a tenth of its CPU, for a ping due every 20 s each (bench/fanout
        S6). An open WebSocket's checks only act at times known in advance: its ping
        (``last_ping + ping_interval``; ``last_ping`` only moves later) and its end of life
        (``socket_opened + websocket_timeout``). Such a connection is filed under the first
        tick after the earliest of them and checked then, by Daphne's own ``check_timeouts``
        (and filed again if a frame moved its ``last_ping`` meanwhile). Every other
        connection (HTTP, a handshake in progress, a closing socket) is checked every tick,
        as Daphne does. Ticks are numbered by the clock (2 s from the first), so a reactor
        that runs late does every tick number it passed at once: a ping or close goes out at
        the tick Daphne's walk would send it, or at the next one when the reactor ran late.
        """
        now = time.time()
        if self._tick_origin is None:
            self._tick_origin = now
        # A hair over, so a tick that runs exactly on time is not taken for the one before.
        tick = int((now - self._tick_origin) / self.TIMEOUT_TICK + 1e-6)
        done, self._tick = self._tick, max(self._tick, tick)
        connections = self.connections
        ticking = list(self._ticking)  # what the wheel hands over below is checked from the next tick
        self._ticking.clear()
        for slot in range(done + 1, tick + 1):
            for protocol in self._wheel.pop(slot, ()):
                del protocol._timeout_slot
                if protocol in connections:
                    self._check_open(protocol)
        for protocol in ticking:
            if protocol in connections:
                self._check_open(protocol)
        daphne_server.reactor.callLater(self.TIMEOUT_TICK, self.timeout_checker)

    # --- the application checker (patch ``app_checker``) ----------------------------------

    def protocol_disconnected(self, protocol: Any) -> None:
        """Daphne's, and the connection is due for the next check of the application checker (patch
        ``app_checker``) and of the timeout checker (``timeout_checker``: until it is reaped, as Daphne does)."""
        super().protocol_disconnected(protocol)
        if accel.active("app_checker"):
            self._app_due.add(protocol)
        if accel.active("timeout_checker"):
            slot = protocol.__dict__.pop("_timeout_slot", None)
            if slot is not None:
                self._wheel[slot].discard(protocol)
            self._ticking.add(protocol)

    def _watch(self, protocol: Any) -> None:
        """Make the connection due for a check when its application instance ends."""
        details = self.connections.get(protocol)
        instance = details.get("application_instance") if details else None
        if instance is not None:
            due = self._app_due
            instance.add_done_callback(lambda _done: due.add(protocol))

    def lean_application_checker(self) -> None:
        """Daphne's ``application_checker``, for the connections that need it (patch ``app_checker``).

        Daphne walks every connection every second to find the few whose application
        ended or whose socket closed: with 16,000 idle sockets in a process, a third of its
        CPU (bench/fanout S6). A connection is due here when its socket disconnects or its
        application instance ends (a done callback); the checks, warnings, logs and
        removals of each due connection are Daphne's, and one still waiting for its
        application after a disconnect is looked at again each second, as Daphne does.
        """
        due = self._app_due
        todo = list(due)
        due.clear()
        now = time.time()
        for protocol in todo:
            details = self.connections.get(protocol)
            if details is None:
                continue
            disconnected = details.get("disconnected", None)
            instance = details.get("application_instance", None)
            if disconnected and now - disconnected > self.application_close_timeout:
                if instance and not instance.done():
                    daphne_logger.warning(
                        "Application instance %r for connection %s took too long to shut down and was killed.",
                        instance, repr(protocol))
                    instance.cancel()
            if instance and instance.done():
                try:
                    exception = instance.exception()
                except (CancelledError, asyncio.CancelledError):
                    pass
                else:
                    if exception:
                        if isinstance(exception, KeyboardInterrupt):
                            self.stop()
                        else:
                            daphne_logger.error("Exception inside application: %s", exception, exc_info=exception)
                            if not disconnected:
                                protocol.handle_exception(exception)
                del details["application_instance"]
                instance = None
            if not instance and disconnected:
                del self.connections[protocol]
            elif disconnected:
                due.add(protocol)  # its application is still closing: again in a second
        daphne_server.reactor.callLater(1, self.application_checker)

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        """Daphne's ``create_application``, with an :class:`InputQueue` for WebSockets (patch
        ``input_queue``); the instance is watched for its end (patch ``app_checker``)."""
        queue = self._create_application(protocol, scope)
        if accel.active("app_checker"):
            self._watch(protocol)
        return queue

    def _create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        if scope.get("type") != "websocket" or not accel.active("input_queue"):
            return super().create_application(protocol, scope)
        assert "application_instance" not in self.connections[protocol]
        input_queue = InputQueue()
        scope.setdefault("asgi", {"version": "3.0"})
        application_instance = self.application(
            scope=scope,
            receive=input_queue.get,
            send=partial(self.handle_reply, protocol),
        )
        if protocol not in self.connections:
            return None
        self.connections[protocol]["application_instance"] = asyncio.ensure_future(
            application_instance, loop=asyncio.get_event_loop()
        )
        return input_queue


class CommandLineInterface(daphne_cli.CommandLineInterface):
    """Daphne's command line, serving with :class:`Server`."""

    server_class = Server


def main(argv: list[str] | None = None) -> None:
    """Daphne's command line with :class:`Server`, once the patches that fit are installed."""
    accel.install()
    CommandLineInterface().run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    # Run the classes of ``realtime.server`` (not copies defined in ``__main__``).
    from realtime.server import main as _main

    _main()
