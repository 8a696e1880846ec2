"""The fan-out load client's frame reader (bench/fanout/load.py) parses server frames exactly.

Every latency the benchmark reports is timed by this parser, so it must see each frame
whole, in order, however TCP splits the stream; answer pings (or Daphne closes the socket
as dead); and count a close it did not ask for.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
from typing import Any

import pytest

from bench.fanout.load import Adapter, FrameReader, StepStats, Worker, body_for


class FakeTransport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.aborted = False
        self.protocol: Any = None

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True


def server_frame(payload: bytes, opcode: int = 1, fin: bool = True) -> bytes:
    """An unmasked frame as a server sends it."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 1 << 16:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload


def client_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Unmask the frames the reader wrote: (opcode, payload) each."""
    out, pos = [], 0
    while pos < len(data):
        opcode, b1 = data[pos] & 0x0F, data[pos + 1]
        assert b1 & 0x80, "client frames must be masked (RFC 6455 5.3)"
        n = b1 & 0x7F
        mask = data[pos + 2:pos + 6]
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(data[pos + 6:pos + 6 + n]))
        out.append((opcode, payload))
        pos += 6 + n
    return out


def feed(reader: FrameReader, stream: bytes, chunk: int) -> None:
    """Hand ``stream`` to the reader at most ``chunk`` bytes at a time, as the event loop would
    (never more than the buffer it offers)."""
    pos = 0
    while pos < len(stream):
        buf = reader.get_buffer(-1)
        assert len(buf) > 0
        part = stream[pos:pos + min(chunk, len(buf))]
        buf[:len(part)] = part
        reader.buffer_updated(len(part))
        pos += len(part)


def message(step: int, n: int, seq: int, pad: int = 0) -> bytes:
    body = body_for(step, 1000.0 + n, n)
    # Compact, as realtime.protocol encodes.
    return json.dumps({"type": "message", "room": "r", "seq": seq, "body": body, "pad": "x" * pad},
                      separators=(",", ":")).encode()


async def make_reader() -> tuple[Worker, FrameReader, FakeTransport]:
    worker = Worker(Adapter("project", 1), 0, conn=None)
    worker.steps[7] = StepStats()
    transport = FakeTransport()
    return worker, FrameReader(worker, 0, transport), transport


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 100_000])
async def test_frames_split_anywhere_arrive_whole_in_order_with_their_seq(chunk):
    """7-, 16- and 64-bit lengths and a fragmented message, cut into any chunk size: every
    delivery is counted once, with its seq in order, and nothing else is."""
    worker, reader, transport = await make_reader()
    big = message(7, 3, 3, pad=70_000)  # 64-bit length
    fragmented = message(7, 4, 4)
    stream = (
        server_frame(message(7, 1, 1))  # 7-bit length
        + server_frame(message(7, 2, 2, pad=300))  # 16-bit length
        + server_frame(big)
        + server_frame(fragmented[:10], fin=False) + server_frame(fragmented[10:30], opcode=0, fin=False)
        + server_frame(fragmented[30:], opcode=0)
        + server_frame(b'{"type":"presence"}')  # not a delivery
        + server_frame(message(8, 5, 5))  # another step's: not counted
    )
    feed(reader, stream, chunk)
    st = worker.steps[7]
    assert st.received == 4
    assert (st.seq_missing, st.seq_gaps, st.seq_backwards) == (0, 0, 0)
    assert worker.last_seq[0] == 4 and worker.other_frames == 1
    assert sum(st.hist.values()) == 4
    assert not transport.written and not transport.closed
    assert reader.start == reader.end  # nothing left half-parsed


async def test_a_gap_in_seq_is_counted():
    worker, reader, _ = await make_reader()
    feed(reader, server_frame(message(7, 1, 1)) + server_frame(message(7, 2, 3)), 5)
    assert worker.steps[7].received == 2 and worker.steps[7].seq_gaps == 1


async def test_a_ping_is_answered_with_a_masked_pong_of_the_same_payload():
    worker, reader, transport = await make_reader()
    feed(reader, server_frame(b"are you there", opcode=9) + server_frame(message(7, 1, 1)), 4)
    assert client_frames(bytes(transport.written)) == [(0xA, b"are you there")]
    assert worker.steps[7].received == 1


async def test_a_close_from_the_server_is_answered_and_counted_as_unexpected():
    worker, reader, transport = await make_reader()
    feed(reader, server_frame(struct.pack("!H", 4001) + b"bye", opcode=8), 100)
    assert client_frames(bytes(transport.written)) == [(0x8, struct.pack("!H", 4001))]
    assert transport.closed
    reader.connection_lost(None)
    assert worker.closed_unexpectedly == 1


async def test_closing_it_ourselves_is_not_counted_and_waits_for_the_server():
    worker, reader, transport = await make_reader()
    closing = asyncio.ensure_future(reader.close(timeout=5))
    await asyncio.sleep(0)
    assert client_frames(bytes(transport.written)) == [(0x8, struct.pack("!H", 1000))]
    assert not closing.done()
    reader.connection_lost(None)
    await closing
    assert worker.closed_unexpectedly == 0 and not transport.aborted


async def test_a_masked_server_frame_fails_the_connection_with_1002():
    _, reader, transport = await make_reader()
    feed(reader, bytes((0x81, 0x80 | 4)) + b"\x01\x02\x03\x04" + b"abcd", 100)
    assert client_frames(bytes(transport.written)) == [(0x8, struct.pack("!H", 1002))]
    assert transport.closed


async def test_it_takes_over_a_websockets_connection_only_between_frames():
    """Mid-frame (header read, payload not yet), ``attach`` declines; once the frame is whole,
    it takes over and the next frame reaches the reader, not websockets."""
    from websockets.asyncio.client import connect

    writers: list[asyncio.StreamWriter] = []

    async def handshake(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        request = await r.readuntil(b"\r\n\r\n")
        key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key"))
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        w.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        writers.append(w)

    server = await asyncio.start_server(handshake, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ws = await connect(f"ws://127.0.0.1:{port}/", compression=None, ping_interval=None, close_timeout=1)
    w = writers[0]
    worker = Worker(Adapter("bare", port), 0, conn=None)
    worker.steps[7] = StepStats()
    try:
        first = server_frame(json.dumps({"message": body_for(7, 1.0, 1)}).encode())
        w.write(first[:6])  # the header and a little of the payload
        await asyncio.sleep(0.2)
        assert FrameReader.attach(worker, 0, ws) is None
        w.write(first[6:])
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["message"] == body_for(7, 1.0, 1)
        reader = FrameReader.attach(worker, 0, ws)
        assert reader is not None
        w.write(server_frame(json.dumps({"message": body_for(7, 2.0, 2)}).encode()))
        for _ in range(100):
            if worker.steps[7].received:
                break
            await asyncio.sleep(0.02)
        assert worker.steps[7].received == 1
    finally:
        ws.transport.abort()
        w.close()
        server.close()
        await server.wait_closed()
