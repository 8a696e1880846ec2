"""realtime.server: the project's Daphne keeps Daphne's behaviour with less per socket.

The lean parts must not change what a socket does: the input queue delivers every
message once and in order to its one reader; the WebSocket protocol still enforces the
configured frame limit (its options are now read from the factory) and still logs its
path; once a socket is open nothing of the upgraded HTTP request is kept; and a client
frame is unmasked to exactly the bytes autobahn's own masker gives, whatever its size and
however it arrives. The socket-level guarantees are checked inside a real server process
(``PROBE`` below), not by inspecting classes.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from realtime import accel
from realtime.server import SMALL_FRAME_BYTES, InputQueue, SmallFrameUnmasker, create_xor_masker
from tests import services

ROOT = Path(__file__).resolve().parents[2]


async def test_input_queue_delivers_in_order_what_was_put_before_and_while_waiting() -> None:
    """Queued messages come out first, in order; a waiting reader is woken by the next put."""
    queue = InputQueue()
    queue.put_nowait(1)
    queue.put_nowait(2)
    assert [await queue.get(), await queue.get()] == [1, 2]
    assert queue.empty()
    reader = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    assert not reader.done()
    queue.put_nowait(3)
    queue.put_nowait(4)
    assert await reader == 3
    assert await queue.get() == 4
    assert queue.qsize() == 0


async def test_input_queue_keeps_no_consumed_message_and_survives_a_cancelled_reader() -> None:
    """A consumed message is not held by the queue; a cancelled get leaves it usable."""
    queue = InputQueue()
    for i in range(3):
        queue.put_nowait({"n": i})
    assert (await queue.get())["n"] == 0
    assert queue._items[0] is None and queue.qsize() == 2
    await queue.get()
    await queue.get()
    assert queue._items == []
    reader = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    queue.put_nowait("after")
    assert await queue.get() == "after"


async def test_input_queue_refuses_a_second_concurrent_reader() -> None:
    """ASGI has one receive() caller; a second one waiting would be an application bug."""
    queue = InputQueue()
    first = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError):
        await queue.get()
    queue.put_nowait("x")
    assert await first == "x"


def _xor(data: bytes, mask: bytes) -> bytes:
    """RFC 6455 5.3, byte by byte: the reference."""
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data))


@pytest.mark.parametrize("length", [0, 1, 3, 4, 5, 125, 126, 127, 128, 300, SMALL_FRAME_BYTES - 1])
def test_small_frames_unmask_to_the_rfc_bytes_in_any_number_of_pieces(length: int) -> None:
    """A payload split anywhere (frames arrive in pieces) unmasks to what RFC 6455 says, and
    the masker's pointer counts the bytes, as autobahn's frame parser expects."""
    rng = random.Random(length)
    for _ in range(20):
        mask, data = os.urandom(4), os.urandom(length)
        cuts = sorted(rng.sample(range(length + 1), min(3, length + 1)))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, length], strict=True)]
        masker = SmallFrameUnmasker(mask)
        out = b""
        for piece in pieces:
            out += masker.process(piece)
        assert out == _xor(data, mask)
        assert masker.pointer() == length
        masker.reset()
        assert masker.pointer() == 0


def test_autobahn_uses_the_small_frame_unmasker_only_below_the_threshold() -> None:
    """Once realtime.accel installed it, autobahn's parser gets SmallFrameUnmasker below the
    threshold and autobahn's own masker, with the same bytes out, from it on."""
    from autobahn.websocket import protocol as autobahn_protocol

    assert accel.active("xor_masker")
    assert autobahn_protocol.create_xor_masker is create_xor_masker
    mask = os.urandom(4)
    assert isinstance(create_xor_masker(mask, SMALL_FRAME_BYTES - 1), SmallFrameUnmasker)
    big = create_xor_masker(mask, SMALL_FRAME_BYTES)
    assert not isinstance(big, SmallFrameUnmasker)
    data = os.urandom(5000)
    assert big.process(data) == _xor(data, mask)


