"""The base consumer: decode, validate, dispatch by registry, never crash on a bad frame.

An app's consumer (the chat's ``ChatConsumer``) maps the client message types it
registered (realtime.features) to handler methods in ``handlers``; this class answers
the core's own (``ping``) and does everything around them:

* negotiates the encoding (JSON or MessagePack) from the offered subprotocols;
* counts the socket against the per-user cap and joins the user's and everyone's groups;
* decodes each frame, validates it against its :class:`~realtime.protocol.MessageSpec`,
  applies the rate limit, runs the permission the app declared for the type, and calls
  the handler (its own method, or a feature's);
* turns every failure into an ``error`` event, in one place (``receive``): protocol
  errors as they are, an app's domain errors through the map it registered
  (``Feature.maps_error``), an unavailable backend as ``unavailable``, anything else as
  ``internal_error``. The stock ``AsyncJsonWebsocketConsumer`` closes with 1011 on a
  binary or invalid frame; this one never does;
* forwards broadcast events and obeys broadcast controls (``realtime.broadcast``);
* registers the socket with its loop's runtime (realtime.runtime), which drains it,
  re-checks its session periodically and keeps its presence entries refreshed; account
  changes re-check it at once (``recheck`` control).

Dispatch never turns a client- or layer-supplied name into a method name: only the
ASGI and broadcast types listed in ``dispatch`` and the types in ``handlers`` exist.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import secrets
from collections.abc import Awaitable, Collection
from typing import Any

import sentry_sdk
from asgiref.sync import markcoroutinefunction
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError
from redis.exceptions import RedisError

from realtime import accel, admission, broadcast, features, metrics, presence
from realtime.auth import SocketAuth, session_key_digest, socket_session_check
from realtime.protocol import (
    CloseCode,
    ErrorCode,
    JsonCodec,
    ProtocolError,
    Registry,
    codec_negotiate,
    echo_safe,
    frame_decode,
    hello_event,
    pong_event,
    registry,
)
from realtime.ratelimit import rate_take
from realtime.runtime import runtime
from realtime.wire import Wire, frame_for, wire_for

logger = logging.getLogger(__name__)

# How many pushed event ids each socket remembers, to drop redelivered pushes.
SEEN_IDS_KEPT = 512
#: How many of one socket's frames may finish in the background at once (``ProtocolConsumer.pipeline``).
PIPELINE_MAX = 64
#: The frame being handled: its type and client_id (``ProtocolConsumer.receive``; ``pipeline`` reads it).
_frame_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("frame_context", default=None)


class LayerlessConsumer(AsyncWebsocketConsumer):
    """An ``AsyncWebsocketConsumer`` that listens to its client only.

    No channel-layer queue per socket (broadcasts arrive through the process's hub,
    realtime.hub): no Redis channel, no receive task and no buffers for it.
    """

    channel_layer_alias = "__no_channel_layer__"
    #: channels' group names to join at connect: none (a list per socket otherwise).
    groups: Any = ()

    @classmethod
    def as_asgi(cls, **initkwargs: Any) -> Any:
        """channels' ``as_asgi``, handing over the consumer's coroutine instead of awaiting it.

        (channels' wrapper would stay suspended in its await for the socket's whole
        life; realtime.routing explains the cost.) channels' own when the patch
        ``as_asgi`` is not in force (realtime.accel).
        """
        if not accel.active("as_asgi"):
            return super().as_asgi(**initkwargs)

        @markcoroutinefunction
        def app(scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
            return cls(**initkwargs)(scope, receive, send)

        app.consumer_class = cls  # type: ignore[attr-defined]
        app.consumer_initkwargs = initkwargs  # type: ignore[attr-defined]
        functools.update_wrapper(app, cls, updated=())
        return app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """channels' ``AsyncConsumer.__call__`` for a consumer without a channel layer.

        channels waits on its receive callables through ``await_many_dispatch``: a new
        task and an ``asyncio.wait`` per frame, and one more pending task per open socket.
        With only the client to listen to, awaiting ``receive`` in this task does the same
        (S1 echo and S0 memory in bench/fanout). channels' own when the patch ``as_asgi``
        is not in force (realtime.accel).
        """
        if not accel.active("as_asgi"):
            return await super().__call__(scope, receive, send)
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Route ASGI messages by an explicit list; anything else is logged and dropped.

        (channels' dispatch derives a method name from the type and runs
        ``close_old_connections`` in a thread for every frame; connections here are
        persistent, CONN_MAX_AGE.)
        """
        kind = message.get("type")
        if kind == "websocket.receive":
            await self.websocket_receive(message)
        elif kind == "websocket.connect":
            await self.websocket_connect(message)
        elif kind == "websocket.disconnect":
            await self.websocket_disconnect(message)
        else:
            logger.warning("dropped a layer message of unknown type %r", kind)
            metrics.broadcast_dropped("unknown_type")


