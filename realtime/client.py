"""A resuming Python client of the real-time socket: what static/js/realtime-client.js does, for scripts.

One socket, kept open: it reconnects with exponential backoff and full jitter, re-joins
every room with ``last_seq`` (the last *contiguous* seq it delivered, so a gap is
filled, never skipped), delivers each room's seqs once and in order, re-joins when a
gap does not fill by itself, resends unconfirmed messages with their ``client_id``
(the server stores a repeated id once), sends an application heartbeat, and stops for
good on the close codes that forbid reconnecting (``protocol.NO_RECONNECT``). A busy
server's refusals (a handshake answered 503 with ``Retry-After``, a join answered
``unavailable`` with ``retry_after``: realtime.admission) are retried after the wait the
server asked for, plus up to a quarter again of jitter.

    async with ResumingClient("ws://127.0.0.1:8000/ws/chat/", cookie=..., rooms=["lobby"]) as client:
        await client.wait_joined("lobby")
        client.send_message("lobby", "hello")
        async for event in client:
            print(event)

The terminal client (``manage.py chat_client``), the fault tests and
``deploy/simulate_regions.py`` use it. It speaks the chat's frames (``join``,
``message``, ``ping``...) by their wire names only, and imports no app.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import msgpack

from realtime.protocol import NO_RECONNECT, SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, CloseCode, ErrorCode

logger = logging.getLogger(__name__)

#: Events that carry a room's seq and advance its position (a tombstone keeps its seq).
SEQ_EVENTS = frozenset({"message", "message.deleted"})
#: Error codes after which a message is retried later with the same client_id.
RETRY_ERRORS = frozenset({ErrorCode.RATE_LIMITED, ErrorCode.UNAVAILABLE})

#: Connection states passed to ``on_state``.
CONNECTING, CONNECTED, RECONNECTING, CLOSED = "connecting", "connected", "reconnecting", "closed"

_END = object()  # ends the event iterator


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits random(0, min(cap, base * 2**n)) seconds.

    Full jitter spreads the reconnects of every client of a restarted server over the
    window instead of bringing them back together (the browser client does the same).
    """

    base: float = 1.0
    cap: float = 30.0
    random: Callable[[], float] = random.random

    def ceiling(self, attempt: int) -> float:
        """The longest wait of attempt ``attempt`` (0 is the first retry)."""
        return min(self.cap, self.base * 2 ** max(0, attempt))

    def delay(self, attempt: int) -> float:
        """A wait drawn for attempt ``attempt``: from 0 up to (not including) its ceiling."""
        return self.random() * self.ceiling(attempt)

    def after(self, retry_after: float) -> float:
        """A wait for a server that said ``Retry-After``: at least that, plus up to a quarter again (jitter)."""
        return max(0.0, retry_after) * (1.0 + 0.25 * self.random())


def retry_after_of(response: Any) -> float | None:
    """The seconds of a refused handshake's ``Retry-After`` header (None: absent or not a number)."""
    try:
        value = response.headers.get("Retry-After")
        return float(value) if value is not None else None
    except (AttributeError, TypeError, ValueError):
        return None


@dataclass
class RoomState:
    """What the client knows of one joined room.

    ``last_seq`` is the last contiguous seq delivered (None before the first join);
    ``ahead`` holds events past a gap until the gap fills; ``fresh`` is the seq a join
    without ``last_seq`` started at: the page of history up to it is delivered as it
    comes, each seq once (``page``).
    """

    last_seq: int | None = None
    ahead: dict[int, dict[str, Any]] = field(default_factory=dict)
    joined: bool = False
    fresh: int | None = None
    page: set[int] = field(default_factory=set)
    gap_since: float | None = None


def with_ticket(url: str, ticket: str) -> str:
    """``url`` with ``ticket=`` added to its query."""
    return f"{url}{'&' if '?' in url else '?'}ticket={ticket}"


