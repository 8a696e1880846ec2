"""Delaying TCP proxies: simulated network links between users, regions and Redis.

    .venv/bin/python deploy/latency_proxy.py LISTEN_PORT:UPSTREAM_PORT:ONE_WAY_MS[:NAME] ... [--max-seconds N]

Each spec listens on 127.0.0.1:LISTEN_PORT and forwards to 127.0.0.1:UPSTREAM_PORT, adding
ONE_WAY_MS to every chunk in each direction, so a request/response costs one round trip
(2 × ONE_WAY_MS) more. Used by ``deploy/simulate_regions.py``; this kernel has no
``netem``, so latency is added in user space.

Unlike ``tests/netproxy.py`` (whose ``delay`` sleeps before each chunk, so a burst of
chunks takes their number × the delay), this is a *delay line*: every chunk is stamped
when it is read and written once its own deadline passes, so back-to-back chunks keep
their spacing and throughput is not divided by the delay — as on a long cable.

The TCP handshake with the proxy itself is local and not delayed (the first request
pays one round trip, not two; real links add TCP and TLS round trips on top). When the
upstream refuses (its process is dead), the client's connection is closed after one
round trip, like a reset coming back from the far end.

Runs until SIGTERM/SIGINT, or ``--max-seconds`` (default 900), whichever comes first.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from dataclasses import dataclass, field


@dataclass
class Link:
    """One listening port, its upstream and the one-way delay added in each direction."""

    listen_port: int
    upstream_port: int
    one_way_ms: float
    name: str = ""
    host: str = "127.0.0.1"
    connections: int = 0
    _writers: set = field(default_factory=set, repr=False)

    @classmethod
    def parse(cls, spec: str) -> Link:
        parts = spec.split(":")
        if len(parts) not in (3, 4):
            raise ValueError(f"{spec!r}: expected LISTEN_PORT:UPSTREAM_PORT:ONE_WAY_MS[:NAME]")
        return cls(int(parts[0]), int(parts[1]), float(parts[2]), parts[3] if len(parts) == 4 else "")

    @property
    def delay(self) -> float:
        return self.one_way_ms / 1000.0

    async def start(self) -> asyncio.AbstractServer:
        return await asyncio.start_server(self._handle, self.host, self.listen_port)

    def abort_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.upstream_port)
        except OSError:
            await asyncio.sleep(2 * self.delay)  # the refusal travels back over the link
            writer.transport.abort()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                deadline, chunk = await line.get()
                wait = deadline - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not chunk:  # EOF travels the link too
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(chunk)
                await writer.drain()

        sender = loop.create_task(deliver())
        try:
            while True:
                chunk = await reader.read(65536)
                line.put_nowait((loop.time() + self.delay, chunk))
                if not chunk:
                    break
            await sender
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            if not sender.done():
                # The reading side broke (reset): what is in flight is lost, the far side is reset.
                await asyncio.sleep(self.delay)
                sender.cancel()
                writer.transport.abort()


async def serve(links: list[Link], *, max_seconds: float, ready=None) -> None:
    """Serve every link until cancelled, a signal, or ``max_seconds``."""
    servers = [await link.start() for link in links]
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
        for server in servers:
            server.close()
        for link in links:
            link.abort_all()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("links", nargs="+", help="LISTEN_PORT:UPSTREAM_PORT:ONE_WAY_MS[:NAME]")
    parser.add_argument("--max-seconds", type=float, default=900.0)
    args = parser.parse_args(argv)
    links = [Link.parse(spec) for spec in args.links]

    def ready() -> None:
        for link in links:
            print(f"link {link.name or '-'} :{link.listen_port} -> :{link.upstream_port}"
                  f" +{link.one_way_ms:g} ms each way", flush=True)
        print("ready", flush=True)

    asyncio.run(serve(links, max_seconds=args.max_seconds, ready=ready))
    return 0


if __name__ == "__main__":
    sys.exit(main())