class ProtocolConsumer(LayerlessConsumer):
    """A WebSocket consumer that speaks the protocol of ``realtime.protocol``."""

    #: The message types this consumer understands.
    registry: Registry = registry
    #: Client message type -> name of the coroutine method that handles it (the core's
    #: ``ping``; a subclass adds its app's types to these).
    handlers: dict[str, str] = {"ping": "handle_ping"}

    codec = JsonCodec
    conn_id = ""
    user: Any = None
    _strikes = 0
    _closing = False
    _topics: tuple[str, ...] = ()
    #: The rooms this socket is present in: the runtime refreshes a presence entry for each
    #: (a subclass that joins rooms keeps them here, e.g. ``ChatConsumer.rooms``).
    rooms: Any = ()
    #: Direct writes of pre-encoded broadcast frames (realtime.wire); None: the ASGI path.
    _wire: Wire | None = None

    @functools.cached_property
    def _seen_ids(self) -> dict[str, None]:
        """Ids of pushed events already delivered (insertion-ordered, bounded); made on the first push."""
        return {}

    # --- ASGI plumbing -----------------------------------------------------------

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        """Accept an authenticated socket (the handshake middleware already checked it)."""
        try:
            await self._connect()
        finally:
            admission.handshake_done(self.scope)  # accepted or refused: no longer in flight

    async def _connect(self) -> None:
        self.user = self.scope.get("user")
        if self.user is None or not self.user.is_authenticated:
            await self.close()  # before accept: HTTP 403
            return
        self.codec, subprotocol = codec_negotiate(list(self.scope.get("subprotocols") or []))
        self.conn_id = secrets.token_hex(8)
        try:
            allowed = await presence.connection_open(user_id=self.user.pk, conn_id=self.conn_id)
            if allowed:
                self._topics = (broadcast.user_group(self.user.pk), broadcast.EVERYONE)
                hub = runtime().hub
                for topic in self._topics:
                    await hub.subscribe(topic, self)
        except (RedisError, OSError):
            logger.warning("refusing a socket: Redis unavailable", exc_info=True)
            metrics.redis_error("connect")
            await self.close()  # before accept: HTTP 403; the client retries with backoff
            return
        await self.accept(subprotocol)
        self._wire = wire_for(self.base_send)
        metrics.connection_opened(self)
        if not allowed:
            await self.close(CloseCode.TOO_MANY_CONNECTIONS)
            return
        runtime().socket_opened(self)
        await self.opened()

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """Clean up every trace of the socket, whatever state it was in."""
        metrics.connection_closed(self)
        self._closing = True  # nothing more is sent or served on this socket
        runtime().socket_closed(self)  # no more drain, re-check or presence refresh
        if self.conn_id and self.user is not None and self.user.is_authenticated:
            # Each step on its own: one failing (Redis down) must not skip the others (the
            # runtime already stopped refreshing this socket's presence, above).
            steps = (
                self.closed,
                lambda: presence.connection_close(user_id=self.user.pk, conn_id=self.conn_id),
                *[(lambda topic=topic: broadcast.aunsubscribe(topic, self)) for topic in self._topics],
            )
            for step in steps:
                try:
                    await step()
                except Exception:
                    # Whatever is left in Redis expires by itself (presence TTL).
                    logger.warning("cleanup after disconnect failed", exc_info=True)
                    metrics.redis_error("disconnect")
        raise StopConsumer()

    # --- Hooks for subclasses ------------------------------------------------------

    async def opened(self) -> None:
        """Called once the socket is accepted: greet the client with who it is and the limits in force."""
        cfg = settings.REALTIME
        await self.send_event(
            hello_event(user=self.user.get_username(), protocol=self.codec.subprotocol,
                        max_body=cfg["MAX_BODY_CHARS"], ping_ms=cfg["CLIENT_PING_MS"])
        )

    async def closed(self) -> None:
        """Called when the socket is gone; release rooms and presence here."""

    # --- Client frames ---------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Decode, validate and dispatch one client frame; report failures as ``error``."""
        metrics.message_in()
        if self._closing:
            # Closed by the server (rate limit, session end, deactivation): frames still in
            # flight during the close handshake are not served.
            return
        context: dict[str, Any] = {}
        try:
            frame = frame_decode(self.codec, text_data, bytes_data)
            if isinstance(frame.get("client_id"), str):
                context["client_id"] = echo_safe(frame["client_id"])
            spec = self.registry.spec_for(frame)
            context["request_type"] = spec.type
            payload = spec.validate(frame)
            if spec.rate_limited:
                await self._rate_check()
            await features.permit(self, spec.type, payload)
            method = self.handlers.get(spec.type)
            token = _frame_context.set(context)  # for ``pipeline``: what a late failure reports
            try:
                if method is not None:
                    await getattr(self, method)(payload)
                elif not await features.dispatch(self, spec.type, payload):
                    raise ProtocolError(ErrorCode.UNKNOWN_TYPE, "unknown message type")
            finally:
                _frame_context.reset(token)
        except Exception as exc:
            await self._report(exc, context)

    async def _report(self, exc: Exception, context: dict[str, Any]) -> None:
        """Send the ``error`` event for a frame that failed (``context``: its type and client_id)."""
        if isinstance(exc, ProtocolError):
            await self.send_event({**exc.as_event(), **{k: v for k, v in context.items() if k not in exc.extra}})
        elif isinstance(exc, (TimeoutError, RedisError, DatabaseError, OSError)):
            logger.warning("frame failed on an unavailable backend: %s", type(exc).__name__)
            err = ProtocolError(ErrorCode.UNAVAILABLE, "temporarily unavailable, nothing was stored; retry")
            await self.send_event({**err.as_event(), **context})
        else:
            err = features.protocol_error(exc)  # an app's domain error (chat.errors, ...)
            if err is None:
                logger.error("unexpected error handling a %s frame", context.get("request_type", "?"), exc_info=exc)
                sentry_sdk.capture_exception(exc)
                err = ProtocolError(ErrorCode.INTERNAL, "internal error; it has been reported")
            await self.send_event({**err.as_event(), **{k: v for k, v in context.items() if k not in err.extra}})

    async def pipeline(self, work: Awaitable[Any]) -> None:
        """Let the frame being handled finish in the background: the socket's next frames go on meanwhile.

        For the rest of a handler whose order was settled before it returns (a message's
        place in its room is taken when ``chat.group_commit`` queues it, in frame order)
        and that only has to report its end: one socket's frames then share a write instead
        of each waiting for the one before (bench/fanout S2, one publisher). A failure is
        reported as the frame's own would be (an ``error`` event with its type and
        client_id). At most ``PIPELINE_MAX`` run at once per socket; past that, this waits
        for one to end, so the socket's next frame waits too.
        """
        context = _frame_context.get() or {}
        task = asyncio.get_running_loop().create_task(self._finish(work, context))
        running = self._pipelined
        running.add(task)
        task.add_done_callback(running.discard)
        if len(running) >= PIPELINE_MAX:
            await asyncio.wait(set(running), return_when=asyncio.FIRST_COMPLETED)

    async def _finish(self, work: Awaitable[Any], context: dict[str, Any]) -> None:
        try:
            await work
        except Exception as exc:
            try:
                await self._report(exc, context)
            except Exception:  # the report itself failed (the socket went away meanwhile)
                logger.warning("reporting a %s frame's failure failed", context.get("request_type", "?"),
                               exc_info=True)

    def in_flight(self) -> list[asyncio.Task]:
        """This socket's frames still finishing in the background (``pipeline``)."""
        return list(self.__dict__.get("_pipelined", ()))

    @functools.cached_property
    def _pipelined(self) -> set[asyncio.Task]:
        """This socket's frames finishing in the background (``pipeline``); made on first use."""
        return set()

    async def handle_ping(self, p: dict[str, Any]) -> None:
        """Answer the heartbeat."""
        metrics.ping_rtt_observe(p.get("rtt"))
        await self.send_event(pong_event(t=p.get("t")))

    # --- What the features may ask of a socket (realtime.features.FeatureHost) ----------

    def rooms_joined(self) -> Collection[str]:
        """The rooms this socket has joined; an app's consumer that has rooms says which."""
        return ()

    def room_value(self, room: str) -> Any:
        """The app's value for a joined room (None: not joined, or the app keeps none)."""
        return None

    async def _rate_check(self) -> None:
        allowed, wait = await rate_take(user_id=self.user.pk)
        if allowed:
            self._strikes = 0
            return
        self._strikes += 1
        if self._strikes > settings.REALTIME["RATE_STRIKES_BEFORE_CLOSE"]:
            await self.close(CloseCode.RATE_LIMITED)
        raise ProtocolError(ErrorCode.RATE_LIMITED, "too many messages", retry_after=wait)

    # --- Outgoing ----------------------------------------------------------------------

    async def send_event(self, event: dict[str, Any]) -> None:
        """Encode and send one protocol event to this socket (directly when it has a wire)."""
        if self._closing:
            return
        await self.send_encoded(self.codec.encode(event))

    async def send_encoded(self, message: dict[str, Any]) -> None:
        """Send an event already encoded with this socket's codec (``codec.encode``: an ASGI send message)."""
        if self._closing:
            return
        metrics.message_out()
        wire = self._wire
        if wire is not None and wire.write(frame_for(message)):
            return
        await self.base_send(message)

    async def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Close the socket (once)."""
        self._closing = True
        await super().close(code, reason)

    # --- Broadcasts (called by realtime.hub) ---------------------------------------------

    def hub_deliver(self, message: dict[str, Any], frames: dict[Any, Any]) -> Awaitable[None] | None:
        """A message published to one of this socket's topics.

        Events are filtered (excluded socket, the subclass's ``accepts``, event ids already
        delivered) and sent with the frame the hub encoded once for every socket of the
        same encoding: written directly (``realtime.wire``) when the socket allows, else
        returned as the ASGI send for the caller to await. Controls run on their own task
        so the hub never waits on them.
        """
        if self._closing:
            return None
        kind = message.get("type")
        if kind == broadcast.CONTROL:
            asyncio.get_running_loop().create_task(self._control_safely(message))
            return None
        if kind != broadcast.EVENT:
            metrics.broadcast_dropped("unknown_type")
            return None
        if message.get("exclude") and message["exclude"] == self.conn_id:
            return None
        if not self.accepts(message):
            return None
        event = message["event"]
        event_id = event.get("event_id")
        if event_id is not None:
            if event_id in self._seen_ids:
                return None
            self._seen_ids[event_id] = None
            if len(self._seen_ids) > SEEN_IDS_KEPT:
                self._seen_ids.pop(next(iter(self._seen_ids)))
        codec = self.codec
        encoded = frames.get(codec)
        if encoded is None:
            encoded = frames[codec] = codec.encode(event)
        # Counted per message by the hub (metrics): "sent" in all, "direct" by realtime.wire.
        frames["sent"] = frames.get("sent", 0) + 1
        wire = self._wire
        if wire is not None:
            data = frames.get(codec.subprotocol)
            if data is None:
                data = frames[codec.subprotocol] = frame_for(encoded)
            if wire.write(data):
                frames["direct"] = frames.get("direct", 0) + 1
                return None
        return self.base_send(encoded)

    def accepts(self, message: dict[str, Any]) -> bool:
        """Whether to deliver a broadcast event (``message["room"]``: the room it was sent to)."""
        return True

    def hub_resync(self) -> None:
        """The hub lost Redis for a while: catch this socket up (see ``resync``)."""
        if not self._closing:
            asyncio.get_running_loop().create_task(self._resync_safely())

    async def resync(self) -> None:
        """Re-send what may have been missed while the hub was disconnected (subclasses)."""

    async def _resync_safely(self) -> None:
        try:
            await self.resync()
        except Exception:
            logger.warning("resync failed; the client resumes on its next reconnect", exc_info=True)

    async def _control_safely(self, message: dict[str, Any]) -> None:
        try:
            await self.realtime_control(message)
        except Exception:
            logger.warning("control %r failed", message.get("action"), exc_info=True)

    async def realtime_control(self, message: dict[str, Any]) -> None:
        """A broadcast control addressed to this socket's user."""
        action = message.get("action")
        if action == "session_end":
            if message.get("session") == session_key_digest(self.scope.get("auth_session_key")):
                await self.close(CloseCode.SESSION_ENDED)
        elif action == "recheck":
            await self._recheck()
        elif action == "close":
            await self.close(int(message.get("code", CloseCode.NORMAL)))
        else:
            await self.on_control(message)

    async def on_control(self, message: dict[str, Any]) -> None:
        """Controls defined by subclasses (e.g. ``room_remove``)."""
        logger.warning("unknown control %r", message.get("action"))

    # --- Session re-check ---------------------------------------------------------------

    def auth_entry(self) -> SocketAuth:
        """What the handshake authenticated (realtime.auth re-checks it)."""
        return (self.user.pk, self.scope.get("auth_session_key"), self.scope.get("auth_hash", ""))

    async def _recheck(self) -> None:
        user_id, session_key, auth_hash = self.auth_entry()
        code = await database_sync_to_async(socket_session_check)(
            user_id=user_id, session_key=session_key, auth_hash=auth_hash
        )
        if code is not None and not self._closing:
            await self.close(code)