def site_origin(url: str) -> str:
    """The http(s) origin of a ws(s) URL: the Origin a page of that site sends."""
    parts = urlsplit(url)
    return f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"


def client_id_new(prefix: str = "py") -> str:
    """A fresh idempotency key for one message."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


class ResumingClient:
    """A chat socket that survives drops: resume by contiguous seq, resend by client_id, backoff.

    ``url`` is one socket URL, several (tried in turn, moving on after a connect that
    failed), or an async callable that returns the URL before each connect (an edge
    router). Authentication: a ``cookie`` header value (the session; ``origin`` then
    defaults to the URL's own site, as a page of that site would send), or ``ticket``, an
    async callable issuing a single-use ticket for each connect. ``encoding`` is
    ``"json"`` or ``"msgpack"`` (offered as subprotocol; the server's choice is used).

    ``on_state(state, info)`` is called on every state change: ``connecting``,
    ``connected``, ``reconnecting`` (``info`` has ``code``, ``delay``, ``error``) and
    ``closed``. ``on_connect_failed(failures)`` is awaited after each connect that never
    opened, with the number of such failures in a row; returning True (e.g. "moved to
    another edge") starts the backoff over.

    Events are read with ``async for event in client``: every event the server sends,
    except that a room's seq events come once each and in seq order, held back while a
    gap is open. Read them, or they pile up. Iteration ends when the client is closed.
    """

    def __init__(
        self,
        url: str | Sequence[str] | Callable[[], Awaitable[str]],
        *,
        rooms: Iterable[str] | dict[str, int | None] = (),
        cookie: str | None = None,
        ticket: Callable[[], Awaitable[str]] | None = None,
        origin: str | None = None,
        ssl: Any = None,
        encoding: str = "json",
        backoff: Backoff | None = None,
        stable_after: float = 10.0,
        ping_interval: float = 25.0,
        pong_timeout: float = 10.0,
        gap_timeout: float = 1.0,
        open_timeout: float = 10.0,
        on_state: Callable[[str, dict[str, Any]], None] | None = None,
        on_connect_failed: Callable[[int], Awaitable[bool]] | None = None,
        client_id_prefix: str = "py",
    ) -> None:
        if encoding not in ("json", "msgpack"):
            raise ValueError("encoding must be 'json' or 'msgpack'")
        self._urls = [url] if isinstance(url, str) else None if callable(url) else list(url)
        self._url_provider = url if callable(url) else None
        self.cookie, self.ticket, self.origin, self.ssl = cookie, ticket, origin, ssl
        self.encoding = encoding
        self.backoff = backoff or Backoff()
        self.stable_after, self.ping_interval, self.pong_timeout = stable_after, ping_interval, pong_timeout
        self.gap_timeout, self.open_timeout = gap_timeout, open_timeout
        self.on_state, self.on_connect_failed = on_state, on_connect_failed
        self.client_id_prefix = client_id_prefix
        initial = rooms if isinstance(rooms, dict) else dict.fromkeys(rooms)
        self.rooms: dict[str, RoomState] = {slug: RoomState(last_seq=seq) for slug, seq in initial.items()}
        #: client_id -> frame, from send_message until the server echoes it.
        self.pending: dict[str, dict[str, Any]] = {}
        self.state = "idle"
        #: The close code (or HTTP status) that ended the client for good, if any.
        self.close_code: int | None = None
        self.url: str | None = None  # the URL of the current (or last) connection
        self.username: str | None = None  # from the server's hello
        self.protocol: str | None = None  # the negotiated subprotocol
        self.rtt_ms: float | None = None
        self.connections = 0  # sockets opened so far
        self.refusals = 0  # handshakes refused with 503 + Retry-After (admission control)
        self._ws: Any = None
        self._attempt = 0
        self._url_index = 0
        self._stopped = False
        self._task: asyncio.Task | None = None
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._joined: dict[str, asyncio.Event] = {}
        self._confirmed: dict[str, asyncio.Future] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._tasks: set[asyncio.Task] = set()  # sends in flight (a task needs a reference to live)
        self._pong: asyncio.Future | None = None
        self._heartbeat_t: float | None = None

    # --- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> ResumingClient:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> ResumingClient:
        """Start connecting in the background (``async with`` does this)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="resuming-client")
        return self

    async def close(self) -> None:
        """Close the socket normally and stop; the event iterator ends."""
        self._stopped = True
        for timer in self._timers:
            timer.cancel()
        ws = self._ws
        if ws is not None:
            try:
                await ws.close(CloseCode.NORMAL)
            except Exception:  # already gone
                pass
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._finish(self.close_code)

    @property
    def running(self) -> bool:
        """Whether the client still connects (False once closed, or after a no-reconnect code)."""
        return self._task is not None and not self._task.done()

    def drop(self) -> None:
        """Cut the socket now without a close frame, as a dead network would; the client reconnects."""
        ws = self._ws
        if ws is not None:
            ws.transport.abort()

    # --- rooms and messages -----------------------------------------------------------

    async def join(self, room: str, *, last_seq: int | None = None) -> None:
        """Join ``room`` now and after every reconnect, resuming after ``last_seq`` if given."""
        state = self.rooms.setdefault(room, RoomState())
        if last_seq is not None:
            state.last_seq = last_seq
        await self._send_join(room)

    async def leave(self, room: str) -> None:
        """Leave ``room``: no re-join after reconnects; its unconfirmed messages are dropped."""
        self._forget(room)
        await self.send({"type": "leave", "room": room})

    def _forget(self, room: str) -> None:
        self.rooms.pop(room, None)
        for client_id in [c for c, f in self.pending.items() if f.get("room") == room]:
            self._unpend(client_id, None)

    def send_message(self, room: str, body: str, *, client_id: str | None = None) -> str:
        """Post ``body`` to one of the client's rooms; returns its client_id.

        Sent once the room is joined, and resent (same client_id) after reconnects until echoed.
        """
        if room not in self.rooms:
            raise ValueError(f"join {room!r} first (rooms= or join())")
        frame = {"type": "message", "room": room, "body": body, "client_id": client_id or client_id_new(
            self.client_id_prefix)}
        self.pending[frame["client_id"]] = frame
        self._confirmed[frame["client_id"]] = asyncio.get_running_loop().create_future()
        self._spawn(self._try_send(frame))
        return frame["client_id"]

    async def confirmed(self, client_id: str, timeout: float | None = None) -> dict[str, Any] | None:
        """Wait for the server's echo of a sent message: the ``message`` event, or None if it was refused."""
        future = self._confirmed.get(client_id)
        if future is None:
            return None
        return await asyncio.wait_for(asyncio.shield(future), timeout)

    async def settle(self, timeout: float = 30.0) -> bool:
        """Wait until no sent message is unconfirmed (or the client stopped); whether none is left."""
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline and self.running:
            await asyncio.sleep(0.05)
        return not self.pending

    async def send(self, frame: dict[str, Any]) -> bool:
        """Send any frame on the current socket now; False if there is none (nothing is queued)."""
        ws = self._ws
        if ws is None:
            return False
        try:
            await ws.send(self._encode(frame))
        except Exception:  # the socket is going; the reader notices and reconnects
            return False
        return True

    async def ping(self) -> bool:
        """Send an application ping now (its pong updates ``rtt_ms``)."""
        return await self.send({"type": "ping", "t": time.time() * 1000})

    async def wait_joined(self, room: str, timeout: float = 20.0) -> None:
        """Wait until ``room`` is joined on the current socket."""
        self.rooms.setdefault(room, RoomState())
        await asyncio.wait_for(self._joined_event(room).wait(), timeout)

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self.events()

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Every event, seq events once each in seq order, until the client closes."""
        while True:
            event = await self._events.get()
            if event is _END:
                self._events.put_nowait(_END)  # for any other reader
                return
            yield event

    # --- the connection loop ----------------------------------------------------------

    async def _next_url(self) -> str:
        if self._url_provider is not None:
            url = await self._url_provider()
        else:
            assert self._urls
            url = self._urls[self._url_index % len(self._urls)]
        if self.ticket is not None and "ticket=" not in url:
            url = with_ticket(url, await self.ticket())
        return url

    async def _run(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

        failures = 0
        self._set_state(CONNECTING, {})
        while not self._stopped:
            code: int | None = None
            error: str | None = None
            opened = False
            retry_after: float | None = None
            try:
                url = await self._next_url()
                self.url = url
                options: dict[str, Any] = {"ssl": self.ssl} if self.ssl is not None else {}
                headers = {"Cookie": self.cookie} if self.cookie else None
                origin = self.origin or (site_origin(url) if self.cookie else None)
                offered = [SUBPROTOCOL_MSGPACK, SUBPROTOCOL_JSON] if self.encoding == "msgpack" else [SUBPROTOCOL_JSON]
                async with connect(
                    url, origin=origin, additional_headers=headers, subprotocols=offered,
                    open_timeout=self.open_timeout, close_timeout=2, max_size=2**22, **options,
                ) as ws:
                    opened = True
                    failures = 0
                    code = await self._serve(ws)
            except InvalidStatus as exc:
                code, error = exc.response.status_code, f"handshake refused: HTTP {exc.response.status_code}"
                if code == 503:
                    retry_after = retry_after_of(exc.response)  # admission control: come back then
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else 1006
            except (OSError, TimeoutError, EOFError, WebSocketException) as exc:
                cause = f" ({type(exc.__cause__).__name__})" if exc.__cause__ is not None else ""
                error = f"connection failed: {type(exc).__name__}{cause}"
            except Exception as exc:  # a ticket that could not be issued, a URL provider that failed
                logger.warning("connect failed", exc_info=True)
                error = f"connection failed: {type(exc).__name__}: {exc}"
            self._disconnected()
            if self._stopped:
                break
            if code in NO_RECONNECT:
                self.close_code = code
                break
            if not opened:
                failures += 1
                self._url_index += 1  # several URLs: try the next one
                if self.on_connect_failed is not None and await self.on_connect_failed(failures):
                    failures = self._attempt = 0
            if retry_after is not None:
                delay = self.backoff.after(retry_after)
                self.refusals += 1
            else:
                delay = self.backoff.delay(self._attempt)
            self._attempt += 1
            self._set_state(RECONNECTING, {"code": code, "delay": delay, "error": error, "opened": opened})
            await asyncio.sleep(delay)
        self._finish(self.close_code)

    async def _serve(self, ws: Any) -> int | None:
        """One open socket: join the rooms, read until it closes; its close code."""
        from websockets.exceptions import ConnectionClosed

        self._ws = ws
        self.connections += 1
        self.protocol = ws.subprotocol
        opened_at = time.monotonic()
        self._set_state(CONNECTED, {"url": self.url, "protocol": self.protocol})
        helpers = [asyncio.get_running_loop().create_task(coro) for coro in (self._heartbeat(ws), self._gap_watch())]
        try:
            for room in list(self.rooms):
                await self._send_join(room)
            try:
                async for data in ws:
                    if self._attempt and time.monotonic() - opened_at >= self.stable_after:
                        self._attempt = 0  # it stayed up: the next drop starts the backoff over
                    try:
                        event = self._decode(data)
                    except ValueError:
                        logger.warning("undecodable frame ignored")
                        continue
                    if isinstance(event, dict):
                        self._on_event(event)
            except ConnectionClosed:
                pass
        finally:
            for task in helpers:
                task.cancel()
        if time.monotonic() - opened_at >= self.stable_after:
            self._attempt = 0
        return ws.close_code if ws.close_code is not None else 1006

    def _disconnected(self) -> None:
        self._ws = None
        for slug, state in self.rooms.items():
            state.joined = False
            self._joined_event(slug).clear()

    def _finish(self, code: int | None) -> None:
        if self.state != CLOSED:
            self._ws = None
            self._set_state(CLOSED, {"code": code})
            self._events.put_nowait(_END)

    def _set_state(self, state: str, info: dict[str, Any]) -> None:
        self.state = state
        if self.on_state is not None:
            try:
                self.on_state(state, info)
            except Exception:
                logger.exception("on_state callback failed")

    async def _heartbeat(self, ws: Any) -> None:
        # A pong that does not come means a dead path even while TCP looks open.
        while True:
            await asyncio.sleep(self.ping_interval)
            sent_at = time.monotonic()
            self._pong = asyncio.get_running_loop().create_future()
            self._heartbeat_t = time.time() * 1000
            frame: dict[str, Any] = {"type": "ping", "t": self._heartbeat_t}
            if self.rtt_ms is not None:
                frame["rtt"] = round(self.rtt_ms, 1)
            await self.send(frame)
            try:
                await asyncio.wait_for(self._pong, self.pong_timeout)
            except TimeoutError:
                logger.info("no pong in %.1f s: dropping the socket", time.monotonic() - sent_at)
                ws.transport.abort()
                return

    async def _gap_watch(self) -> None:
        # A seq that stays missing (a frame lost between server processes) is asked for again.
        while True:
            await asyncio.sleep(self.gap_timeout / 2)
            now = time.monotonic()
            for slug, state in list(self.rooms.items()):
                if state.joined and state.gap_since is not None and now - state.gap_since >= self.gap_timeout:
                    state.gap_since = now
                    logger.info("room %s: seq %s missing, re-joining", slug, (state.last_seq or 0) + 1)
                    await self._send_join(slug)

    # --- frames -----------------------------------------------------------------------

    def _encode(self, frame: dict[str, Any]) -> str | bytes:
        if self.protocol == SUBPROTOCOL_MSGPACK:
            return msgpack.packb(frame, use_bin_type=True)
        return json.dumps(frame, ensure_ascii=False)

    @staticmethod
    def _decode(data: str | bytes) -> Any:
        if isinstance(data, bytes):
            try:
                return msgpack.unpackb(data, raw=False)
            except Exception as exc:
                raise ValueError("not MessagePack") from exc
        return json.loads(data)

    async def _send_join(self, room: str) -> None:
        state = self.rooms.get(room)
        frame: dict[str, Any] = {"type": "join", "room": room}
        if state is not None and state.last_seq is not None:
            frame["last_seq"] = state.last_seq
        await self.send(frame)

    async def _try_send(self, frame: dict[str, Any]) -> None:
        # Only on a socket where the room is joined: the join's replay comes first, and the
        # resend after the next join carries the same client_id, so it is stored once.
        state = self.rooms.get(frame["room"])
        if frame["client_id"] in self.pending and state is not None and state.joined:
            await self.send(frame)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _joined_event(self, room: str) -> asyncio.Event:
        return self._joined.setdefault(room, asyncio.Event())

    def _unpend(self, client_id: str, result: dict[str, Any] | None) -> None:
        self.pending.pop(client_id, None)
        future = self._confirmed.pop(client_id, None)
        if future is not None and not future.done():
            future.set_result(result)

    def _emit(self, event: dict[str, Any]) -> None:
        self._events.put_nowait(event)

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        room = event.get("room")
        state = self.rooms.get(room) if isinstance(room, str) else None
        if kind in SEQ_EVENTS and state is not None and isinstance(event.get("seq"), int):
            self._on_seq_event(state, event)
            return
        if kind == "hello":
            self.username = event.get("user")
        elif kind == "pong":
            if isinstance(event.get("t"), (int, float)):
                self.rtt_ms = time.time() * 1000 - event["t"]
            if self._pong is not None and not self._pong.done():
                self._pong.set_result(None)
            if event.get("t") == self._heartbeat_t:
                return  # the heartbeat's own: not news to the reader
        elif kind == "joined" and state is not None:
            self._on_joined(room, state, event)
            return
        elif kind == "removed" and isinstance(room, str):
            self._forget(room)  # kicked or banned: never re-joined by itself
        elif kind == "error":
            self._on_error(event)
        self._emit(event)

    def _on_joined(self, room: str, state: RoomState, event: dict[str, Any]) -> None:
        seq = event.get("seq") if isinstance(event.get("seq"), int) else 0
        if event.get("reset") or state.last_seq is None:
            # A fresh start: the latest page follows, ending at seq.
            state.last_seq, state.fresh = seq, seq
            state.page.clear()
            state.ahead = {s: e for s, e in state.ahead.items() if s > seq}
        else:
            state.fresh = None
        state.joined = True
        self._emit(event)
        self._drain(state)
        self._joined_event(room).set()
        for frame in list(self.pending.values()):
            if frame["room"] == room:
                self._spawn(self._try_send(frame))

    def _on_seq_event(self, state: RoomState, event: dict[str, Any]) -> None:
        seq = event["seq"]
        client_id = event.get("client_id")
        if event["type"] == "message" and client_id in self.pending:
            self._unpend(client_id, event)  # confirmed, even when it is a seq already delivered
        if state.fresh is not None and seq <= state.fresh:
            if seq not in state.page:  # the page of a fresh join
                state.page.add(seq)
                self._emit(event)
            return
        if state.last_seq is not None and seq <= state.last_seq:
            if event["type"] == "message.deleted":
                self._emit(event)  # a message delivered before was deleted since: not a new seq
            return  # a repeat (a resume overlapping the live stream)
        if state.last_seq is None:
            state.ahead[seq] = event  # before the first joined: kept until it says where we are
            return
        if seq in state.ahead:
            if event["type"] == "message.deleted":
                state.ahead[seq] = event  # deleted before its gap filled: the tombstone stands
            return
        state.ahead[seq] = event
        self._drain(state)

    def _drain(self, state: RoomState) -> None:
        """Deliver the held events that are now contiguous; note when a gap opened."""
        if state.last_seq is None:
            return
        while state.last_seq + 1 in state.ahead:
            state.last_seq += 1
            self._emit(state.ahead.pop(state.last_seq))
        for seq in [s for s in state.ahead if s <= state.last_seq]:
            del state.ahead[seq]
        if state.ahead:
            state.gap_since = state.gap_since or time.monotonic()
        else:
            state.gap_since = None

    def _on_error(self, event: dict[str, Any]) -> None:
        room = event.get("room")
        if event.get("request_type") == "join" and event.get("code") in RETRY_ERRORS and room in self.rooms:
            # A busy server refused the join (admission control): join again after its
            # retry_after, jittered, on the same socket if it is still the one.
            wait = self.backoff.after(float(event.get("retry_after") or 1.0))
            ws = self._ws

            def rejoin() -> None:
                self._timers.discard(timer)
                if self._ws is ws and ws is not None and room in self.rooms and not self.rooms[room].joined:
                    self._spawn(self._send_join(room))

            timer = asyncio.get_running_loop().call_later(wait, rejoin)
            self._timers.add(timer)
            return
        client_id = event.get("client_id")
        frame = self.pending.get(client_id) if isinstance(client_id, str) else None
        if frame is None:
            return
        if event.get("code") in RETRY_ERRORS:
            # Later, with the same client_id: the server never stores it twice.
            wait = max(0.5, float(event.get("retry_after") or 0.5))

            def retry() -> None:
                self._timers.discard(timer)
                self._spawn(self._try_send(frame))

            timer = asyncio.get_running_loop().call_later(wait, retry)
            self._timers.add(timer)
        else:
            self._unpend(client_id, None)  # refused for good (too long, muted...)
