"""A small TCP proxy for tests: block WebSocket upgrades, delay, cut or blackhole a link.

Runs its own asyncio loop in a background thread, listens on 127.0.0.1 only, and
forwards to one upstream port: HTTP (a browser in front of Daphne) or any other TCP
protocol (Daphne in front of Redis). Modes can change while it runs:

* ``block_upgrades``: a request with ``Upgrade: websocket`` gets ``403`` and a close,
  like a corporate proxy that strips WebSockets; plain HTTP passes. Only then does the
  proxy read a request head before connecting upstream;
* ``delay``: seconds added to each chunk in each direction, like a long cable: chunks
  keep their order and do not wait for each other (user-space latency; this kernel has
  no netem);
* ``cut()``: close every open connection now; ``blackhole``: accept and read, forward
  nothing (a partition that does not reset connections; what was read meanwhile is
  gone, as on a link that drops packets).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from tests.services import free_port


@dataclass
class Proxy:
    upstream_port: int
    port: int = field(default_factory=free_port)
    block_upgrades: bool = False
    delay: float = 0.0
    blackhole: bool = False
    connections: int = 0
    upgrades_blocked: int = 0

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"proxy-{self.port}")

    # --- control (any thread) --------------------------------------------------------

    def start(self) -> Proxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def cut(self) -> int:
        """Close every connection through the proxy (both sides see a reset); how many sockets it closed."""
        return asyncio.run_coroutine_threadsafe(self._close_all(), self._loop).result(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- the loop -----------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()

    async def _shutdown(self) -> None:
        self._server.close()
        await self._close_all()
        # Let the connections' tasks see their sockets closed and end: the loop stops next,
        # and a task it leaves pending is reported as destroyed when the interpreter exits.
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if tasks:
            await asyncio.wait(tasks, timeout=2)

    async def _close_all(self) -> int:
        closed = len(self._writers)
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        return closed

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        head = b""
        if self.block_upgrades:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                self._writers.discard(writer)
                writer.close()
                return
            if b"upgrade: websocket" in head.lower():
                self.upgrades_blocked += 1
                writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                await writer.drain()
                writer.close()
                self._writers.discard(writer)
                return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            self._writers.discard(writer)
            writer.close()
            return
        self._writers.add(up_writer)
        up_writer.write(head)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction: read as data comes, write each chunk ``delay`` seconds after it came."""
        line: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        sender = asyncio.get_running_loop().create_task(self._send_in_time(line, writer))
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                if self.blackhole:
                    continue
                line.put_nowait((self._loop.time() + self.delay, chunk))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            line.put_nowait(None)  # EOF follows the last chunk, delayed like it
            await asyncio.gather(sender, return_exceptions=True)

    async def _send_in_time(self, line: asyncio.Queue[tuple[float, bytes] | None],
                            writer: asyncio.StreamWriter) -> None:
        try:
            while (item := await line.get()) is not None:
                due, chunk = item
                wait = due - self._loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            return
        try:
            writer.write_eof()
        except (OSError, RuntimeError):
            pass