# A real realtime.server.Server with an echo app; a client thread opens two sockets and
# the reactor thread reports what the server holds for them (JSON on stdout).
PROBE = textwrap.dedent(
    """
    import asyncio, gc, json, sys, threading
    from twisted.internet import asyncioreactor
    asyncioreactor.install(asyncio.new_event_loop())
    from twisted.internet import reactor
    from twisted.web import http
    from autobahn.websocket import protocol as autobahn_protocol
    from daphne.ws_protocol import WebSocketProtocol
    from realtime.server import Server

    async def app(scope, receive, send):
        while True:
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
            elif message["type"] == "websocket.receive":
                text = message.get("text")
                if text is None:
                    text = "binary" if message["bytes"] == b"\\x00\\xff" * 100 else "bad binary"
                await send({"type": "websocket.send", "text": text})
            else:
                return

    port = int(sys.argv[1])
    server = Server(app, endpoints=[f"tcp:port={port}:interface=127.0.0.1"], verbosity=0,
                    websocket_max_frame_size=1000, websocket_max_message_size=1000)
    result = {}

    def client():
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect
        import time
        for _ in range(100):
            try:
                ws = connect(f"ws://127.0.0.1:{port}/probe/path/?q=1", open_timeout=2)
                break
            except OSError:
                time.sleep(0.1)
        other = connect(f"ws://127.0.0.1:{port}/probe/path/", open_timeout=2)
        ws.send("hello")
        result["echo"] = ws.recv(timeout=5)
        sizes = [1, 125, 126, 700, 999]  # unmasked by SmallFrameUnmasker or, the biggest, by autobahn
        echoed = []
        for n in sizes:
            text = "".join(chr(0x41 + (i * 7 + n) % 26) for i in range(n))
            ws.send(text)
            echoed.append(ws.recv(timeout=5) == text)
        ws.send(b"\\x00\\xff" * 100)
        echoed.append(ws.recv(timeout=5) == "binary")
        result["echoed"] = echoed
        # Daphne forgets the upgraded request itself on its next application check (every second).
        time.sleep(2.5)
        done = threading.Event()

        def inspect():
            gc.collect()
            sockets = [p for p in server.connections if isinstance(p, WebSocketProtocol)]
            result["sockets"] = len(sockets)
            result["producers"] = [repr(p.transport.producer) for p in sockets]
            result["http_channels_alive"] = sum(isinstance(o, http.HTTPChannel) for o in gc.get_objects())
            result["leftovers"] = sorted({k for p in sockets for k in vars(p) if k.startswith("http_")})
            result["paths"] = [p.request.path for p in sockets]
            options = WebSocketProtocol.CONFIG_ATTRS
            result["option_copies"] = sorted({k for p in sockets for k in options if k in vars(p)})
            result["max_frame"] = [p.maxFramePayloadSize for p in sockets]
            result["frozen"] = gc.get_freeze_count()
            result["protocol"] = sorted({f"{type(p).__module__}.{type(p).__name__}" for p in sockets})
            result["queues"] = sorted({type(p.application_queue).__name__ for p in sockets})
            result["on_message_end"] = sorted({type(p).onMessageEnd.__qualname__ for p in sockets})
            result["masker"] = autobahn_protocol.create_xor_masker.__module__
            done.set()

        reactor.callFromThread(inspect)
        done.wait(10)
        ws.send("x" * 5000)
        try:
            ws.recv(timeout=5)
            result["oversize_close"] = None
        except ConnectionClosed as exc:
            result["oversize_close"] = exc.rcvd.code if exc.rcvd else 1006
        other.send("still here")
        result["other_echo"] = other.recv(timeout=5)
        other.close()
        reactor.callFromThread(reactor.stop)

    threading.Thread(target=client, daemon=True).start()
    server.run()
    print(json.dumps(result))
    """
)


