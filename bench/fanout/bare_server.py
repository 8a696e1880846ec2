"""The upper bound: a bare ``websockets`` server, compression off, speaking the stock chat's protocol.

    .venv/bin/python bench/fanout/bare_server.py --port PORT

* ``/room/<name>``: join room ``name`` by connecting; a text frame ``{"message": X}`` from
  any member goes to every member of the room (the sender too) as ``{"message": X}``,
  encoded once and written with ``websockets.asyncio.server.broadcast``.
* ``/echo``: every frame comes back unchanged.

No authentication, no storage, no layer: what one Python process can do at best.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

ROOMS: dict[str, set[ServerConnection]] = {}


async def handler(ws: ServerConnection) -> None:
    path = ws.request.path if ws.request is not None else "/"
    if path.rstrip("/") == "/echo":
        try:
            async for frame in ws:
                await ws.send(frame)
        except ConnectionClosed:
            pass
        return
    if not path.startswith("/room/"):
        await ws.close(1008, "unknown path")
        return
    name = path[len("/room/"):].strip("/")
    members = ROOMS.setdefault(name, set())
    members.add(ws)
    try:
        async for frame in ws:
            try:
                message = json.loads(frame)["message"]
            except (ValueError, KeyError, TypeError):
                continue
            broadcast(members, json.dumps({"message": message}))
    except ConnectionClosed:
        pass
    finally:
        members.discard(ws)
        if not members:
            ROOMS.pop(name, None)


async def main(host: str, port: int) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with serve(handler, host, port, compression=None, max_size=2**16):
        await stop


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main(args.host, args.port))
