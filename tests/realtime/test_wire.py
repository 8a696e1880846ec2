"""realtime.wire: the pre-encoded broadcast frames are the bytes autobahn would send, in order.

The fast path skips autobahn and Twisted's write scheduling, so these tests pin what it
must keep: the frame format (against autobahn's own ``PreparedMessage``), the order of
a socket's frames when the kernel buffer is full and Twisted buffers the rest, and that
under Daphne broadcasts really take the direct path (the metric says which path).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import urllib.request
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from autobahn.websocket.protocol import PreparedMessage
from websockets.asyncio.client import connect

from realtime import wire
from tests import services
from tests.conftest import cookie_header


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
@pytest.mark.parametrize("binary", [False, True])
def test_frames_are_byte_for_byte_what_autobahn_prepares_for_a_server(size: int, binary: bool) -> None:
    """Every length class (7-bit, 16-bit, 64-bit) and both opcodes match autobahn's unmasked frame."""
    payload = bytes(i % 251 for i in range(size))
    expected = PreparedMessage(payload, binary, applyMask=False, doNotCompress=True).payloadHybi
    assert wire.frame(payload, binary) == expected


def test_frame_for_an_asgi_message_encodes_text_as_utf8_and_keeps_bytes() -> None:
    """The hub's ASGI messages (realtime.protocol codecs) become text or binary frames."""
    assert wire.frame_for({"type": "websocket.send", "text": "é"}) == b"\x81\x02" + "é".encode()
    assert wire.frame_for({"type": "websocket.send", "bytes": b"\x01\x02"}) == b"\x82\x02\x01\x02"


def test_sockets_without_a_daphne_send_keep_the_asgi_path() -> None:
    """Long polling and test communicators have no Wire: their frames go through ASGI send."""

    async def send(message: dict[str, Any]) -> None:
        pass

    assert wire.wire_for(send) is None
    assert wire.wire_for(None) is None