def _probe(**env: str) -> dict:
    port = services.free_port()
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(port)], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env=services.app_env(**env),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["echo"] == "hello"
    # Text frames either side of SMALL_FRAME_BYTES (the limit is 1000) and a binary one come back whole.
    assert result["echoed"] == [True] * 6
    assert result["sockets"] == 2
    assert result["paths"] == ["/probe/path/", "/probe/path/"]
    assert result["max_frame"] == [1000, 1000]
    # The limit is enforced: 1009 "message too big" (or a dropped connection), the other socket unaffected.
    assert result["oversize_close"] in (1009, 1006)
    assert result["other_echo"] == "still here"
    # What start-up built was frozen before serving (full collections skip it), patched or not.
    assert result["frozen"] > 10_000
    return result


def test_open_sockets_keep_no_upgraded_request_and_keep_daphnes_limits() -> None:
    """Inside a running realtime.server: echo works, the frame limit holds, no HTTP request is kept,
    and start-up's objects are frozen out of the collector's way."""
    result = _probe()
    assert result["protocol"] == ["realtime.server.WebSocketProtocol"]
    assert result["queues"] == ["InputQueue"]
    assert result["on_message_end"] == ["WebSocketProtocol.lean_on_message_end"]
    assert result["masker"] == "realtime.server"
    # The upgraded HTTPChannel is no longer the connection's producer, and none is alive.
    assert result["producers"] == ["None", "None"]
    assert result["http_channels_alive"] == 0
    assert result["leftovers"] == []
    # autobahn kept no per-socket copies of the options, and still reads the configured limit.
    assert result["option_copies"] == []


def test_with_realtime_accel_0_the_server_runs_daphnes_and_autobahns_own_code() -> None:
    """REALTIME_ACCEL=0: the same server behaves the same on the wire, through stock code only:
    Daphne's protocol and asyncio.Queue, autobahn's masker, onMessageEnd and per-socket option
    copies, and the upgraded request kept as Twisted and autobahn keep it."""
    result = _probe(REALTIME_ACCEL="0")
    assert result["protocol"] == ["daphne.ws_protocol.WebSocketProtocol"]
    assert result["queues"] == ["Queue"]
    assert result["on_message_end"] == ["WebSocketProtocol.onMessageEnd"]
    assert result["masker"] != "realtime.server"
    assert result["producers"] != ["None", "None"]
    assert "http_headers" in result["leftovers"]
    assert "maxFramePayloadSize" in result["option_copies"]


def test_a_reply_that_crosses_the_clients_close_is_dropped_not_raised_into_the_application() -> None:
    """Nothing crashes on a client's close: a ``websocket.send`` once the close handshake began
    is dropped (as Daphne drops one for a connection already gone), where autobahn raised
    ``Disconnected`` into the consumer's handler, which reported it as its own internal error."""
    from autobahn.exception import Disconnected
    from daphne import ws_protocol as daphne_ws

    from realtime.server import WebSocketProtocol

    protocol = WebSocketProtocol.__new__(WebSocketProtocol)
    protocol.client_addr = ["127.0.0.1", 50000]
    for state in (WebSocketProtocol.STATE_CLOSING, WebSocketProtocol.STATE_CLOSED):
        protocol.state = state
        with pytest.raises(Disconnected):  # what Daphne's own handle_reply does
            daphne_ws.WebSocketProtocol.handle_reply(protocol, {"type": "websocket.send", "text": "late"})
        protocol.handle_reply_with_denial({"type": "websocket.send", "text": "late"})
        protocol.handle_reply_with_denial({"type": "websocket.send", "bytes": b"late"})


