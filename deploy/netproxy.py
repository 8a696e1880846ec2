"""One TCP proxy for faults and latency: the tests' fault links and the region simulator's delay lines.

    .venv/bin/python deploy/netproxy.py LISTEN_PORT:UPSTREAM_PORT:ONE_WAY_MS[:NAME] ... [--max-seconds N]

Each link listens on 127.0.0.1 and forwards to one upstream port, any TCP protocol (a
browser in front of Daphne, Daphne in front of Redis). This kernel has no ``netem``, so
faults and latency are made here, in user space, and can change while the link runs:

* ``delay``: seconds added in each direction. The link is a delay line, like a long
  cable: every chunk is stamped when it is read and written once its own deadline
  passes, so chunks keep their order and spacing and throughput is not divided by the
  delay. EOF travels the line too. The TCP handshake with the proxy itself is local and
  not delayed. When the upstream refuses (its process is dead), the client's connection
  is reset after one round trip, as a reset coming back from the far end would be;
* ``cut()``: reset every open connection now (both sides see it);
* ``blackhole``: accept and read, forward nothing: a partition that resets nothing, and
  what was read meanwhile is lost, as on a link that drops packets;
* ``block_upgrades``: a request with ``Upgrade: websocket`` gets ``403`` and a close,
  like a corporate proxy that strips WebSockets; plain HTTP passes.

``Link`` runs on the caller's asyncio loop (the command line); ``Proxy`` is a link on a
loop of its own in a background thread, controlled from any thread (the tests).
The command line serves its links until SIGTERM/SIGINT or ``--max-seconds`` (default 900).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
from dataclasses import dataclass, field


@dataclass
class Link:
    """One listening port, its upstream, and the faults applied to what crosses it."""

    upstream_port: int
    port: int = 0  # 0: a free port, known once listening
    delay: float = 0.0
    blackhole: bool = False
    block_upgrades: bool = False
    name: str = ""
    host: str = "127.0.0.1"
    connections: int = 0
    upgrades_blocked: int = 0
    _writers: set[asyncio.StreamWriter] = field(default_factory=set, repr=False)
    _server: asyncio.Server | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, spec: str) -> Link:
        """A link from the command line's ``LISTEN_PORT:UPSTREAM_PORT:ONE_WAY_MS[:NAME]``."""
        parts = spec.split(":")
        if len(parts) not in (3, 4):
            raise ValueError(f"{spec!r}: expected LISTEN_PORT:UPSTREAM_PORT:ONE_WAY_MS[:NAME]")
        return cls(port=int(parts[0]), upstream_port=int(parts[1]), delay=float(parts[2]) / 1000.0,
                   name=parts[3] if len(parts) == 4 else "")

    async def listen(self) -> asyncio.Server:
        """Start accepting on the running loop; ``port`` then holds the port listened on."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self._server

    def abort_all(self) -> int:
        """Reset every connection through the link (both sides); how many sockets it reset."""
        reset = len(self._writers)
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        return reset

    def close(self) -> None:
        """Stop accepting and reset every open connection."""
        if self._server is not None:
            self._server.close()
        self.abort_all()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        head = b""
        if self.block_upgrades:
            # Only then is a request head read before connecting upstream.
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
            up_reader, up_writer = await asyncio.open_connection(self.host, self.upstream_port)
        except OSError:
            await asyncio.sleep(2 * self.delay)  # the refusal travels back over the link
            writer.transport.abort()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        up_writer.write(head)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction through the delay line; a blackhole reads and drops."""
        loop = asyncio.get_running_loop()
        line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                deadline, chunk = await line.get()
                wait = deadline - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not chunk:  # EOF
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(chunk)
                await writer.drain()

        sender = loop.create_task(deliver())
        try:
            while True:
                chunk = await reader.read(65536)
                if chunk and self.blackhole:
                    continue
                line.put_nowait((loop.time() + self.delay, chunk))
                if not chunk:
                    break
            await sender
        except (ConnectionError, OSError, RuntimeError, asyncio.CancelledError):
            pass
        finally:
            if not sender.done():
                # The reading side broke (reset): what is in flight is lost, the far side is reset.
                await asyncio.sleep(self.delay)
                sender.cancel()
                writer.transport.abort()


@dataclass
class Proxy(Link):
    """A link on an asyncio loop of its own in a daemon thread, for tests: start, fault, stop."""

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"netproxy-{self.upstream_port}")

    def start(self) -> Proxy:
        """Listen (on a free port unless ``port`` was given) and return once accepting."""
        self._thread.start()
        if not self._ready.wait(10) or not self.port:
            raise RuntimeError(f"netproxy to :{self.upstream_port} did not start")
        return self

    def stop(self) -> None:
        """Reset every connection, stop listening and end the thread."""
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def cut(self) -> int:
        """Reset every connection through the proxy now; how many sockets it reset."""
        return asyncio.run_coroutine_threadsafe(self._abort_all_async(), self._loop).result(10)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _abort_all_async(self) -> int:
        return self.abort_all()

    async def _shutdown(self) -> None:
        self.close()
        # Let the connections' tasks see their sockets reset and end: the loop stops next,
        # and a task it leaves pending is reported as destroyed when the interpreter exits.
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if tasks:
            await asyncio.wait(tasks, timeout=2)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.listen())
        finally:
            self._ready.set()
        self._loop.run_forever()


async def serve(links: list[Link], *, max_seconds: float, ready=None) -> None:
    """Serve every link until cancelled, SIGTERM/SIGINT, or ``max_seconds``."""
    for link in links:
        await link.listen()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    if ready is not None:
        ready()
    try:
        await asyncio.wait_for(stop.wait(), max_seconds)
    except TimeoutError:
        pass
    finally:
        for link in links:
            link.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("links", nargs="+", help="LISTEN_PORT:UPSTREAM_PORT:ONE_WAY_MS[:NAME]")
    parser.add_argument("--max-seconds", type=float, default=900.0)
    args = parser.parse_args(argv)
    links = [Link.parse(spec) for spec in args.links]

    def ready() -> None:
        for link in links:
            print(f"link {link.name or '-'} :{link.port} -> :{link.upstream_port}"
                  f" +{link.delay * 1000:g} ms each way", flush=True)
        print("ready", flush=True)

    asyncio.run(serve(links, max_seconds=args.max_seconds, ready=ready))
    return 0


if __name__ == "__main__":
    sys.exit(main())
