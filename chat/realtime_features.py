"""The chat's protocol, declared on the core's extension surface like any other feature.

Its client types (join, leave, message, edit, delete, typing) are handled by the chat's
own consumer (chat.consumers.ChatConsumer keeps each socket's rooms); their fields,
permission checks, events and the map from chat.errors to ``error`` frames are here,
registered through realtime.features exactly as reactions and receipts register theirs.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from chat import errors, events
from chat.models import Room
from realtime import broadcast, streams
from realtime.features import Context, feature
from realtime.protocol import ROOM, Field, ProtocolError, body_check, check_client_id, check_id, check_seq

#: At most this many attachments on one message (attachments.services checks it again).
MAX_ATTACHMENTS = 10

chat = feature(
    "chat",
    doc="Rooms and their messages: join, post, edit, delete, typing, mentions, announcements, direct messages.",
    scripts=("js/features/conversation.js", "js/features/dm.js", "js/features/switcher.js", "js/features/notify.js"),
)


def _body(value: Any) -> str:
    """text, 1 to MAX_BODY_CHARS characters, no control characters"""
    # The limit is a setting; read it at validation time so tests can override it.
    return body_check(value, max_chars=settings.REALTIME["MAX_BODY_CHARS"])


def _attachment_ids(value: Any) -> list[int]:
    """a list of 0 to 10 upload ids"""
    if not isinstance(value, list) or len(value) > MAX_ATTACHMENTS:
        raise ValueError(f"must be a list of at most {MAX_ATTACHMENTS} upload ids")
    return [check_id(item) for item in value]


def _joined(ctx: Context, payload: dict[str, Any]) -> bool:
    ctx.require_joined(payload["room"])
    return True


# --- Client messages ---------------------------------------------------------------

chat.message(
    "join",
    fields=(ROOM, Field("last_seq", check_seq, required=False, doc="last seq the client has with no gap before it")),
    doc=(
        "Join a room. The reply is `joined`, then the missed messages in seq order: every "
        "message with seq > last_seq, or the latest page when last_seq is absent. Past the "
        "resume cap, `joined` says `\"reset\": true` and only the latest page follows. A server "
        "over its join budget answers `unavailable` with `retry_after` (seconds) and does nothing: "
        "join again after that wait, jittered. A handshake over its budget gets HTTP 503 with "
        "`Retry-After`."
    ),
    example={"type": "join", "room": "lobby", "last_seq": 41},
    rate_limited=False,
)
chat.message(
    "leave", fields=(ROOM,), permission=_joined, rate_limited=False,
    doc="Leave a room; answered by `left`.", example={"type": "leave", "room": "lobby"},
)
chat.message(
    "message",
    fields=(
        ROOM,
        Field("body", _body, doc="text, 1 to MAX_BODY_CHARS characters, no control characters"),
        Field("client_id", check_client_id, required=False, doc="idempotency key chosen by the client"),
        Field("attachments", _attachment_ids, required=False,
              doc="ids of your uploads to this room not sent yet (POST /api/rooms/<slug>/uploads/), at most 10"),
        Field("reply_to", check_seq, required=False,
              doc="seq of an earlier message of the room to quote (not deleted); else `message_not_found`"),
    ),
    permission=_joined,
    doc=(
        "Post a message. Everyone in the room, on every server process, receives the `message` "
        "event. Repeating a client_id creates nothing: the sender gets the original back. "
        "`reply_to` quotes an earlier message of the same room."
    ),
    example={"type": "message", "room": "lobby", "body": "Hello!", "client_id": "c-1f2e", "attachments": [12],
             "reply_to": 41},
)
chat.message(
    "edit",
    fields=(ROOM, Field("id", check_id, doc="message id"), Field("body", _body, doc="the new text")),
    permission=_joined,
    doc="Edit your own message; everyone in the room receives `message.updated`.",
    example={"type": "edit", "room": "lobby", "id": 7, "body": "Hello, all!"},
)
chat.message(
    "delete",
    fields=(ROOM, Field("id", check_id, doc="message id")),
    permission=_joined,
    doc="Delete your own message (moderators: any message); the room receives `message.deleted`.",
    example={"type": "delete", "room": "lobby", "id": 7},
)
chat.message(
    "typing", fields=(ROOM,), permission=_joined, rate_limited=False,
    doc="Tell the room you are typing; the others receive `typing`. Throttled to one per 2 s.",
    example={"type": "typing", "room": "lobby"},
)

# --- Server events (built in chat/events.py) -----------------------------------------

chat.event("joined", doc="Reply to `join`: the latest seq and who is present.",
           example={"type": "joined", "room": "lobby", "title": "Lobby", "seq": 42,
                    "presence": ["alice", "bob"], "reset": False})
chat.event("left", doc="Reply to `leave`.", example={"type": "left", "room": "lobby"})
chat.event("removed", doc="You were removed from a room (`reason`: `kicked` or `banned` by staff, `removed` by "
           "the room's owner or a moderator); do not rejoin automatically.",
           example={"type": "removed", "room": "lobby", "reason": "banned"})
chat.event("message", doc=(
    "A chat message, to everyone in the room (including the sender). `body` is the source text; "
    "`html` is its Markdown subset rendered and sanitised on the server when it was written "
    "(pages insert it as is; everything else is text). `author_name` is the full name, else the "
    "username; `avatar` the URL of the author's profile picture, or null (pages draw initials). "
    "`reply_to` (only on replies) is the quoted message: its seq, author and an "
    "excerpt, or `\"deleted\": true` and no excerpt once it is deleted. `edited_ts` only after an edit. "

    "`attachments` (only when it has some): each file's id, name, size in bytes, sniffed content_type, url, and "
    "`thumbnail_url` for pictures; the URLs answer only readers of the room."),
    example={"type": "message", "room": "lobby", "seq": 42, "id": 7, "author": "alice",
             "author_name": "Alice Liddell", "avatar": "/api/avatars/1/?v=1764601200",
             "body": "**Hello!**", "html": "<p><strong>Hello!</strong></p>",
             "client_id": "c-1f2e", "ts": "2026-11-25T15:00:00.000000+00:00",
             "reply_to": {"seq": 41, "id": 6, "author": "bob", "author_name": "bob", "deleted": False,
                          "excerpt": "Anyone here?"},
             "attachments": [{"id": 12, "name": "cat.jpg", "size": 48213, "content_type": "image/jpeg",
                              "url": "/files/3q2V7wZkVx0aP1dQ/",
                              "thumbnail_url": "/files/3q2V7wZkVx0aP1dQ/thumbnail/"}]})
chat.event("message.updated", doc="A message was edited (or masked by moderation); `html` is re-rendered.",
           example={"type": "message.updated", "room": "lobby", "seq": 42, "id": 7,
                    "body": "Hello, all!", "html": "<p>Hello, all!</p>",
                    "edited_ts": "2026-11-25T15:01:00.000000+00:00"})
chat.event("message.deleted", doc="A message was deleted; clients remove it.",
           example={"type": "message.deleted", "room": "lobby", "seq": 42, "id": 7})
chat.event("typing", doc="Someone else is typing.", example={"type": "typing", "room": "lobby", "user": "bob"})
chat.event("announcement", doc="A notice from staff (Celery), to everyone (`room` null) or to a room's members. "
           "`event_id` identifies it: a client shows each id once.",
           example={"type": "announcement", "id": 3, "room": None, "body": "Maintenance at 22:00 UTC",
                    "ts": "2026-11-25T15:00:00+00:00", "event_id": "announcement:3"})
chat.event("mention", doc="Someone mentioned you with @username, in any room you can see; sent to all your "
           "sockets, whichever room they have open.",
           example={"type": "mention", "room": "lobby", "seq": 42, "id": 7, "author": "bob",
                    "body": "@alice look", "event_id": "mention:7:1"})
chat.event("membership", doc="Your standing in a room changed (staff set your role, mute or ban); sent to "
           "all your sockets. `muted_until` is null when not muted.",
           example={"type": "membership", "room": "lobby", "role": "member",
                    "muted_until": "2026-11-25T15:10:00+00:00", "banned": False})

chat.event("room.added", doc="A room joined your room list (a direct message opened with you, an invite to a "
           "private room); sent to all your sockets. `entry` is the room as `/api/rooms/` lists it: `kind` is "
           "`dm` or `room`, a DM's `people` are the other members, `role` and `muted` are yours.",
           example={"type": "room.added", "room": "dm-3f1c0a9b2e7d4c5a6b8e9f01",
                    "entry": {"slug": "dm-3f1c0a9b2e7d4c5a6b8e9f01", "title": "alice, bob", "public": False,
                              "last_seq": 0, "kind": "dm", "role": "member", "muted": False,
                              "people": [{"user": "bob", "name": "Bob Smith"}]}})
chat.event("room.removed", doc="You were taken out of a private room by its owner or a moderator; it leaves "
           "your room list (a socket that had joined it also receives `removed`).",
           example={"type": "room.removed", "room": "design", "reason": "removed"})
chat.event("room.muted", doc="Your own notification setting of a room changed (from any of your tabs): muted "
           "rooms send you no `mention` or `dm`.",
           example={"type": "room.muted", "room": "lobby", "muted": True})
chat.event("dm", doc="A new message in one of your direct messages, to all your sockets whichever room they "
           "have open (not to the author; not when you muted it): for notifications and unread counts.",
           example={"type": "dm", "room": "dm-3f1c0a9b2e7d4c5a6b8e9f01", "seq": 5, "id": 71, "author": "bob",
                    "body": "lunch?", "ts": "2026-11-25T15:00:00.000000+00:00"})


# --- Domain errors to error frames (the consumer applies this map, in one place) -------


def _error_frame(exc: errors.ChatError) -> ProtocolError:
    """A chat refusal as the ``error`` frame of the same code, with what it is about."""
    return ProtocolError(exc.code, exc.detail, **exc.context)


chat.maps_error(errors.ChatError, _error_frame)


# --- Rooms as streams: a join inside a process's window reads no history (realtime.streams) ---

#: A room's topic carries its messages by seq, and deletions as tombstones, as history does.
def _rooms_latest(topics: list[str]) -> dict[str, int]:
    """Each room topic's last committed seq (the stream cache's audit)."""
    prefix = broadcast.room_group("")
    rows = Room.objects.filter(slug__in=[t[len(prefix):] for t in topics]).values_list("slug", "last_seq")
    return {broadcast.room_group(slug): seq for slug, seq in rows}


ROOM_STREAMS = streams.kind(prefix=broadcast.room_group(""), entries=("message", "message.deleted"),
                            latest=_rooms_latest)


@streams.reviser(prefix=ROOM_STREAMS.prefix, type="message.updated")
def _message_updated(window: streams.Window, change: dict[str, Any]) -> None:
    """An edit or a moderation mask: the message as history would now carry it, and the quotes of it."""
    current = window.get(change["seq"])
    if current is not None and current.get("type") == "message":
        window.replace(change["seq"], events.message_revised(current, change))
    _quotes_revised(window, change)


@streams.reviser(prefix=ROOM_STREAMS.prefix, type="message.deleted")
def _message_deleted(window: streams.Window, change: dict[str, Any]) -> None:
    """The tombstone replaced the message (an entry); replies to it now quote a tombstone."""
    _quotes_revised(window, change)


def _quotes_revised(window: streams.Window, change: dict[str, Any]) -> None:
    for seq, event in list(window.entries()):
        quote = event.get("reply_to")
        if isinstance(quote, dict) and quote.get("seq") == change["seq"]:
            window.replace(seq, {**event, "reply_to": events.quote_revised(quote, change)})
