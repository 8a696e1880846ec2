"""``/ws/chat/``: one socket per browser tab, every room over it.

Thin: each handler takes a validated payload, calls a service or selector, and sends
the reply an event builder of chat.events made. The types, their fields and permission
checks are declared in chat/realtime_features.py; the base class (``realtime.consumer``)
does decoding, validation, permissions, rate limits, errors (chat.errors become
``error`` frames there), broadcasts and session re-checks.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from chat import events, selectors, services
from chat.errors import RoomNotFound
from chat.group_commit import group_commit
from realtime import admission, broadcast, features, metrics, presence
from realtime.consumer import ProtocolConsumer
from realtime.protocol import ErrorCode, ProtocolError
from realtime.runtime import runtime

# Typing notices from one socket are forwarded at most this often (seconds).
TYPING_INTERVAL = 2.0

db = database_sync_to_async
#: A join's history from the room's window: (the last seq, the events, them encoded for the
#: socket, the room the window was filled from: its primary key).
Cached = tuple[int, list[dict[str, Any]], list[Any], Any]
logger = logging.getLogger(__name__)


class ChatConsumer(ProtocolConsumer):
    """Rooms, messages, typing and presence over one socket (the heartbeat is the core's)."""

    handlers = {
        **ProtocolConsumer.handlers,
        "join": "handle_join",
        "leave": "handle_leave",
        "message": "handle_message",
        "edit": "handle_edit",
        "delete": "handle_delete",
        "typing": "handle_typing",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Joined rooms: slug -> the latest seq sent with the join's history. Live messages
        # at or below it were already sent and are dropped; messages above it are sent in
        # arrival order (clients place them by seq).
        self.rooms: dict[str, int] = {}
        self._membership_changes = 0  # ``membership`` events seen (a join keeps what it read only if none came)

    # The per-room state below is made on the first use (functools.cached_property): a socket
    # that never joins, most of an idle server's, keeps none of it (bench/fanout S6).

    @functools.cached_property
    def room_models(self) -> dict[str, Any]:
        """Joined room -> its model, as the join loaded it."""
        return {}

    @functools.cached_property
    def memberships(self) -> dict[str, Any]:
        """Joined room -> the user's membership as last read, as a selectors.Standing (None: has none).

        Every message checks it (chat.selectors.room_access) without a query; a
        ``membership`` event (the services send one on every change of role, mute or ban)
        drops it, a kick or ban takes the socket out of the room (``room_remove``), so the
        next message reads it again.
        """
        return {}

    @functools.cached_property
    def delivered(self) -> dict[str, int]:
        """Room -> the highest seq delivered live (for resync after a hub reconnect)."""
        return {}

    @functools.cached_property
    def joining(self) -> dict[str, list[dict[str, Any]]]:
        """Room -> broadcast messages held while its join reads the history."""
        return {}

    @functools.cached_property
    def _typing_at(self) -> dict[str, float]:
        """Room -> when this socket last forwarded a typing notice."""
        return {}

    @property
    def username(self) -> str:
        return self.user.get_username()

    def rooms_joined(self) -> dict[str, int]:
        """The joined rooms (realtime.features.FeatureHost)."""
        return self.rooms

    def room_value(self, room: str) -> Any:
        """The joined room's model, as the join loaded it (realtime.features.FeatureHost)."""
        return self.room_models.get(room)

    async def closed(self) -> None:
        """Leave every room: presence and groups (each room on its own, whatever fails)."""
        for slug in list(self.rooms):
            try:
                await self._leave(slug)
            except Exception:
                logger.warning("leaving %s after disconnect failed; presence expires by itself", slug, exc_info=True)

    # --- handlers ----------------------------------------------------------------

    async def handle_join(self, p: dict[str, Any]) -> None:
        """Join a room and send what the client missed (see ``selectors.room_resume``).

        Live messages for the room that arrive while the history is read are held back
        and replayed after it, minus those the history already carried: the client gets
        ``joined``, then every message in seq order, then live traffic, with no gap.
        Everything the join reads from the database (the room and the permission, the
        history, the features' snapshots) is read in one database call
        (:meth:`_join_load`), and presence in one Redis round trip. The history comes from
        this process's window of the room's stream when it holds it (realtime.streams:
        read nothing, encode nothing), else from the database, which then seeds the window.
        """
        slug = p["room"]
        wait = admission.join_take()
        if wait:
            # Over this process's join budget (a mass reconnect): nothing done, come back later.
            metrics.admission_refused("join")
            raise ProtocolError(ErrorCode.UNAVAILABLE, "the server is busy; join again after retry_after",
                                room=slug, retry_after=round(wait, 3))
        rejoin = slug in self.rooms
        self.joining[slug] = []
        try:
            # Subscribe before reading anything: a message committed meanwhile is then
            # either in the history or arrives live (or both; the duplicate is dropped).
            # Until the join succeeds the room's messages are only held (``accepts``),
            # and dropped if it is refused.
            topic = broadcast.room_group(slug)
            await broadcast.asubscribe(topic, self)
            streams = runtime().streams
            token = streams.token(topic)  # before the database read that may seed the window
            offered = self._join_cached(topic, p.get("last_seq"))
            if offered is None and await streams.fill_wait(topic):
                # Another join of the room was reading it: its read may have seeded the window.
                offered = self._join_cached(topic, p.get("last_seq"))
            fill = streams.fill_begin(topic) if offered is None else None
            try:
                changes = self._membership_changes
                room, membership, resume, history, extra, cached = await db(self._join_load)(
                    slug, p.get("last_seq"), offered)
                if changes == self._membership_changes:
                    # Read by the join's permission check: the first message needs no query. Not
                    # kept if a ``membership`` event came meanwhile (it may be newer than the read).
                    self.memberships[slug] = selectors.Standing.of(membership)
                if offered is not None and cached is None:
                    streams.discard(topic, "stale")  # not this room's, or ahead of the database
                if cached is None:
                    streams.seed(topic, token, history, resume.latest_seq, self.joining[slug], identity=room.pk)
            finally:
                streams.fill_end(topic, fill)
            metrics.join_history("database" if cached is None else "cache")
            became_present, names = await presence.presence_enter(
                room=slug, username=self.username, conn_id=self.conn_id
            )
            self.rooms[slug] = resume.latest_seq
            self.room_models[slug] = room
            self.delivered[slug] = max(self.delivered.get(slug, 0), resume.latest_seq)
            await self.send_event(
                events.joined_event(room=room, seq=resume.latest_seq, presence=names, reset=resume.reset)
            )
            if cached is None:
                for event in history:
                    await self.send_event(event)
            else:
                for encoded in cached[2]:
                    await self.send_encoded(encoded)
            for event in extra:
                await self.send_event(event)
            for event in await features.joined(self, slug, history):
                await self.send_event(event)
        except BaseException:
            if not rejoin:
                self.rooms.pop(slug, None)
                await broadcast.aunsubscribe(broadcast.room_group(slug), self)
            raise
        finally:
            held = self.joining.pop(slug, [])
        for message in held:
            frames: dict[Any, Any] = {}
            pending = self.hub_deliver(message, frames)
            if pending is not None:
                await pending
            metrics.broadcast_sent(frames)
        if became_present and not rejoin:
            await broadcast.apresence_send(slug, joined=[self.username], left=[], exclude=self.conn_id)

    def _join_cached(self, topic: str, last_seq: int | None) -> Cached | None:
        """What the join resumes with, from the room's window if it answers exactly (else None).

        As ``selectors.room_resume`` would answer, but ending at the last seq this process
        has seen, which a message committed and not yet arrived here follows live. A
        client ahead of the window (it saw a message on another process first) or further
        behind than the resume cap is the database's to answer.
        """
        window = runtime().streams.window(topic)
        if window is None:
            return None
        cfg = settings.REALTIME
        if last_seq is None:
            seqs = window.latest_page(cfg["HISTORY_PAGE"])
        elif window.high - last_seq > cfg["RESUME_CAP"]:
            return None
        else:
            seqs = window.after(last_seq)
        if seqs is None:
            return None
        codec = self.codec
        return (window.high, [window.event(s) for s in seqs], [window.encoded_for(s, codec) for s in seqs],
                window.identity)

    def _join_load(self, slug: str, last_seq: int | None, cached: Cached | None = None,
                   ) -> tuple[Any, Any, selectors.Resume, list[dict[str, Any]], list[dict[str, Any]], Cached | None]:
        """Sync, in one database call: enter the room, read what to resume (unless cached), the features' snapshots.

        The room read here checks the window it was offered: one filled from another room
        of the same slug (deleted and made again) or ahead of the database (restored from a
        backup) is not used, and the database answers; the caller then drops it (the last
        value returned is the window's answer if it was used, else None).
        """
        room, membership = services.room_enter(slug=slug, user=self.user)
        if cached is not None and (cached[3] != room.pk or cached[0] > room.last_seq):
            cached = None
        if cached is not None:
            latest, history, _encoded, _room = cached
            resume = selectors.Resume([], latest, reset=False)
        else:
            cfg = settings.REALTIME
            # The room was loaded after the join subscribed (handle_join): its last_seq is
            # a position the live stream continues from.
            resume = selectors.room_resume(room=room, last_seq=last_seq, page=cfg["HISTORY_PAGE"],
                                           cap=cfg["RESUME_CAP"], latest=room.last_seq)
            history = events.message_events(resume.messages)
        return room, membership, resume, history, features.joined_load(self, slug, room, history), cached

    async def handle_leave(self, p: dict[str, Any]) -> None:
        """Leave a room (joined: checked by its declared permission)."""
        await self._leave(p["room"])
        await self.send_event(events.left_event(room=p["room"]))

    async def handle_message(self, p: dict[str, Any]) -> None:
        """Post a message; a repeated client_id gets the original back, to this socket only.

        The draft takes its place in the process's write queue (chat.group_commit) before
        this returns, so a socket's messages keep their order, and its write is awaited in
        the background (``pipeline``): the socket's next message joins the same batch
        instead of waiting for this one's commit. Its broadcast (or its ``error``) comes
        when it is written, as before.
        """
        slug = p["room"]
        room = await self._joined_room(slug)
        membership = self.memberships.get(slug, selectors.UNLOADED)
        if membership is selectors.UNLOADED:
            membership = await db(selectors.membership_of)(room=room, user=self.user)
            self.memberships[slug] = membership = selectors.Standing.of(membership)
        written = group_commit().submit(services.MessageDraft(
            room=room, author=self.user, body=p["body"], client_id=p.get("client_id"), membership=membership,
            attachments=tuple(p.get("attachments", ())), reply_to=p.get("reply_to"),
        ))
        await self.pipeline(self._message_written(slug, written))

    async def _message_written(self, slug: str, written: Any) -> None:
        message, created = await written
        if not created and slug in self.rooms:  # a repeat: its original, unless the socket left meanwhile
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
        now = time.monotonic()
        if now - self._typing_at.get(slug, 0.0) < TYPING_INTERVAL:
            return
        self._typing_at[slug] = now
        await broadcast.aroom_send(slug, events.typing_event(room=slug, username=self.username), exclude=self.conn_id)

    # --- helpers -------------------------------------------------------------------

    def _require_joined(self, slug: str) -> None:
        if slug not in self.rooms:
            raise ProtocolError(ErrorCode.NOT_JOINED, "join the room first", room=slug)

    async def _joined_room(self, slug: str):
        """The joined room's model (loaded at join: one query less per message)."""
        self._require_joined(slug)
        room = self.room_models.get(slug)
        if room is None:
            room = await db(selectors.room_by_slug)(slug=slug)
            if room is None:
                raise RoomNotFound("no such room", room=slug)
            self.room_models[slug] = room
        return room

    async def _leave(self, slug: str) -> None:
        self.rooms.pop(slug, None)
        self.room_models.pop(slug, None)
        self.memberships.pop(slug, None)
        self.delivered.pop(slug, None)
        self._typing_at.pop(slug, None)
        # Presence first: it stops this process refreshing the entry even if Redis fails below.
        if await presence.presence_leave(room=slug, username=self.username, conn_id=self.conn_id):
            await broadcast.apresence_send(slug, joined=[], left=[self.username])
        await broadcast.aunsubscribe(broadcast.room_group(slug), self)

    # --- broadcasts ------------------------------------------------------------------

    def accepts(self, message: dict[str, Any]) -> bool:
        """Deliver a room's traffic only while joined, without repeating history.

        During a join the room's messages are held (``joining``) and replayed after the
        history. A leave races with messages already published to the room; those are
        dropped here. Events to the user or to everyone (mentions, announcements) pass.
        """
        room = message.get("room")
        if room is None:
            event = message.get("event") or {}
            if event.get("type") == "membership":
                # Changed: read again on the next message, and at the write of those queued with it.
                standing = self.memberships.pop(event.get("room"), None)
                if standing is not None:
                    standing.stale = True
                self._membership_changes += 1
            return True
        held = self.joining.get(room)
        if held is not None:
            held.append(message)
            return False
        floor = self.rooms.get(room)
        if floor is None:
            return False
        event = message["event"]
        if event.get("type") == "message":
            seq = event.get("seq", 0)
            if seq <= floor:
                return False
            if seq > self.delivered.get(room, 0):
                self.delivered[room] = seq
        return True

    async def resync(self) -> None:
        """After the hub lost Redis: send each joined room's messages after the last one delivered."""
        cfg = settings.REALTIME
        for slug in list(self.rooms):
            room = await db(selectors.room_by_slug)(slug=slug)
            if room is None:
                continue
            after = self.delivered.get(slug, self.rooms[slug])
            resume = await db(selectors.room_resume)(room=room, last_seq=after, page=cfg["HISTORY_PAGE"],
                                                     cap=cfg["RESUME_CAP"])
            missed = await db(events.message_events)(resume.messages)
            if resume.reset:
                # Too far behind to replay here: the client re-joins and resets itself.
                names = await presence.presence_list(room=slug)
                await self.send_event(events.joined_event(room=room, seq=resume.latest_seq, presence=names, reset=True))
            for event in missed:
                if slug in self.rooms:
                    await self.send_event(event)
            if slug in self.rooms:
                self.delivered[slug] = max(self.delivered.get(slug, 0), resume.latest_seq)

    async def on_control(self, message: dict[str, Any]) -> None:
        """``room_remove``: a kick or a ban takes this socket out of the room now."""
        if message.get("action") == "room_remove":
            slug = message.get("room")
            if slug in self.rooms:
                await self._leave(slug)
                await self.send_event(events.removed_event(room=slug, reason=message.get("reason", "kicked")))
            return
        await super().on_control(message)
