"""HTTP long-polling: the fallback transport when a proxy blocks WebSocket upgrades.

It carries the same protocol with the same authentication by running the very same
consumer: ``open`` starts the project's ASGI application (``ASGI_APPLICATION``) with a
WebSocket scope for the route ``REALTIME_LONGPOLL_PATH`` (the chat's ``/ws/chat/``) on a
*virtual socket* inside this process, fed by ``send`` and drained by ``poll``. So Origin
checks, tickets, sessions, rate limits, presence and resume are shared code, not a second
implementation, and this module names no app: the settings say which route it serves.

    POST /rt/lp/open/   (cookie or ?ticket=)     -> {"sid", "cursor": 0, "protocol"}   | 403
    POST /rt/lp/poll/   {"sid", "cursor"}        -> {"events": [...], "cursor", "closed": code|null} | 404
    POST /rt/lp/send/   {"sid", "frames": [obj]} -> 204 | 404
    POST /rt/lp/close/  {"sid"}                  -> 204

A poll waits up to ``POLL_WAIT`` seconds for events. A session lives in the process that
opened it. Between machines the load balancer's stickiness keeps a client there; between
the processes of one machine (``realtime.web``, which spreads each new TCP connection over
its children) a session id names its process, and a request that reached another one is
forwarded over that process's private unix socket (``WEB_PEER_DIR``). A client whose
session is unknown (404) opens a new one and re-joins with ``last_seq``, losing nothing.
Sessions not polled for ``IDLE_TIMEOUT`` seconds are closed like a vanished socket.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from typing import Any

import httpx
from channels.generic.http import AsyncHttpConsumer
from django.conf import settings
from django.utils.module_loading import import_string

from realtime.handshake import origin_allowed
from realtime.protocol import CloseCode
from realtime.runtime import runtime
from realtime.web import peer_socket_path

logger = logging.getLogger(__name__)

POLL_WAIT = 25.0
IDLE_TIMEOUT = 45.0
MAX_BUFFERED = 2000
MAX_BODY = 256 * 1024
MAX_FRAMES_PER_SEND = 50
# Marks a request one web process forwarded to another, which must not forward it again.
FORWARDED = b"x-realtime-forwarded"
# Headers that describe the hop, not the request; httpx sets its own.
HOP_HEADERS = {b"host", b"content-length", b"connection", b"keep-alive", b"transfer-encoding", FORWARDED}


def session_id() -> str:
    """A new unguessable session id; under realtime.web it starts with this process's index."""
    token = secrets.token_urlsafe(24)  # url-safe base64: never contains "."
    index = settings.WEB_PROCESS_INDEX
    return f"{index}.{token}" if index else token


def session_owner(sid: str) -> str | None:
    """The index of the web process that holds session ``sid``, if it names one."""
    owner, dot, _ = sid.partition(".")
    return owner if dot and owner.isdigit() else None


class VirtualSocket:
    """One long-polling client: a WebSocket application instance driven over HTTP."""

    def __init__(self, app: Any, scope: dict[str, Any]) -> None:
        self.sid = session_id()
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.events: list[dict[str, Any]] = []
        self.base = 0  # cursor of events[0]
        self.closed: int | None = None
        self.accepted = asyncio.Event()  # set on accept or on a close before it
        self.did_accept = False
        self.changed = asyncio.Event()
        self.last_seen = time.monotonic()
        self.user_id: int | None = None
        # The HTTP route's match is dropped: the WebSocket router routes this scope afresh.
        path = scope.get("root_path", "") + settings.REALTIME_LONGPOLL_PATH
        self.scope = {
            **{k: v for k, v in scope.items() if k not in ("path_remaining", "url_route")},
            "type": "websocket", "subprotocols": [], "path": path, "raw_path": path.encode(),
        }
        self.inbox.put_nowait({"type": "websocket.connect"})
        self.task = asyncio.get_running_loop().create_task(app(self.scope, self.inbox.get, self._send))

    async def _send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "websocket.accept":
            self.did_accept = True
            self.accepted.set()
        elif kind == "websocket.send":
            text = message.get("text")
            if text is not None:
                self.events.append(json.loads(text))
                if len(self.events) > MAX_BUFFERED:
                    # A client that stopped polling must not grow memory without bound.
                    self.closed = CloseCode.GOING_AWAY
                    await self.end()
        elif kind == "websocket.close":
            self.closed = message.get("code", CloseCode.NORMAL)
            self.accepted.set()
        self.changed.set()

    async def feed(self, frame: dict[str, Any]) -> None:
        """A client frame, as if it came over the socket."""
        self.last_seen = time.monotonic()
        await self.inbox.put({"type": "websocket.receive", "text": json.dumps(frame)})

    async def poll(self, cursor: int, wait: float) -> tuple[list[dict[str, Any]], int, int | None]:
        """Events from ``cursor`` on (waiting up to ``wait`` s for some); drops those acknowledged."""
        self.last_seen = time.monotonic()
        if cursor > self.base:
            drop = min(cursor - self.base, len(self.events))
            del self.events[:drop]
            self.base += drop
        if not self.events and self.closed is None:
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), wait)
            except TimeoutError:
                pass
        self.last_seen = time.monotonic()
        return list(self.events), self.base + len(self.events), self.closed

    async def end(self, code: int = CloseCode.GOING_AWAY) -> None:
        """Disconnect the virtual socket: the consumer cleans up as for a closed socket."""
        if self.task.done():
            return
        await self.inbox.put({"type": "websocket.disconnect", "code": code})
        try:
            await asyncio.wait_for(asyncio.shield(self.task), 5)
        except (TimeoutError, Exception):
            self.task.cancel()


