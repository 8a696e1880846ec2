"""``manage.py chat_client ROOM --user alice``: a terminal client for the chat socket.

The article names poor debugging tools (``wscat``) as a WebSocket weakness; this is
ours. It gets a ticket for the user, connects, joins the room, prints every frame
readably (``--raw`` prints the JSON), sends each typed line as a message, and shows
reconnects. The connection is :class:`realtime.client.ResumingClient`'s: backoff with
full jitter, re-join from the last contiguous seq, unconfirmed lines resent with their
``client_id`` — the same guarantees as the browser client.

Lines starting with ``/`` are commands: ``/raw {json}`` sends a frame as is,
``/join ROOM``, ``/leave``, ``/ping``, ``/quit``. At the end of input (a pipe), it
waits for its messages to be confirmed, then exits.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from realtime.auth import ticket_issue
from realtime.client import CLOSED, CONNECTED, RECONNECTING, ResumingClient
from realtime.protocol import NO_RECONNECT


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


class Terminal:
    """The terminal's side of one client: a ticket per connect, state lines, and the printer."""

    def __init__(self, *, url: str, user: Any, room: str, raw: bool, out: Any, ticket: str | None) -> None:
        self.url, self.user, self.room, self.raw, self.out = url, user, room, raw, out
        self.fixed_ticket = ticket
        self.client = ResumingClient(url, rooms=[room], ticket=self._ticket, on_state=self.on_state,
                                     client_id_prefix="cli")

    def say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    async def _ticket(self) -> str:
        if self.fixed_ticket:
            ticket, self.fixed_ticket = self.fixed_ticket, None
            return ticket
        return await sync_to_async(ticket_issue)(user=self.user)

    def on_state(self, state: str, info: dict[str, Any]) -> None:
        """Connection changes as lines: connected, why a connect failed, the wait before the next."""
        if state == CONNECTED:
            self.say(f"* connected to {self.url} as {self.user.get_username()}")
        elif state == RECONNECTING and "delay" in info:
            if info.get("error"):
                self.say(f"! {info['error']}")
            self.say(f"~ disconnected ({info.get('code')}); reconnecting in {info['delay']:.1f} s")
        elif state == CLOSED and info.get("code") in NO_RECONNECT:
            self.say(f"! closed with {info['code']}; not reconnecting")

    async def print_events(self) -> None:
        """Every event the client delivers, as a line, until it closes."""
        async for event in self.client:
            self.say(json.dumps(event, ensure_ascii=False) if self.raw else render(event))


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
        terminal = Terminal(url=url, user=account, room=room, raw=raw, out=sys.stdout, ticket=ticket)
        try:
            asyncio.run(self._main(terminal, wait))
        except KeyboardInterrupt:
            pass

    async def _main(self, terminal: Terminal, wait: float) -> None:
        client = terminal.client
        loop = asyncio.get_running_loop()
        async with client:
            printer = loop.create_task(terminal.print_events())
            try:
                # Typed (or piped) input starts once the room is joined, so nothing races the join.
                await client.wait_joined(terminal.room, wait)
            except TimeoutError:
                terminal.say("! not joined yet; lines are sent once the connection is up")
            while client.running:
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
                    await self._command(terminal, command, rest.strip())
                    continue
                try:
                    client.send_message(terminal.room, line)
                except ValueError:
                    terminal.say(f"! not in #{terminal.room}: /join a room first")
            await client.settle(timeout=wait)
            await asyncio.sleep(0.3)  # replies to the last frames (errors, pongs) still print
            if client.pending:
                terminal.say(f"! {len(client.pending)} message(s) not confirmed")
        await printer

    async def _command(self, terminal: Terminal, command: str, rest: str) -> None:
        client = terminal.client
        if command == "/raw":
            try:
                frame = json.loads(rest)
            except ValueError:
                terminal.say("! /raw needs a JSON object")
                return
            await client.send(frame)
        elif command == "/join" and rest:
            terminal.room = rest
            await client.join(rest)
        elif command == "/leave":
            await client.leave(terminal.room)
        elif command == "/ping":
            await client.ping()
        else:
            terminal.say("! commands: /raw JSON, /join ROOM, /leave, /ping, /quit")
