"""The load client: worker processes that hold the sockets, publish on a schedule and time arrivals.

run.py drives it through :class:`LoadClient`, which starts ``procs`` worker processes
(``multiprocessing``, spawn) for one server and sends them commands over pipes. Each
worker is one asyncio loop with ``websockets`` client connections (compression off, no
client pings; the servers' pings are answered while every socket keeps reading).

An :class:`Adapter` says how to talk to each server:

* project: ``/ws/chat/`` with a bench user's session cookie and Origin; after ``hello``,
  ``join`` the room and wait for ``joined``; publish ``message`` {room, body, client_id};
  a delivery is a ``message`` event, which carries its ``seq``.
* stock: ``/ws/stock/<room>/`` with Origin (joined by URL); ``{"message": body}`` both ways.
* bare: ``/room/<room>`` (joined by URL); ``{"message": body}`` both ways.

Every published body is ``B|<step>|<scheduled monotonic time>|<n>|``. A delivery's
latency is its arrival time minus the *scheduled* send time (CLOCK_MONOTONIC is one
clock for every process on the machine), so a publisher that falls behind does not hide
the delay (no coordinated omission). Arrivals of another step (late ones, history sent
on join) are not counted. Latencies go into a log histogram with 1 % buckets.

Each worker reports its own CPU time (``getrusage``) so run.py can tell whether the
load client, rather than the server, was the limit.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import random
import re
import resource
import time
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

BODY_RE = re.compile(rb"B\|(\d+)\|([0-9.]+)\|(\d+)\|")
SEQ_RE = re.compile(rb'"seq":(\d+)')

# Histogram buckets: int(ln(latency in microseconds) * HIST_SCALE), about 1 % wide.
HIST_SCALE = 100.0


def body_for(step: int, t_sched: float, n: int) -> str:
    return f"B|{step}|{t_sched:.6f}|{n}|"


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def raise_nofile(want: int = 0) -> int:
    """Raise the open-file limit to ``want`` (as root the hard limit too, up to fs.nr_open), else to the hard limit.

    Returns the soft limit now in force; processes started afterwards inherit it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if want > hard:
        try:
            with open("/proc/sys/fs/nr_open") as f:
                want = min(want, int(f.read()))
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (OSError, ValueError):  # not root: the hard limit is the ceiling
            pass
    target = min(max(want, soft), hard) if want else hard
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def ephemeral_ports() -> tuple[int, int]:
    """This machine's ephemeral port range (net.ipv4.ip_local_port_range; Linux's default if unreadable)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(v) for v in f.read().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return low, high


def sources_for(sockets: int, ports: tuple[int, int] | None = None) -> int:
    """How many loopback source addresses ``sockets`` connections need (at least 2).

    A socket bound to (address, 0) before its connect, as each of these is, gets an even
    port first: Linux keeps the odd half of the range for connect() without a bind. Once
    an address's even ports are used up, every further bind scans all of them before it
    falls back to an odd one, and opens crawl: S6's 100,000 over 5 addresses (20,000 each)
    went from 10,000 to 2,000 a minute past 70,000 sockets, 14,100 an address, the even
    half of the default range. So each address gets at most 80 % of that half.
    """
    low, high = ports or ephemeral_ports()
    per_address = max(1_000, int((high - low + 1) // 2 * 0.8))
    return max(2, math.ceil(sockets / per_address))


def source_address(index: int, sources: int) -> tuple[str, int] | None:
    """The loopback source address of socket ``index`` spread over ``sources`` (127.0.0.2 ...), None for one.

    Each (source address, port) pair is one connection to the server's one port, so N
    sources give N times the ephemeral ports (net.ipv4.ip_local_port_range) a single one has.
    """
    if sources <= 1:
        return None
    k = index % sources
    return (f"127.0.{k // 250}.{2 + k % 250}", 0)


# --- histograms (plain dicts: they cross the pipe) ------------------------------------


def hist_add(hist: dict[int, int], seconds: float) -> None:
    us = seconds * 1e6
    k = int(math.log(us) * HIST_SCALE) if us > 1.0 else 0
    hist[k] = hist.get(k, 0) + 1


def hist_merge(into: dict[int, int], other: dict[int, int]) -> dict[int, int]:
    for k, v in other.items():
        into[k] = into.get(k, 0) + v
    return into


def hist_percentile_ms(hist: dict[int, int], p: float) -> float | None:
    """The p-th percentile in milliseconds (bucket midpoint), or None when empty."""
    total = sum(hist.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(p / 100.0 * total))
    seen = 0
    for k in sorted(hist):
        seen += hist[k]
        if seen >= rank:
            return math.exp((k + 0.5) / HIST_SCALE) / 1000.0
    return None


# --- adapters ----------------------------------------------------------------------------


@dataclass
class Adapter:
    """How to reach one server. ``kind``: project, stock or bare. Picklable (sent to workers)."""

    kind: str
    port: int
    cookies: list[str] = field(default_factory=list)  # project: one "sessionid=..." per bench user

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, purpose: str, room: str | None) -> str:
        base = f"ws://127.0.0.1:{self.port}"
        if self.kind == "project":
            return base + ("/ws/echo/" if purpose == "echo-endpoint" else "/ws/chat/")
        if self.kind == "stock":
            return base + ("/ws/stock-echo/" if purpose in ("echo", "echo-endpoint") else f"/ws/stock/{room}/")
        return base + ("/echo" if purpose in ("echo", "echo-endpoint") else f"/room/{room}")

    def headers(self, index: int, purpose: str) -> dict[str, str]:
        if self.kind == "project" and purpose != "echo-endpoint":
            return {"Cookie": self.cookies[index % len(self.cookies)]}
        return {}

    def publish_frame(self, room: str, body: str, client_id: str) -> str:
        if self.kind == "project":
            return json.dumps({"type": "message", "room": room, "body": body, "client_id": client_id})
        return json.dumps({"message": body})

    def echo_frame(self, purpose: str, n: int) -> str:
        if self.kind == "project" and purpose == "echo":
            return f'{{"type":"ping","t":{n}}}'
        return f'{{"message":"echo {n}"}}'

    def echo_matches(self, purpose: str, frame: str | bytes, n: int) -> bool:
        if isinstance(frame, bytes):
            return False
        if self.kind == "project" and purpose == "echo":
            return frame.startswith('{"type":"pong"') and f'"t":{n}}}' in frame
        return frame == f'{{"message":"echo {n}"}}'


# --- the reader -------------------------------------------------------------------------


class FrameReader(asyncio.BufferedProtocol):
    """Reads one open socket's frames straight off its transport, in place of ``websockets``.

    The handshake, join and every send stay with ``websockets``; once a socket is ready,
    :meth:`attach` makes this the transport's protocol. Through ``websockets`` each frame
    took a fresh 256 KiB receive buffer, a parser generator, a queue and a wake-up of the
    socket's reader task: about twice the server's own CPU per delivery, which made the load
    client a visible part of every latency it measured. Here the kernel writes into one
    buffer per socket and every complete frame is handled in the same callback, timed at
    the moment its bytes arrived.

    Server frames are parsed per RFC 6455 (unmasked; 7-, 16- and 64-bit lengths; fragments);
    pings are answered, a close is answered and ends the connection.
    """

    def __init__(self, worker: Worker, index: int, transport: asyncio.Transport) -> None:
        self.worker = worker
        self.index = index
        self.transport = transport
        self.buf = bytearray(16384)
        self.start = 0  # first byte not yet parsed
        self.end = 0  # first byte not yet filled
        self.fragments: list[bytes] = []
        self.fragment_opcode = 0
        self.closing = False  # a close frame was sent
        self.closed_by_us = False  # by close(), when the worker closes its sockets
        self.done = asyncio.get_running_loop().create_future()

    @classmethod
    def attach(cls, worker: Worker, index: int, ws: Any) -> FrameReader | None:
        """Take over reading ``ws`` (a websockets ClientConnection), or None when it is mid-frame.

        Safe only between frames: nothing buffered in websockets' reader, and its parser
        waiting for the next frame's first byte (not for the rest of one it began).
        """
        protocol = ws.protocol
        waiting_on = protocol.parser  # the innermost generator of its parser's yield-from chain
        while getattr(waiting_on, "gi_yieldfrom", None) is not None:
            waiting_on = waiting_on.gi_yieldfrom
        if protocol.reader.buffer or getattr(getattr(waiting_on, "gi_code", None), "co_name", "") != "at_eof":
            return None
        reader = cls(worker, index, ws.transport)
        ws.transport.set_protocol(reader)
        return reader

    # --- asyncio.BufferedProtocol ------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.start == self.end:
            self.start = self.end = 0
        elif len(self.buf) - self.end < 4096:
            # Move the unparsed tail to the front, growing for a frame bigger than the buffer.
            tail = self.buf[self.start:self.end]
            if len(tail) > len(self.buf) // 2:
                self.buf = bytearray(2 * len(self.buf))
            self.buf[:len(tail)] = tail
            self.start, self.end = 0, len(tail)
        return memoryview(self.buf)[self.end:]

    def buffer_updated(self, nbytes: int) -> None:
        now = time.monotonic()
        self.end += nbytes
        buf, pos, end = self.buf, self.start, self.end
        while end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n, h = b1 & 0x7F, 2
            if n == 126:
                if end - pos < 4:
                    break
                n, h = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif n == 127:
                if end - pos < 10:
                    break
                n, h = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            if b1 & 0x80:  # RFC 6455 5.1: a client must close on a masked server frame
                self._fail(1002)
                return
            if end - pos < h + n:
                break
            payload = bytes(buf[pos + h:pos + h + n])
            pos += h + n
            self.start = pos
            self._frame(b0 & 0x0F, bool(b0 & 0x80), payload, now)
            if self.transport.is_closing():
                return
        self.start = pos

    def eof_received(self) -> bool:
        return False  # the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.worker.lost(self)
        if not self.done.done():
            self.done.set_result(None)

    def pause_writing(self) -> None:  # websockets' sends go through the same transport
        pass

    def resume_writing(self) -> None:
        pass

    # --- frames ----------------------------------------------------------------------------

    def _frame(self, opcode: int, fin: bool, payload: bytes, now: float) -> None:
        if opcode == 0:  # continuation
            self.fragments.append(payload)
            if not fin:
                return
            opcode, payload, self.fragments = self.fragment_opcode, b"".join(self.fragments), []
        elif opcode in (1, 2) and not fin:
            self.fragment_opcode, self.fragments = opcode, [payload]
            return
        if opcode == 1:
            self.worker.arrival(self.index, payload, now)
        elif opcode == 2:
            self.worker.other_frames += 1
        elif opcode == 9:
            self.send(0xA, payload)
        elif opcode == 8:
            if not self.closing:
                self.closing = True
                self.send(0x8, payload[:2])
            self.transport.close()

    def send(self, opcode: int, payload: bytes) -> None:
        """One masked client frame (control frames only: payload under 126 bytes)."""
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(bytes((0x80 | opcode, 0x80 | len(payload))) + mask + masked)

    def _fail(self, code: int) -> None:
        self.closing = True
        self.send(0x8, code.to_bytes(2, "big"))
        self.transport.close()

    async def close(self, timeout: float = 5.0) -> None:
        """Close handshake: send 1000, wait for the server to close the connection."""
        self.closed_by_us = True
        if not self.closing and not self.transport.is_closing():
            self.closing = True
            self.send(0x8, (1000).to_bytes(2, "big"))
        try:
            await asyncio.wait_for(asyncio.shield(self.done), timeout)
        except TimeoutError:
            self.transport.abort()


# --- the worker ------------------------------------------------------------------------


@dataclass
class StepStats:
    received: int = 0
    hist: dict[int, int] = field(default_factory=dict)
    first_arrival: float | None = None
    last_arrival: float = 0.0
    seq_missing: int = 0
    seq_gaps: int = 0
    seq_backwards: int = 0
    sent: int = 0
    send_late_max: float = 0.0
    cpu0: float = 0.0
    wall0: float = 0.0


class Worker:
    """One process's sockets, readers and publishers, driven by commands from the pipe."""

    def __init__(self, adapter: Adapter, wid: int, conn: Any) -> None:
        self.adapter = adapter
        self.wid = wid
        self.conn = conn
        self.socks: list[Any] = []  # websockets ClientConnection
        self.rooms: list[str | None] = []
        self.readers: dict[int, FrameReader] = {}  # socket index -> its reader
        self.steps: dict[int, StepStats] = {}
        self.last_seq: dict[int, int] = {}  # socket index -> last seq seen (project)
        self.errors_seen = 0  # error events received (project)
        self.closed_unexpectedly = 0
        self.other_frames = 0

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            cmd = await loop.run_in_executor(None, self.conn.recv)
            op = cmd.get("op")
            if op == "quit":
                await self.op_close()
                self.conn.send({"ok": True})
                return
            try:
                result = await getattr(self, "op_" + op)(**cmd.get("args", {}))
            except Exception as exc:  # reported to the parent, which raises it
                result = {"error": f"{type(exc).__name__}: {exc}"}
            self.conn.send(result)

    # --- sockets ----------------------------------------------------------------------

    async def _open_one(self, index: int, purpose: str, room: str | None, join: bool, timeout: float,
                        sources: int = 1) -> Any:
        from websockets.asyncio.client import connect

        extra: dict[str, Any] = {}
        local = source_address(index, sources)
        if local is not None:
            extra["local_addr"] = local
        ws = await connect(
            self.adapter.url(purpose, room),
            origin=self.adapter.origin,
            additional_headers=self.adapter.headers(index, purpose),
            compression=None,
            open_timeout=timeout,
            ping_interval=None,
            close_timeout=2,
            max_queue=64,
            **extra,
        )
        try:
            if self.adapter.kind == "project" and purpose != "echo-endpoint":
                hello = await asyncio.wait_for(ws.recv(), timeout)
                if '"type":"hello"' not in hello:
                    raise RuntimeError(f"expected hello, got {hello[:120]}")
                if join and room is not None:
                    await ws.send(json.dumps({"type": "join", "room": room}))
                    deadline = time.monotonic() + timeout
                    while True:
                        frame = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
                        if frame.startswith('{"type":"joined"'):
                            break
                        if frame.startswith('{"type":"error"'):
                            raise RuntimeError(f"join refused: {frame[:200]}")
        except BaseException:
            await ws.close()
            raise
        return ws

    async def op_open(
        self, rooms: list[str | None], first_index: int = 0, purpose: str = "room", join: bool = True,
        reader: bool = True, concurrency: int = 50, open_timeout: float = 30.0, retries: int = 0,
        sources: int = 1,
    ) -> dict[str, Any]:
        """Open one socket per entry of ``rooms`` (None: no room); report successes and failures.

        ``retries``: attempts after a failed one (each failure is still counted in ``failed_attempts``).
        """
        sem = asyncio.Semaphore(max(1, concurrency))
        errors: list[str] = []
        failed_rooms: list[str | None] = []
        failed_attempts: list[str] = []
        opened: list[tuple[int, Any, str | None]] = []
        done_at: list[float] = []
        started = time.monotonic()

        async def one(i: int, room: str | None) -> None:
            for attempt in range(retries + 1):
                async with sem:
                    try:
                        ws = await self._open_one(first_index + i, purpose, room, join, open_timeout, sources)
                    except Exception as exc:  # noqa: BLE001 - counted and reported
                        cause = exc.__cause__ or exc.__context__
                        why = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
                        failed_attempts.append(f"{type(exc).__name__}: {exc}{why}"[:200]
                                               + f" after {time.monotonic() - started:.1f} s")
                        if attempt == retries:
                            errors.append(failed_attempts[-1])
                            failed_rooms.append(room)
                            return
                        continue
                done_at.append(time.monotonic())
                opened.append((i, ws, room))
                return

        await asyncio.gather(*(one(i, room) for i, room in enumerate(rooms)))
        for _, ws, room in sorted(opened, key=lambda x: x[0]):
            index = len(self.socks)
            self.socks.append(ws)
            self.rooms.append(room)
            if reader:
                self.readers[index] = await self._take_over(index, ws)
        # Long-lived sockets: keep them out of the collector's way (gen-2 passes over thousands
        # of connections would show up as latency spikes measured here, not in the server).
        gc.collect()
        gc.freeze()
        return {
            "opened": len(opened), "errors": len(errors), "error_samples": errors[:5], "failed_rooms": failed_rooms,
            "failed_attempts": len(failed_attempts), "failed_attempt_samples": sorted(set(failed_attempts))[:5],
            "started": started, "last_ready": max(done_at) if done_at else started, "ready_at": sorted(done_at),
            "total": len(self.socks),
        }

    async def _take_over(self, index: int, ws: Any) -> FrameReader:
        """Hand ``ws``'s reading to a FrameReader, at the first moment it is between frames."""
        for _ in range(500):
            reader = FrameReader.attach(self, index, ws)
            if reader is not None:
                return reader
            await asyncio.sleep(0.01)  # the rest of a frame is on its way
        raise RuntimeError(f"socket {index} stayed in the middle of a frame for 5 s")

    async def op_close(self) -> dict[str, Any]:
        socks, self.socks, self.rooms = self.socks, [], []
        readers, self.readers = self.readers, {}
        await asyncio.gather(
            *(readers[i].close(5) if i in readers else asyncio.wait_for(ws.close(), 5) for i, ws in enumerate(socks)),
            return_exceptions=True,
        )
        self.last_seq.clear()
        return {"closed": len(socks)}

    def arrival(self, index: int, payload: bytes, now: float) -> None:
        """One text frame (UTF-8 bytes) that reached socket ``index`` at ``now``."""
        m = BODY_RE.search(payload, max(0, payload.find(b"B|")))
        if m is None:
            if self.adapter.kind == "project" and payload.startswith(b'{"type":"error"'):
                self.errors_seen += 1
            else:
                self.other_frames += 1
            return
        st = self.steps.get(int(m.group(1)))
        if st is None:
            return  # another step's (late, or history on join)
        st.received += 1
        us = (now - float(m.group(2))) * 1e6
        k = int(math.log(us) * HIST_SCALE) if us > 1.0 else 0
        st.hist[k] = st.hist.get(k, 0) + 1
        if st.first_arrival is None:
            st.first_arrival = now
        st.last_arrival = now
        if self.adapter.kind == "project":
            s = SEQ_RE.search(payload)
            if s is None:
                st.seq_missing += 1
            else:
                seq = int(s.group(1))
                prev = self.last_seq.get(index)
                if prev is not None:
                    if seq <= prev:
                        st.seq_backwards += 1
                    elif seq > prev + 1:
                        st.seq_gaps += 1
                self.last_seq[index] = seq

    def lost(self, reader: FrameReader) -> None:
        """A reader's connection ended (counted unless the worker was closing it)."""
        if not reader.closed_by_us:
            self.closed_unexpectedly += 1

    # --- steps ------------------------------------------------------------------------

    async def op_begin(self, step: int) -> dict[str, Any]:
        gc.collect()
        gc.disable()  # no collector pauses inside a measured step; re-enabled by op_end
        st = StepStats(cpu0=cpu_seconds(), wall0=time.monotonic())
        self.steps[step] = st
        self.last_seq.clear()
        return {"ok": True, "errors_seen": self.errors_seen}

    async def op_poll(self, step: int) -> dict[str, Any]:
        st = self.steps.get(step)
        return {"received": st.received if st else 0, "last_arrival": st.last_arrival if st else 0.0}

    async def op_end(self, step: int) -> dict[str, Any]:
        st = self.steps.pop(step)
        cpu = cpu_seconds() - st.cpu0
        wall = time.monotonic() - st.wall0
        gc.enable()
        return {
            "received": st.received, "hist": st.hist, "first_arrival": st.first_arrival,
            "last_arrival": st.last_arrival, "seq_missing": st.seq_missing, "seq_gaps": st.seq_gaps,
            "seq_backwards": st.seq_backwards, "sent": st.sent, "send_late_max": st.send_late_max,
            "cpu": cpu, "wall": wall, "errors_seen": self.errors_seen,
            "closed_unexpectedly": self.closed_unexpectedly, "open": len(self.socks),
        }

    async def op_publish(
        self, step: int, t0: float, rate: float, duration: float, mode: str = "fixed", seed: int = 0,
    ) -> dict[str, Any]:
        """Send on a schedule from t0 for ``duration`` s at ``rate`` msg/s.

        fixed: socket 0 sends every 1/rate s (S2). poisson: exponential gaps, each message
        from a socket chosen at random (S3: every member sends at rate/len(sockets)). burst:
        every socket sends one message, all scheduled at t0 (S3 burst).
        A send due in the past goes out at once; its latency still counts from its slot.
        """
        st = self.steps.get(step)  # None for warm-up messages, which nobody counts
        rng = random.Random(seed)
        if not self.socks or rate <= 0:
            return {"sent": 0}
        if mode == "fixed":
            times = [t0 + n / rate for n in range(max(1, int(round(rate * duration))))]
            who = [0] * len(times)
        elif mode == "burst":  # every socket once, all due at t0 (the many-rooms burst)
            who = list(range(len(self.socks)))
            times = [t0] * len(who)
        else:
            times, t = [], t0
            while True:
                t += rng.expovariate(rate)
                if t >= t0 + duration:
                    break
                times.append(t)
            who = [rng.randrange(len(self.socks)) for _ in times]
        adapter = self.adapter
        monotonic = time.monotonic
        sent = 0
        late_max = 0.0
        for n, (ts, i) in enumerate(zip(times, who, strict=True)):
            delay = ts - monotonic()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            else:
                late_max = max(late_max, -delay)
            room = self.rooms[i]
            frame = adapter.publish_frame(room, body_for(step, ts, n), f"w{self.wid}s{step}n{n}")
            try:
                await self.socks[i].send(frame)
            except Exception:  # noqa: BLE001 - a closed socket: the message is lost and counted so
                continue
            sent += 1
        if st is not None:
            st.sent += sent
            st.send_late_max = max(st.send_late_max, late_max)
        return {"sent": sent, "late_max": late_max}

    # --- echo (S1) --------------------------------------------------------------------

    async def op_echo(self, clients: int, duration: float, purpose: str = "echo") -> dict[str, Any]:
        """Closed loop on the first ``clients`` sockets (opened with reader=False)."""
        hist: dict[int, int] = {}
        counts = [0]
        gc.collect()
        gc.disable()
        cpu0 = cpu_seconds()
        t0 = time.monotonic()
        end = t0 + duration
        adapter = self.adapter

        async def loop(ws: Any, base: int) -> None:
            n = base
            while time.monotonic() < end:
                n += 1
                start = time.monotonic()
                await ws.send(adapter.echo_frame(purpose, n))
                while True:
                    frame = await asyncio.wait_for(ws.recv(), 10)
                    if adapter.echo_matches(purpose, frame, n):
                        break
                hist_add(hist, time.monotonic() - start)
                counts[0] += 1

        try:
            await asyncio.gather(*(loop(ws, i * 10_000_000) for i, ws in enumerate(self.socks[:clients])))
        finally:
            gc.enable()
        wall = time.monotonic() - t0
        return {"count": counts[0], "hist": hist, "wall": wall, "cpu": cpu_seconds() - cpu0}

    # --- project only: the resume guarantee -------------------------------------------

    async def op_resume_check(self, room: str, back: int) -> dict[str, Any]:
        """Join ``room`` to learn its latest seq, then rejoin with last_seq = latest - back on a
        fresh socket: every missed message must come back, in seq order, each with its body."""
        ws = await self._open_one(0, "room", None, False, 30)
        try:
            await ws.send(json.dumps({"type": "join", "room": room}))
            latest = None
            while latest is None:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if frame.get("type") == "joined":
                    latest = frame["seq"]
        finally:
            await ws.close()
        back = min(back, latest)
        ws = await self._open_one(1, "room", None, False, 30)
        seqs: list[int] = []
        bodies_ok = True
        try:
            await ws.send(json.dumps({"type": "join", "room": room, "last_seq": latest - back}))
            joined = None
            deadline = time.monotonic() + 30
            while len(seqs) < back and time.monotonic() < deadline:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if frame.get("type") == "joined":
                    joined = frame
                elif frame.get("type") == "message" and joined is not None and frame.get("seq", 0) <= latest:
                    seqs.append(frame["seq"])
                    bodies_ok = bodies_ok and bool(BODY_RE.search(frame.get("body", "").encode()))
        finally:
            await ws.close()
        expected = list(range(latest - back + 1, latest + 1))
        return {
            "latest_seq": latest, "asked": back, "got": len(seqs), "in_order_no_gaps": seqs == expected,
            "bodies_ok": bodies_ok, "reset": bool(joined and joined.get("reset")),
        }

    async def op_cpu(self) -> dict[str, Any]:
        return {"cpu": cpu_seconds(), "open": len(self.socks), "closed_unexpectedly": self.closed_unexpectedly}