async def test_the_application_checker_visits_only_connections_that_ended_and_reaps_them_as_daphne_does(
    monkeypatch,
) -> None:
    """Patch ``app_checker``: a connection becomes due when its socket disconnects or its
    application ends. Due ones get Daphne's treatment (an ended one is reaped, a failed one's
    error handed to its protocol, one closed but still running is cancelled after the close
    timeout and removed); an idle open connection is never looked at."""
    from daphne import server as daphne_server

    from realtime import accel
    from realtime.server import Server

    assert accel.active("app_checker")
    monkeypatch.setattr(daphne_server.reactor, "callLater", lambda *args, **kwargs: None)

    class Protocol:
        def __init__(self) -> None:
            self.errors: list[BaseException] = []

        def handle_exception(self, exc: BaseException) -> None:
            self.errors.append(exc)

    class Looked(dict):
        """A connection's details that count how often the checker reads them."""

        reads = 0

        def get(self, *args: Any) -> Any:
            type(self).reads += 1
            return super().get(*args)

    server = Server(application=None, endpoints=["tcp:port=0"])
    server.connections = {}  # made by run()
    server.application_close_timeout = 10
    loop = asyncio.get_running_loop()
    ended, failed, closing, idle = Protocol(), Protocol(), Protocol(), Protocol()
    futures = {p: loop.create_future() for p in (ended, failed, closing, idle)}
    for protocol, future in futures.items():
        server.connections[protocol] = Looked({"connected": 0.0, "application_instance": future})
        server._watch(protocol)
    futures[ended].set_result(None)
    server.protocol_disconnected(ended)
    futures[failed].set_exception(ValueError("boom"))
    server.protocol_disconnected(closing)
    await asyncio.sleep(0)  # done callbacks run on the loop
    Looked.reads = 0
    server.lean_application_checker()
    assert ended not in server.connections
    assert [str(e) for e in failed.errors] == ["boom"] and "application_instance" not in server.connections[failed]
    assert closing in server.connections and not futures[closing].done()
    assert idle in server.connections and "application_instance" in server.connections[idle]
    assert Looked.reads <= 3 * 2  # the three due ones, never the idle one
    server.application_close_timeout = -1  # the close timeout has passed
    server.lean_application_checker()
    assert futures[closing].cancelled()
    await asyncio.sleep(0)
    server.lean_application_checker()
    assert set(server.connections) == {failed, idle}


