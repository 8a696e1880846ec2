"""``/ws/chat/``: one socket per browser tab, every room over it.

Thin: each handler takes a validated payload, calls a service or selector, and sends
the reply. The base class (``realtime.consumer``) does decoding, validation, rate
limits, errors, broadcasts and session re-checks.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from chat import events, selectors, services
from realtime import broadcast, features, metrics, presence
from realtime.consumer import ProtocolConsumer
from realtime.protocol import ErrorCode, ProtocolError

# Typing notices from one socket are forwarded at most this often (seconds).
TYPING_INTERVAL = 2.0

db = database_sync_to_async
logger = logging.getLogger(__name__)


class ChatConsumer(ProtocolConsumer):
    """Rooms, messages, typing, presence and heartbeat over one socket."""

    handlers = {
        "join": "handle_join",
        "leave": "handle_leave",
        "message": "handle_message",
        "edit": "handle_edit",
        "delete": "handle_delete",
        "typing": "handle_typing",
        "ping": "handle_ping",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Joined rooms: slug -> the latest seq sent with the join's history. Live messages
        # at or below it were already sent and are dropped; messages above it are sent in
        # arrival order (clients place them by seq).
        self.rooms: dict[str, int] = {}
        self._typing_at: dict[str, float] = {}

    @property
    def username(self) -> str:
        return self.user.get_username()

    async def opened(self) -> None:
        """Greet the client with who it is and the limits in force."""
        cfg = settings.REALTIME
        await self.send_event(
            {
                "type": "hello",
                "user": self.username,
                "protocol": self.codec.subprotocol,
                "max_body": cfg["MAX_BODY_CHARS"],
                "ping_ms": cfg["CLIENT_PING_MS"],
            }
        )

    async def closed(self) -> None:
        """Leave every room: presence and groups (each room on its own, whatever fails)."""
        for slug in list(self.rooms):
            try:
                await self._leave(slug)
            except Exception:
                logger.warning("leaving %s after disconnect failed; presence expires by itself", slug, exc_info=True)

    # --- handlers ----------------------------------------------------------------

    async def handle_join(self, p: dict[str, Any]) -> None:
        """Join a room and send what the client missed (see ``selectors.room_resume``)."""
        slug = p["room"]
        room, _membership = await db(services.room_enter)(slug=slug, user=self.user)
        # Join the group before reading history: a message committed meanwhile is then
        # either in the history or arrives live (or both; the duplicate is dropped).
        await self.channel_layer.group_add(broadcast.room_group(slug), self.channel_name)
        cfg = settings.REALTIME
        resume = await db(selectors.room_resume)(
            room=room, last_seq=p.get("last_seq"), page=cfg["HISTORY_PAGE"], cap=cfg["RESUME_CAP"]
        )
        history = await db(lambda: [events.message_event(m) for m in resume.messages])()
        rejoin = slug in self.rooms
        became_present = await presence.presence_join(room=slug, username=self.username, conn_id=self.conn_id)
        names = await presence.presence_list(room=slug)
        self.rooms[slug] = resume.latest_seq
        await self.send_event(
            {
                "type": "joined",
                "room": slug,
                "title": room.title,
                "seq": resume.latest_seq,
                "presence": names,
                "reset": resume.reset,
            }
        )
        for event in history:
            await self.send_event(event)
        for event in await features.joined(self, slug, history):
            await self.send_event(event)
        if became_present and not rejoin:
            await broadcast.aroom_send(
                slug, {"type": "presence", "room": slug, "joined": [self.username], "left": []},
                exclude=self.channel_name,
            )

    async def handle_leave(self, p: dict[str, Any]) -> None:
        """Leave a room."""
        self._require_joined(p["room"])
        await self._leave(p["room"])
        await self.send_event({"type": "left", "room": p["room"]})

    async def handle_message(self, p: dict[str, Any]) -> None:
        """Post a message; a repeated client_id gets the original back, to this socket only."""
        room = await self._joined_room(p["room"])
        message, created = await db(services.message_post)(
            room=room, author=self.user, body=p["body"], client_id=p.get("client_id")
        )
        if not created:
            await self.send_event(await db(events.message_event)(message))

    async def handle_edit(self, p: dict[str, Any]) -> None:
        """Edit one's own message."""
        room = await self._joined_room(p["room"])
        await db(services.message_edit)(room=room, user=self.user, message_id=p["id"], body=p["body"])

    async def handle_delete(self, p: dict[str, Any]) -> None:
        """Delete one's own message (or any, as a moderator)."""
        room = await self._joined_room(p["room"])
        await db(services.message_delete)(room=room, user=self.user, message_id=p["id"])

    async def handle_typing(self, p: dict[str, Any]) -> None:
        """Tell the others in the room; throttled per socket."""
        slug = p["room"]
        self._require_joined(slug)
        now = time.monotonic()
        if now - self._typing_at.get(slug, 0.0) < TYPING_INTERVAL:
            return
        self._typing_at[slug] = now
        await broadcast.aroom_send(
            slug, {"type": "typing", "room": slug, "user": self.username}, exclude=self.channel_name
        )

    async def handle_ping(self, p: dict[str, Any]) -> None:
        """Answer the heartbeat."""
        metrics.ping_rtt_observe(p.get("rtt"))
        await self.send_event({"type": "pong", "t": p.get("t")})

    # --- helpers -------------------------------------------------------------------

    def _require_joined(self, slug: str) -> None:
        if slug not in self.rooms:
            raise ProtocolError(ErrorCode.NOT_JOINED, "join the room first", room=slug)

    async def _joined_room(self, slug: str):
        self._require_joined(slug)
        room = await db(selectors.room_by_slug)(slug=slug)
        if room is None:
            raise ProtocolError(ErrorCode.ROOM_NOT_FOUND, "no such room", room=slug)
        return room

    async def _leave(self, slug: str) -> None:
        self.rooms.pop(slug, None)
        self._typing_at.pop(slug, None)
        # Presence first: it stops this process refreshing the entry even if Redis fails below.
        if await presence.presence_leave(room=slug, username=self.username, conn_id=self.conn_id):
            await broadcast.aroom_send(slug, {"type": "presence", "room": slug, "joined": [], "left": [self.username]})
        await self.channel_layer.group_discard(broadcast.room_group(slug), self.channel_name)

    # --- broadcasts ------------------------------------------------------------------

    async def on_event(self, event: dict[str, Any], *, room: str | None = None) -> None:
        """Forward a room's traffic only while joined, without repeating history.

        A leave races with events already queued for this socket; those are dropped
        here. Events to the user or to everyone (mentions, announcements) always pass.
        """
        if room is not None:
            if room not in self.rooms:
                return
            if event.get("type") == "message" and event.get("seq", 0) <= self.rooms[room]:
                return
        await self.send_event(event)

    async def on_control(self, message: dict[str, Any]) -> None:
        """``room_remove``: a kick or a ban takes this socket out of the room now."""
        if message.get("action") == "room_remove":
            slug = message.get("room")
            if slug in self.rooms:
                await self._leave(slug)
                await self.send_event({"type": "removed", "room": slug, "reason": message.get("reason", "kicked")})
            return
        await super().on_control(message)