def _worker_entry(conn: Any, adapter: Adapter, wid: int) -> None:
    raise_nofile()
    try:
        asyncio.run(Worker(adapter, wid, conn).serve())
    except (EOFError, KeyboardInterrupt):
        pass


# --- the parent side --------------------------------------------------------------------


class LoadClient:
    """``procs`` worker processes talking to one server."""

    def __init__(self, adapter: Adapter, procs: int = 1) -> None:
        ctx = get_context("spawn")
        self.adapter = adapter
        self.conns = []
        self.procs = []
        for wid in range(procs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_entry, args=(child, adapter, wid), daemon=True,
                               name=f"load-{adapter.kind}-{wid}")
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def _recv(self, wid: int, timeout: float) -> Any:
        conn = self.conns[wid]
        if not conn.poll(timeout):
            raise TimeoutError(f"load worker {wid} did not answer within {timeout} s")
        result = conn.recv()
        if isinstance(result, dict) and "error" in result:
            raise RuntimeError(f"load worker {wid}: {result['error']}")
        return result

    def call(self, wid: int, op: str, timeout: float = 300, **args: Any) -> Any:
        self.conns[wid].send({"op": op, "args": args})
        return self._recv(wid, timeout)

    def call_each(self, op: str, per_worker: list[dict[str, Any]] | None = None, timeout: float = 300,
                  **args: Any) -> list[Any]:
        """The same op on every worker at once (``per_worker``: each worker's own arguments)."""
        wids = range(len(self.conns))
        for wid in wids:
            a = dict(args)
            if per_worker is not None:
                a.update(per_worker[wid])
            self.conns[wid].send({"op": op, "args": a})
        return [self._recv(wid, timeout) for wid in wids]

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send({"op": "quit"})
                conn.poll(20) and conn.recv()
            except (OSError, EOFError):
                pass
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)


def split(items: list[Any], parts: int) -> list[list[Any]]:
    """Round-robin split, so each worker gets members of every room."""
    return [items[i::parts] for i in range(parts)]

