"""deploy/netproxy.py: the one TCP proxy of the tests and the region simulator, against real sockets.

An echo server stands in for the upstream; each test proves that a fault is real (a
delay is paid, a cut resets, a blackhole forwards nothing) and that it can be lifted.
"""

from __future__ import annotations

import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from deploy.netproxy import Link, Proxy
from tests.services import ROOT, free_port


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo() -> Iterator[int]:
    """A TCP echo server on 127.0.0.1: its port."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(echo: int) -> Iterator[Proxy]:
    p = Proxy(upstream_port=echo).start()
    yield p
    p.stop()


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def test_delay_is_paid_each_way_and_a_burst_keeps_its_spacing(proxy: Proxy) -> None:
    """With 100 ms each way a round trip takes 200 ms or more, and 20 chunks sent together
    come back about one round trip later, not 20 delays later (a delay line, not a queue)."""
    with _connect(proxy.port) as sock:
        sock.sendall(b"warm")
        assert _recv_exactly(sock, 4) == b"warm"
        proxy.delay = 0.1
        start = time.monotonic()
        sock.sendall(b"ping")
        assert _recv_exactly(sock, 4) == b"ping"
        assert time.monotonic() - start >= 0.2
        start = time.monotonic()
        for i in range(20):
            sock.sendall(b"%02d" % i)
            time.sleep(0.005)
        assert _recv_exactly(sock, 40) == b"".join(b"%02d" % i for i in range(20))
        assert 0.2 <= time.monotonic() - start < 1.0
        proxy.delay = 0.0
        start = time.monotonic()
        sock.sendall(b"fast")
        assert _recv_exactly(sock, 4) == b"fast"
        assert time.monotonic() - start < 0.2  # below one delayed round trip


def test_cut_resets_every_connection_and_new_ones_pass(proxy: Proxy) -> None:
    """cut() resets both sides of every open connection; the next connection works."""
    socks = [_connect(proxy.port) for _ in range(2)]
    for sock in socks:
        sock.sendall(b"x")
        assert _recv_exactly(sock, 1) == b"x"
    assert proxy.cut() == 4  # two clients, two upstream sockets
    for sock in socks:
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            sock.sendall(b"y")
            if not sock.recv(1):
                raise ConnectionResetError("closed")
        sock.close()
    with _connect(proxy.port) as sock:
        sock.sendall(b"z")
        assert _recv_exactly(sock, 1) == b"z"
    assert proxy.connections == 3


def test_blackhole_forwards_nothing_and_resets_nothing(proxy: Proxy) -> None:
    """While blackholed, bytes vanish and the connection stays open; afterwards it carries data again."""
    with _connect(proxy.port) as sock:
        proxy.blackhole = True
        sock.sendall(b"lost")
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(16)
        proxy.blackhole = False
        sock.settimeout(5)
        sock.sendall(b"back")
        assert _recv_exactly(sock, 4) == b"back"


def test_websocket_upgrades_get_403_and_plain_http_passes(echo: int) -> None:
    """block_upgrades answers an Upgrade: websocket request itself and forwards other requests."""
    p = Proxy(upstream_port=echo, block_upgrades=True).start()
    try:
        with _connect(p.port) as sock:
            sock.sendall(b"GET /ws/ HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 403 ")
        plain = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        with _connect(p.port) as sock:
            sock.sendall(plain)
            assert _recv_exactly(sock, len(plain)) == plain  # the echo upstream got it
        assert p.upgrades_blocked == 1
    finally:
        p.stop()


def test_a_dead_upstream_resets_the_client_after_one_round_trip() -> None:
    """Nothing listens upstream: the client's connection is reset, one round trip (2 × delay) later."""
    p = Proxy(upstream_port=free_port(), delay=0.15).start()
    try:
        with _connect(p.port) as sock:
            start = time.monotonic()
            try:
                assert sock.recv(1) == b""
            except ConnectionResetError:
                pass
            assert time.monotonic() - start >= 0.3
    finally:
        p.stop()


def test_link_spec_of_the_command_line() -> None:
    """LISTEN:UPSTREAM:ONE_WAY_MS[:NAME] gives the link; anything else is refused."""
    link = Link.parse("9001:9002:35:user-a")
    assert (link.port, link.upstream_port, link.delay, link.name) == (9001, 9002, 0.035, "user-a")
    with pytest.raises(ValueError):
        Link.parse("9001:9002")


def test_command_line_serves_its_links_and_stops_on_sigterm(echo: int) -> None:
    """The CLI (deploy/simulate_regions.py runs it) says ready, delays, and exits at once on SIGTERM."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "deploy/netproxy.py", f"{port}:{echo}:50:test"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith(f"link test :{port} -> :{echo} +50 ms")
        assert proc.stdout.readline() == "ready\n"
        with _connect(port) as sock:
            start = time.monotonic()
            sock.sendall(b"hi")
            assert _recv_exactly(sock, 2) == b"hi"
            assert time.monotonic() - start >= 0.1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    finally:
        proc.kill()
        proc.wait()
