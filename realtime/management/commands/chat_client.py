"""``manage.py chat_client ROOM --user alice``: a terminal client for the chat socket.

The article names poor debugging tools (``wscat``) as a WebSocket weakness; this is
ours. It gets a ticket for the user, connects, joins the room, prints every frame
readably (``--raw`` prints the JSON), sends each typed line as a message, and shows
reconnects: after a drop it reconnects with backoff and full jitter, re-joins with
``last_seq`` and resends unconfirmed lines with their ``client_id`` — the same
guarantees as the browser client.

Lines starting with ``/`` are commands: ``/raw {json}`` sends a frame as is,
``/join ROOM``, ``/leave``, ``/ping``, ``/quit``. At the end of input (a pipe), it
waits for its messages to be confirmed, then exits.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import uuid
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from realtime.auth import ticket_issue


def _clock(ts: str | None = None) -> str:
    return time.strftime("%H:%M:%S") if not ts else ts[11:19]


def render(event: dict[str, Any]) -> str:
    """One event as a readable line."""
    kind = event.get("type")
    room = event.get("room")
    if kind == "message":
        when = _clock(event.get("ts"))
        return f"[{when}] #{room} <{event.get('author')}> {event.get('body')}  (seq {event.get('seq')})"
    if kind == "joined":
        people = ", ".join(event.get("presence", []))
        reset = " (history reset)" if event.get("reset") else ""
        return f"* joined #{room} at seq {event.get('seq')}{reset}; here: {people}"
    if kind == "presence":
        parts = [f"+{n}" for n in event.get("joined", [])] + [f"-{n}" for n in event.get("left", [])]
        return f"* #{room} presence: {' '.join(parts)}"
    if kind == "typing":
        return f"* #{room} {event.get('user')} is typing…"
    if kind == "error":
        extra = {k: v for k, v in event.items() if k not in ("type", "code", "detail")}
        return f"! error {event.get('code')}: {event.get('detail')} {json.dumps(extra) if extra else ''}".rstrip()
    if kind == "message.updated":
        return f"* #{room} message {event.get('seq')} edited: {event.get('body')}"
    if kind == "message.deleted":
        return f"* #{room} message {event.get('seq')} deleted"
    if kind == "announcement":
        return f"📣 {event.get('body')}"
    if kind == "mention":
        return f"@ {event.get('author')} mentioned you in #{room}: {event.get('body')}"
    if kind == "pong":
        return f"* pong ({(time.time() * 1000 - event['t']):.1f} ms)" if isinstance(event.get("t"), float) else "* pong"
    return f"* {json.dumps(event, ensure_ascii=False)}"


class Client:
    """The connection loop: connect, join, read, resend, reconnect."""

    def __init__(self, *, url: str, user: Any, room: str, raw: bool, out: Any, ticket: str | None) -> None:
        self.url, self.user, self.room, self.raw, self.out = url, user, room, raw, out
        self.fixed_ticket = ticket
        self.last_seq: int | None = None
        self.pending: dict[str, dict[str, Any]] = {}
        self.ws: Any = None
        self.attempt = 0
        self.done = False
        self.joined = asyncio.Event()

    def say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    async def _ticket(self) -> str:
        if self.fixed_ticket:
            ticket, self.fixed_ticket = self.fixed_ticket, None
            return ticket
        from asgiref.sync import sync_to_async

        return await sync_to_async(ticket_issue)(user=self.user)

    async def send(self, frame: dict[str, Any]) -> None:
        if self.ws is not None:
            try:
                await self.ws.send(json.dumps(frame))
            except Exception:
                pass  # the reader notices the drop and reconnects; pending lines are resent

    async def post(self, body: str) -> None:
        frame = {"type": "message", "room": self.room, "body": body, "client_id": f"cli-{uuid.uuid4().hex[:16]}"}
        self.pending[frame["client_id"]] = frame
        await self.send(frame)

    async def run(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus, WebSocketException

        while not self.done:
            try:
                ticket = await self._ticket()
                async with connect(f"{self.url}?ticket={ticket}", open_timeout=10, max_size=2**20) as ws:
                    self.ws = ws
                    self.say(f"* connected to {self.url} as {self.user.get_username()}")
                    join: dict[str, Any] = {"type": "join", "room": self.room}
                    if self.last_seq is not None:
                        join["last_seq"] = self.last_seq
                    await ws.send(json.dumps(join))
                    connected_at = time.monotonic()
                    async for data in ws:
                        if time.monotonic() - connected_at > 10:
                            self.attempt = 0
                        self.handle(json.loads(data))
                    code = ws.close_code
            except InvalidStatus as exc:
                code = exc.response.status_code
                self.say(f"! handshake refused: HTTP {code}")
            except (TimeoutError, OSError, WebSocketException) as exc:
                code = None
                self.say(f"! connection failed: {type(exc).__name__}")
            self.ws = None
            if self.done:
                return
            if code in (4001, 4003, 4029):
                self.say(f"! closed with {code}; not reconnecting")
                self.done = True
                return
            delay = random.uniform(0, min(30.0, 2.0 ** self.attempt))
            self.attempt += 1
            self.say(f"~ disconnected ({code}); reconnecting in {delay:.1f} s")
            await asyncio.sleep(delay)

    def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "joined" and event.get("room") == self.room:
            self.joined.set()
            if event.get("reset") or self.last_seq is None:
                self.last_seq = event.get("seq")
            asyncio.get_running_loop().create_task(self._resend())
        if kind in ("message", "message.deleted") and event.get("room") == self.room:
            self.last_seq = max(self.last_seq or 0, event.get("seq", 0))
            self.pending.pop(event.get("client_id"), None)
        self.say(json.dumps(event, ensure_ascii=False) if self.raw else render(event))

    async def _resend(self) -> None:
        for frame in list(self.pending.values()):
            await self.send(frame)


class Command(BaseCommand):
    help = "Chat from the terminal: join ROOM as --user, print frames, send typed lines, reconnect on drops."

    def add_arguments(self, parser):
        parser.add_argument("room")
        parser.add_argument("--user", required=True, help="the username to chat as (a ticket is issued for it)")
        parser.add_argument("--url", default="ws://127.0.0.1:8000/ws/chat/", help="the socket URL")
        parser.add_argument("--ticket", help="use this ticket for the first connection (e.g. from another host)")
        parser.add_argument("--raw", action="store_true", help="print frames as JSON")
        parser.add_argument("--wait", type=float, default=10.0, help="seconds to wait for confirmations at EOF")

    def handle(self, *args, room: str, user: str, url: str, ticket: str | None, raw: bool, wait: float, **options):
        account = get_user_model().objects.filter(username=user, is_active=True).first()
        if account is None:
            raise CommandError(f"no active user {user!r}")
        client = Client(url=url, user=account, room=room, raw=raw, out=sys.stdout, ticket=ticket)
        try:
            asyncio.run(self._main(client, wait))
        except KeyboardInterrupt:
            pass

    async def _main(self, client: Client, wait: float) -> None:
        runner = asyncio.get_running_loop().create_task(client.run())
        loop = asyncio.get_running_loop()
        try:
            # Typed (or piped) input starts once the room is joined, so nothing races the join.
            await asyncio.wait_for(client.joined.wait(), wait)
        except TimeoutError:
            client.say("! not joined yet; lines are sent once the connection is up")
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if line.startswith("/"):
                command, _, rest = line.partition(" ")
                if command == "/quit":
                    break
                if command == "/raw":
                    try:
                        await client.send(json.loads(rest))
                    except ValueError:
                        client.say("! /raw needs a JSON object")
                elif command == "/join":
                    client.room, client.last_seq = rest.strip(), None
                    await client.send({"type": "join", "room": client.room})
                elif command == "/leave":
                    await client.send({"type": "leave", "room": client.room})
                elif command == "/ping":
                    await client.send({"type": "ping", "t": time.time() * 1000})
                else:
                    client.say("! commands: /raw JSON, /join ROOM, /leave, /ping, /quit")
                continue
            await client.post(line)
        deadline = time.monotonic() + wait
        while client.pending and time.monotonic() < deadline and not runner.done():
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # replies to the last frames (errors, pongs) still print
        if client.pending:
            client.say(f"! {len(client.pending)} message(s) not confirmed")
        client.done = True
        if client.ws is not None:
            await client.ws.close()
        runner.cancel()
