"""A resuming chat client for fault tests: what the browser client does, in Python.

It keeps one socket open to one of several servers, reconnects with backoff when the
socket dies or a handshake fails, re-joins with ``last_seq``, resends unconfirmed
messages with their ``client_id``, and re-joins when it notices a gap in seq. It
records every message event it receives, so a test can check that every committed
message reached it exactly once.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from typing import Any

from asgiref.sync import sync_to_async
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus, WebSocketException


class ResumingClient:
    def __init__(self, user: Any, urls: list[str], room: str = "lobby", *, ssl: Any = None,
                 origin: str | None = None) -> None:
        self.user = user
        self.ssl = ssl  # for wss:// through a TLS-terminating edge
        self.origin = origin
        self.urls = urls  # ws://host:port ; tried in order, moving on after a failure
        self.room = room
        self.seqs: Counter[int] = Counter()  # every message seq shown to the user (must stay at 1 each)
        self.shown: dict[int, str] = {}  # seq -> the body shown for it (the first that arrived)
        self.last_seq = 0  # tests start with an empty room
        self.pending: dict[str, dict[str, Any]] = {}
        self.closes: list[int | None] = []
        self.opened = 0  # sockets opened: 1 if the first one lasted to the end
        self.errors: list[dict[str, Any]] = []
        self.connected = asyncio.Event()
        self.ws: Any = None
        self._task: asyncio.Task | None = None
        self._stop = False
        self._server = 0
        self._gap_since: float | None = None

    async def start(self) -> ResumingClient:
        self._task = asyncio.get_running_loop().create_task(self._run())
        await asyncio.wait_for(self.connected.wait(), 20)
        return self

    async def stop(self) -> None:
        self._stop = True
        if self.ws is not None:
            await self.ws.close()
        if self._task is not None:
            self._task.cancel()

    async def say(self, body: str) -> None:
        frame = {"type": "message", "room": self.room, "body": body, "client_id": "t-" + uuid.uuid4().hex[:12]}
        self.pending[frame["client_id"]] = frame
        await self._send(frame)

    async def settle(self, *, timeout: float = 30.0) -> None:
        """Wait until every message sent was confirmed."""
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert not self.pending, f"{self.user}: unconfirmed {list(self.pending.values())}"

    async def _send(self, frame: dict[str, Any]) -> None:
        if self.ws is not None:
            try:
                await self.ws.send(json.dumps(frame))
            except WebSocketException:
                pass

    async def _cookie(self) -> str:
        # Session cookies live in the database, so they work against any cluster's Redis.
        from tests.conftest import cookie_header

        if not hasattr(self, "_cookie_value"):
            self._cookie_value = await sync_to_async(cookie_header)(self.user)
        return self._cookie_value

    async def _run(self) -> None:
        attempt = 0
        while not self._stop:
            url = self.urls[self._server % len(self.urls)]
            try:
                cookie = await self._cookie()
                origin = self.origin or "http://" + url.split("://", 1)[1]
                extra = {"ssl": self.ssl} if self.ssl is not None else {}
                async with connect(
                    f"{url}/ws/chat/", origin=origin, additional_headers={"Cookie": cookie},
                    open_timeout=5, close_timeout=2, **extra,
                ) as ws:
                    self.ws = ws
                    self.opened += 1
                    attempt = 0
                    await self._join()
                    checker = asyncio.get_running_loop().create_task(self._gap_checker())
                    try:
                        async for data in ws:
                            await self._on(json.loads(data))
                    finally:
                        checker.cancel()
                    self.closes.append(ws.close_code)
            except (TimeoutError, OSError, InvalidStatus, WebSocketException) as exc:
                self.closes.append(getattr(getattr(exc, "response", None), "status_code", None))
                self._server += 1  # try the next server
            except Exception as exc:  # ticket issue while Redis is down, etc.
                self.closes.append(type(exc).__name__)
            self.ws = None
            self.connected.clear()
            if self._stop:
                return
            await asyncio.sleep(random.uniform(0, min(2.0, 0.2 * 2**attempt)))
            attempt += 1

    async def _join(self) -> None:
        await self._send({"type": "join", "room": self.room, "last_seq": self.last_seq})

    async def _gap_checker(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            if self._gap_since is not None and time.monotonic() - self._gap_since > 1.0:
                self._gap_since = None
                await self._join()  # a seq is missing: ask for everything after our position

    async def _on(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "joined":
            self.connected.set()
            for frame in list(self.pending.values()):
                await self._send(frame)
        elif kind == "message" and event.get("room") == self.room:
            seq = event["seq"]
            self.seqs[seq] = 1  # shown once, however often it arrives (resume overlaps live)
            self.shown.setdefault(seq, event.get("body"))
            self.pending.pop(event.get("client_id"), None)
            contiguous = self.last_seq
            while self.seqs[contiguous + 1]:
                contiguous += 1
            self.last_seq = contiguous
            missing = any(s > self.last_seq for s in self.seqs)
            self._gap_since = (self._gap_since or time.monotonic()) if missing else None
        elif kind == "error":
            self.errors.append(event)
            if event.get("code") == "unavailable" and event.get("client_id") in self.pending:
                frame = self.pending[event["client_id"]]
                asyncio.get_running_loop().call_later(0.5, lambda: asyncio.ensure_future(self._send(frame)))