class _Registry:
    """This loop's virtual sockets by session id, kept on its runtime (realtime.runtime), swept when idle."""

    @property
    def sockets(self) -> dict[str, VirtualSocket]:
        return runtime().longpoll

    def add(self, vs: VirtualSocket) -> None:
        rt = runtime()
        rt.longpoll[vs.sid] = vs
        rt.run("longpoll-sweep", self._sweep_forever)

    async def _sweep_forever(self) -> None:
        sockets = self.sockets
        while sockets:
            await asyncio.sleep(5)
            now = time.monotonic()
            for sid, vs in list(sockets.items()):
                if vs.task.done() or now - vs.last_seen > IDLE_TIMEOUT:
                    sockets.pop(sid, None)
                    await vs.end()


registry = _Registry()


def _app() -> Any:
    """The ASGI application a session runs: the project's own, by its setting, not by import.

    (Looked up when a session opens: ``ASGI_APPLICATION``'s module imports this one.)
    """
    return import_string(settings.ASGI_APPLICATION)


class LongPollConsumer(AsyncHttpConsumer):
    """``/rt/lp/<action>/``: open, poll, send, close."""

    # The virtual socket gets its broadcasts through the hub; a request needs no layer channel.
    channel_layer_alias = "__no_channel_layer__"

    async def _json(self, status: int, payload: Any = None) -> None:
        body = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        headers = [(b"Cache-Control", b"no-store"), (b"Content-Type", b"application/json")]
        await self.send_response(status, body, headers=headers)

    async def handle(self, body: bytes) -> None:
        action = self.scope["url_route"]["kwargs"]["action"]
        if self.scope["method"] != "POST":
            return await self._json(405, {"error": "method_not_allowed"})
        if len(body) > MAX_BODY:
            return await self._json(413, {"error": "too_large"})
        if action == "open":
            return await self._open()
        headers = dict(self.scope.get("headers", []))
        if not origin_allowed(headers.get(b"origin"), missing_ok=True):
            return await self._json(403, {"error": "origin"})
        try:
            data = json.loads(body or b"{}")
            vs = registry.sockets.get(str(data.get("sid", "")))
        except (ValueError, AttributeError):
            return await self._json(400, {"error": "invalid_json"})
        if vs is None:
            owner = session_owner(str(data.get("sid", "")))
            if owner is not None and owner != settings.WEB_PROCESS_INDEX and FORWARDED not in headers:
                if await self._forward(owner, body):
                    return
            return await self._json(404, {"error": "unknown_session"})
        if action == "poll":
            cursor = data.get("cursor", 0)
            if not isinstance(cursor, int) or isinstance(cursor, bool) or cursor < 0:
                return await self._json(400, {"error": "invalid_cursor"})
            events, cursor, closed = await vs.poll(cursor, POLL_WAIT)
            if closed is not None and not events:
                registry.sockets.pop(vs.sid, None)
            return await self._json(200, {"events": events, "cursor": cursor, "closed": closed})
        if action == "send":
            frames = data.get("frames")
            if not isinstance(frames, list) or len(frames) > MAX_FRAMES_PER_SEND:
                return await self._json(400, {"error": "invalid_frames"})
            for frame in frames:
                await vs.feed(frame)
            return await self._json(204)
        if action == "close":
            registry.sockets.pop(vs.sid, None)
            await vs.end(CloseCode.NORMAL)
            return await self._json(204)
        return await self._json(404, {"error": "unknown_action"})

    async def _forward(self, owner: str, body: bytes) -> bool:
        """Pass this request to web process ``owner`` and its answer back; False if it is gone.

        The sibling listens on ``WEB_PEER_DIR/<index>.sock`` (realtime.web makes the
        directory, private to the launcher's user). A poll held there is held here too.
        """
        if not settings.WEB_PEER_DIR:
            return False
        path = peer_socket_path(settings.WEB_PEER_DIR, owner)
        if not path.exists():
            return False
        headers = [(k, v) for k, v in self.scope.get("headers", []) if k.lower() not in HOP_HEADERS]
        headers.append((FORWARDED, b"1"))
        url = "http://web" + self.scope["path"]
        if self.scope.get("query_string"):
            url += "?" + self.scope["query_string"].decode("latin-1")
        transport = httpx.AsyncHTTPTransport(uds=str(path))
        try:
            async with httpx.AsyncClient(transport=transport, timeout=POLL_WAIT + 10) as client:
                response = await client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            logger.warning("long-poll forward to web process %s failed: %s", owner, type(exc).__name__)
            return False
        keep = {b"cache-control", b"content-type", b"retry-after"}
        await self.send_response(
            response.status_code, response.content,
            headers=[(k, v) for k, v in response.headers.raw if k.lower() in keep],
        )
        return True

    async def _open(self) -> None:
        vs = VirtualSocket(_app(), self.scope)
        try:
            await asyncio.wait_for(vs.accepted.wait(), 10)
        except TimeoutError:
            await vs.end()
            return await self._json(503, {"error": "unavailable"})
        if not vs.did_accept:
            # Refused before accept, exactly as a WebSocket handshake would be; unlike a
            # handshake, the answer can say when a locked-out account may retry.
            from channels.db import database_sync_to_async

            from realtime.lockout import handshake_lockout_until, lockout_payload

            until = await database_sync_to_async(handshake_lockout_until)(self.scope)
            if until is not None:
                return await self._json(429, lockout_payload(until))
            return await self._json(403, {"error": "forbidden"})
        registry.add(vs)
        await self._json(200, {"sid": vs.sid, "cursor": 0, "protocol": "chat.v1.json"})