def _writes(daphne: Any) -> dict[str, float]:
    with urllib.request.urlopen(f"{daphne.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.findall(r'^realtime_broadcast_writes_total\{[^}]*path="(\w+)"[^}]*\} (\S+)$', text, re.M)
    totals: dict[str, float] = {}
    for path, value in found:
        totals[path] = totals.get(path, 0.0) + float(value)
    return totals


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("accel", ["1", "0"], ids=["direct", "REALTIME_ACCEL=0"])
async def test_a_slow_reader_gets_every_broadcast_once_and_in_order_through_the_direct_path(
    app_env, make_user, lobby, accel: str
) -> None:
    """A member that reads far slower than 7 MB are broadcast fills its kernel buffer; Twisted
    buffers the rest, and later frames queue behind it rather than jumping ahead into the
    space each read frees: the member gets every message exactly once, in seq order (a write
    straight to the kernel while Twisted holds frames fails this). The broadcasts went out
    by the direct path; with REALTIME_ACCEL=0 the same holds with none of them direct."""
    # The burst is the point here: no rate limit, and 25,000-character bodies (a frame carries
    # the body and its rendered html: about 50 KB, under Daphne's 64 KiB message limit), so
    # that 150 messages (7.5 MB) overflow what the kernel buffers for a socket (tcp_wmem max 4 MiB).
    env = {**app_env, "CHAT_RATE_BURST": "1000", "CHAT_RATE_PER_SECOND": "1000", "CHAT_MAX_BODY_CHARS": "25000",
           "REALTIME_ACCEL": accel}
    daphne = services.daphne_service(env).start()
    try:
        await _slow_reader(daphne, make_user, lobby, direct=accel == "1")
    finally:
        daphne.stop()


async def _slow_reader(daphne: Any, make_user: Any, lobby: Any, *, direct: bool) -> None:
    writer_user = await sync_to_async(make_user)("wire-writer")
    reader_user = await sync_to_async(make_user)("wire-reader")
    origin = f"http://127.0.0.1:{daphne.port}"
    headers_w = {"Cookie": await sync_to_async(cookie_header)(writer_user)}
    headers_r = {"Cookie": await sync_to_async(cookie_header)(reader_user)}
    before = _writes(daphne).get("direct", 0.0)
    count, body = 150, "w" * 25000

    async def joined(ws: Any) -> int:
        await ws.recv()  # hello
        await ws.send(json.dumps({"type": "join", "room": lobby.slug}))
        while True:
            event = json.loads(await ws.recv())
            if event["type"] == "joined":
                return event["seq"]

    # A 4 KiB receive buffer, and max_queue=1: the client stops reading its TCP socket
    # while a frame waits unread, so the server's buffers fill.
    small = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    small.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    small.connect(("127.0.0.1", daphne.port))
    small.setblocking(False)
    async with connect(f"{daphne.ws_url}/ws/chat/", origin=origin, additional_headers=headers_r, sock=small,
                       max_queue=1, max_size=2**20) as reader, \
            connect(f"{daphne.ws_url}/ws/chat/", origin=origin, additional_headers=headers_w,
                    max_size=2**20) as writer:
        start = await joined(reader)
        await joined(writer)

        async def read_slowly() -> list[int]:
            # Reads trickle while the burst goes on: the kernel buffer drains a little at a
            # time while Twisted still holds frames, the case where a write could jump the queue.
            seqs: list[int] = []
            while len(seqs) < count:
                event = json.loads(await asyncio.wait_for(reader.recv(), 30))
                if event["type"] == "message":
                    seqs.append(event["seq"])
                    await asyncio.sleep(0.05)
            return seqs

        reading = asyncio.create_task(read_slowly())
        for i in range(count):
            await writer.send(json.dumps({"type": "message", "room": lobby.slug, "body": body, "client_id": f"w{i}"}))
        acked = 0
        while acked < count:  # the writer reads its own broadcasts: all were committed and sent
            event = json.loads(await asyncio.wait_for(writer.recv(), 30))
            acked += event["type"] == "message"
        seqs = await reading
    assert seqs == list(range(start + 1, start + count + 1))
    writes = _writes(daphne)
    if direct:
        assert writes.get("direct", 0.0) - before >= 2 * count
    else:
        assert writes.get("direct", 0.0) == 0 and writes.get("asgi", 0.0) >= 2 * count


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readexactly(2)
    n = head[1] & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await reader.readexactly(8), "big")
    return head[0], await reader.readexactly(n)


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
async def test_auto_pings_are_autobahns_frames_and_a_socket_that_answers_them_stays_open(app_env, make_user) -> None:
    """With a 1 s ping interval and a 3 s pong timeout, a client that answers every ping by
    hand gets ping frames (FIN + opcode 9, autobahn's payload: send time and sequence number,
    in sequence) and is still open after 7 s: each pong matched its ping and cancelled its
    timeout (realtime.server's ``auto_ping`` patch; autobahn's own suite runs against it too)."""
    import base64
    import os
    import struct
    import time

    server = services.daphne_service(app_env, extra_args=("--ping-interval", "1", "--ping-timeout", "3")).start()
    writer = None
    try:
        user = await sync_to_async(make_user)("pinged")
        cookie = await sync_to_async(cookie_header)(user)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /ws/chat/ HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{server.port}\r\n"
            f"Cookie: {cookie}\r\n\r\n".encode())
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        pings: list[bytes] = []
        started = time.monotonic()
        while time.monotonic() - started < 7:
            opcode, payload = await asyncio.wait_for(_read_frame(reader), 5)
            assert opcode != 0x88, f"closed: {payload!r}"
            if opcode == 0x89:
                pings.append(payload)
                mask = os.urandom(4)
                writer.write(bytes([0x8A, 0x80 | len(payload)]) + mask
                             + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        assert len(pings) >= 4
        seqs = [struct.unpack(">L", p[8:12])[0] for p in pings]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        for p in pings:
            assert 12 <= len(p) <= 125
            assert abs(struct.unpack(">Q", p[:8])[0] / 1e9 - time.time()) < 60
    finally:
        if writer is not None:
            writer.close()
        server.stop()
