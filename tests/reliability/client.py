"""The fault tests' member of the chat: :class:`realtime.client.ResumingClient`, with a record of what it showed.

The resuming itself (reconnect with backoff, moving to the next server after a failed
connect, re-join from the last contiguous seq, resend by ``client_id``, re-join on a
gap) is the client module's; this only logs in as a test user and records every
message event the module delivers, so a test can check that every committed message
reached the member exactly once.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from asgiref.sync import sync_to_async

from realtime import client


class ResumingClient(client.ResumingClient):
    """One member in ``room`` on one of ``urls`` (``ws://host:port``), logged in by session cookie."""

    def __init__(self, user: Any, urls: list[str], room: str = "lobby", *, ssl: Any = None,
                 origin: str | None = None) -> None:
        super().__init__(
            [f"{url}/ws/chat/" for url in urls], rooms={room: 0},  # tests start with an empty room
            ssl=ssl, origin=origin, backoff=client.Backoff(base=0.2, cap=2.0), stable_after=0, open_timeout=5,
            on_state=self._on_state, client_id_prefix="t",
        )
        self.user = user
        self.room = room
        self.seqs: Counter[int] = Counter()  # every message seq delivered (must stay at 1 each)
        self.shown: dict[int, str] = {}  # seq -> the body shown for it
        self.closes: list[int | str | None] = []  # why each socket or connect ended
        self.errors: list[dict[str, Any]] = []
        self._recorder: asyncio.Task | None = None

    @property
    def opened(self) -> int:
        """Sockets opened: 1 if the first one lasted to the end."""
        return self.connections

    @property
    def last_seq(self) -> int | None:
        return self.rooms[self.room].last_seq

    async def start(self) -> ResumingClient:  # type: ignore[override]
        """Connect and wait until the room is joined."""
        # Session cookies live in the database, so they work against any cluster's Redis.
        if not hasattr(self, "_cookie_value"):
            from tests.conftest import cookie_header

            self._cookie_value = await sync_to_async(cookie_header)(self.user)
        self.cookie = self._cookie_value
        super().start()
        self._recorder = asyncio.get_running_loop().create_task(self._record())
        await self.wait_joined(self.room, 20)
        return self

    async def stop(self) -> None:
        await self.close()
        if self._recorder is not None:
            await asyncio.wait_for(self._recorder, 5)

    async def say(self, body: str) -> None:
        self.send_message(self.room, body)

    async def settle(self, *, timeout: float = 30.0) -> None:  # type: ignore[override]
        """Wait until every message sent was confirmed."""
        await super().settle(timeout)
        assert not self.pending, f"{self.user}: unconfirmed {list(self.pending.values())}"

    def _on_state(self, state: str, info: dict[str, Any]) -> None:
        if state == client.RECONNECTING and "delay" in info:
            self.closes.append(info.get("code") if info.get("code") is not None else info.get("error"))

    async def _record(self) -> None:
        async for event in self:
            if event["type"] == "message" and event.get("room") == self.room:
                self.seqs[event["seq"]] += 1
                self.shown.setdefault(event["seq"], event.get("body"))
            elif event["type"] == "error":
                self.errors.append(event)