class _Clock:
    """A settable ``time.time`` for the timeout checkers (Daphne's module and ours read it)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _timeout_run(server_class: Any, monkeypatch, *, sockets: int = 300, seconds: int = 120,
                 lag: float = 0.0) -> dict[str, Any]:
    """Drive one server's timeout checker for ``seconds`` of a fake clock, ticking every 2 s as
    Daphne does (each tick up to ``lag`` s late, the same seeded delays for every run): open
    sockets (some sending frames now and then), one handshake that never ends, one socket
    that closes. What each socket was sent and when, and how often any connection was
    looked at."""
    from daphne import server as daphne_server
    from daphne import ws_protocol as daphne_ws

    clock = _Clock(1_000_000.5)
    monkeypatch.setattr(daphne_ws.time, "time", clock)
    monkeypatch.setattr(daphne_server.time, "time", clock)
    later: list[tuple[float, Any]] = []
    late = random.Random(7)

    def call_later(delay: float, f: Any, *args: Any) -> None:
        later.append((clock.now + delay + late.uniform(0, lag), f))

    monkeypatch.setattr(daphne_server.reactor, "callLater", call_later)

    server = server_class(application=None, endpoints=["tcp:port=0"], ping_interval=20, websocket_timeout=95,
                          websocket_connect_timeout=20)
    server.connections = {}  # made by run()
    checks: list[float] = []  # when a connection was looked at
    events: list[tuple[float, int, str]] = []

    class Socket(daphne_ws.WebSocketProtocol):
        def __init__(self, number: int, state: int) -> None:
            self.server, self.number, self.state = server, number, state
            self.socket_opened = self.last_ping = clock.now

        def check_timeouts(self) -> None:
            checks.append(clock.now)
            super().check_timeouts()

        def _sendAutoPing(self) -> None:
            events.append((clock.now, self.number, "ping"))

        def serverClose(self) -> None:
            events.append((clock.now, self.number, "close"))
            self.state = self.STATE_CLOSING

        def serverReject(self) -> None:
            events.append((clock.now, self.number, "reject"))
            self.state = self.STATE_CLOSED

    sockets_made = []
    for number in range(sockets):
        if number % 50 == 0:
            clock.now += 1.3  # they open over time, not all in one tick
        socket = Socket(number, daphne_ws.WebSocketProtocol.STATE_OPEN)
        server.protocol_connected(socket)
        sockets_made.append(socket)
    handshake = Socket(sockets, daphne_ws.WebSocketProtocol.STATE_CONNECTING)
    server.protocol_connected(handshake)
    clock.now += 0.4
    later.append((clock.now + 2, server.timeout_checker))
    end = clock.now + seconds
    while later and clock.now < end:
        later.sort(key=lambda item: item[0])
        at, call = later.pop(0)
        clock.now = at
        for socket in sockets_made[::7]:  # a frame from some of them moves their last_ping
            if int(at) % 11 == socket.number % 11:
                socket.last_ping = at - 0.7
        if at > 1_000_040 and sockets_made[3] in server.connections:
            sockets_made[3].state = daphne_ws.WebSocketProtocol.STATE_CLOSED
            server.protocol_disconnected(sockets_made[3])
            del server.connections[sockets_made[3]]  # reaped (the application checker)
        call()
    return {"events": sorted(events), "checks": checks, "server": server}


def test_the_timeout_checker_pings_closes_and_rejects_as_daphnes_walk_does_looking_at_due_sockets_only(monkeypatch):
    """Patch ``timeout_checker``: over two minutes of a fake clock, 300 open sockets (some
    sending frames), a handshake that never completes and a socket that closes get exactly the
    pings, end-of-life closes and the reject that Daphne's walk of every connection gives them,
    at the same ticks; the walk looks at every connection every tick, the patched checker at a
    small fraction of that; a closed socket is forgotten by both."""
    from daphne import server as daphne_server

    from realtime.server import Server

    assert accel.active("timeout_checker")
    assert Server.timeout_checker is Server.lean_timeout_checker
    ours = _timeout_run(Server, monkeypatch)
    monkeypatch.undo()
    theirs = _timeout_run(daphne_server.Server, monkeypatch)
    kinds = {kind for _at, _n, kind in theirs["events"]}
    assert kinds == {"ping", "close", "reject"}  # the run exercises each of Daphne's checks
    assert ours["events"] == theirs["events"]
    # While the sockets idle (before their end of life), a socket is looked at about once per ping.
    idle = [at for at, _n, kind in theirs["events"] if kind == "close"][0]
    looked, walked = (sum(1 for at in run["checks"] if at < idle) for run in (ours, theirs))
    assert looked * 6 < walked  # 1,547 against 13,215 when written
    server = ours["server"]
    assert all(protocol in server.connections for slot in server._wheel.values() for protocol in slot)


def test_the_timeout_checker_keeps_pinging_on_time_when_the_reactor_runs_late(monkeypatch):
    """Patch ``timeout_checker``, each tick up to 1.5 s late: no socket waits more than one tick
    longer for its ping than under Daphne's walk (ticks are numbered by the clock, not counted)."""
    from daphne import server as daphne_server

    from realtime.server import Server

    def longest_wait(run: dict[str, Any]) -> float:
        last: dict[int, float] = {}
        wait = 0.0
        for at, number, kind in run["events"]:
            if kind == "ping" and number % 7:  # not one whose frames put its pings off
                if number in last:
                    wait = max(wait, at - last[number])
                last[number] = at
        return wait

    ours = _timeout_run(Server, monkeypatch, lag=1.5, seconds=90)
    monkeypatch.undo()
    theirs = _timeout_run(daphne_server.Server, monkeypatch, lag=1.5, seconds=90)
    assert 20 < longest_wait(theirs) <= 20 + 3.5
    assert longest_wait(ours) <= longest_wait(theirs) + 3.5  # at most one (late) tick more
