"""Every event the chat sends to a socket, built in one place.

The consumer's replies (``joined``, ``left``, ``removed``), what the room is sent
(``message``, ``message.updated``, ``message.deleted``, ``typing``) and the pushes of the
Celery tasks (``announcement``, ``mention``) all come from here, so one event type has one
shape wherever it is sent. Presence (``presence``) is a core event: realtime.protocol's
``presence_event``, sent through realtime.broadcast.apresence_send by the runtime and the
chat alike. The fields of each event are documented in chat/realtime_features.py and
docs/protocol.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ObjectDoesNotExist

from attachments.events import attachment_event, attachments_of
from chat import markup
from chat.models import Announcement, Avatar, Membership, Message, Room
from realtime import rows


def _ts(value) -> str | None:
    return value.isoformat() if value is not None else None


#: How much of a quoted message a reply carries.
EXCERPT_CHARS = 140


def display_name(user) -> str:
    """What the page shows for a person: the full name, else the username."""
    return user.get_full_name().strip() or user.get_username()


def avatar_url(user) -> str | None:
    """The user's profile picture URL, or None (the page draws initials).

    Read once per user object: history loads it with the author (select_related), and a
    socket's own user keeps the answer for its later messages, so posting costs no query.
    The first read is of its version only (realtime.rows, the picture deferred): through the
    descriptor it built a query and loaded the PNG, for a user's every first message.
    """
    related = get_user_model().avatar.related
    if not related.is_cached(user):
        related.set_cached_value(user, rows.one(Avatar, ("user",), [user.pk], only=("updated_at",)))
    try:
        avatar = user.avatar
    except ObjectDoesNotExist:
        return None
    return avatar.url


def reply_quote(quoted: Message | None) -> dict[str, Any] | None:
    """What a reply shows of the message it quotes; ``deleted`` (and no text) once that is deleted."""
    if quoted is None:
        return None
    quote: dict[str, Any] = {"seq": quoted.seq, "id": quoted.pk, "author": quoted.author.get_username(),
                             "author_name": display_name(quoted.author), "deleted": quoted.is_deleted,
                             "excerpt": ""}
    if not quoted.is_deleted:
        quote["excerpt"] = quote_excerpt(html=quoted.html, body=quoted.body)
    return quote


def quote_excerpt(*, html: str, body: str) -> str:
    """The text a quote shows (formatting marks gone), from the stored HTML; the page sets it as text."""
    text = " ".join(markup.html_text(html).split()) if html else " ".join(body.split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def message_revised(event: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """A ``message`` event as ``change`` (a ``message.updated``) leaves it: what history would now carry."""
    return {**event, "body": change["body"], "html": change["html"], "edited_ts": change["edited_ts"]}


def quote_revised(quote: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """A reply's quote after its message was edited (``message.updated``) or deleted (``message.deleted``)."""
    if change["type"] == "message.deleted":
        return {**quote, "deleted": True, "excerpt": ""}
    return {**quote, "excerpt": quote_excerpt(html=change.get("html") or "", body=change.get("body") or "")}


def message_event(message: Message, *, attachments: Iterable[Any] | None = None) -> dict[str, Any]:
    """``message`` for a live message; a ``message.deleted`` tombstone for a deleted one.

    History sends tombstones too, so a client sees every seq and never mistakes a
    deleted message for a gap. ``attachments``: the message's, when the caller has them
    (a new message); else they are read (prefetched by history). Sent only when there are some.
    ``html`` is the body as rendered when it was written (chat.markup): the event carries
    it, nothing renders per delivery.
    """
    if message.is_deleted:
        return message_deleted_event(message)
    event: dict[str, Any] = {
        "type": "message",
        "room": message.room.slug,
        "seq": message.seq,
        "id": message.pk,
        "author": message.author.get_username(),
        "author_name": display_name(message.author),
        "avatar": avatar_url(message.author),
        "body": message.body,
        "html": message.html,
        "client_id": message.client_id,
        "ts": _ts(message.created_at),
    }
    if message.reply_to_id is not None:
        event["reply_to"] = reply_quote(message.reply_to)
    if message.edited_at is not None:
        event["edited_ts"] = _ts(message.edited_at)
    files = attachments_of(message) if attachments is None else [attachment_event(a) for a in attachments]
    if files:
        event["attachments"] = files
    return event


def message_updated_event(message: Message) -> dict[str, Any]:
    """``message.updated`` after an edit or a moderation mask."""
    return {
        "type": "message.updated",
        "room": message.room.slug,
        "seq": message.seq,
        "id": message.pk,
        "body": message.body,
        "html": message.html,
        "edited_ts": _ts(message.edited_at),
    }


def message_deleted_event(message: Message) -> dict[str, Any]:
    """``message.deleted``: clients remove the message; its seq stays used."""
    return {"type": "message.deleted", "room": message.room.slug, "seq": message.seq, "id": message.pk}


def membership_event(membership: Membership) -> dict[str, Any]:
    """``membership``: the user's own role, mute and ban in a room, after staff changed them."""
    return {
        "type": "membership",
        "room": membership.room.slug,
        "role": membership.role,
        "muted_until": _ts(membership.muted_until),
        "banned": membership.banned,
    }


def message_events(messages: Iterable[Message]) -> list[dict[str, Any]]:
    """The events of a page of history, in its order (tombstones included)."""
    return [message_event(m) for m in messages]


def joined_event(*, room: Room, seq: int, presence: list[str], reset: bool) -> dict[str, Any]:
    """``joined``: the reply to ``join`` (or, with ``reset``, the order to start over)."""
    return {"type": "joined", "room": room.slug, "title": room.title, "seq": seq, "presence": presence,
            "reset": reset}


def left_event(*, room: str) -> dict[str, Any]:
    """``left``: the reply to ``leave``."""
    return {"type": "left", "room": room}


def removed_event(*, room: str, reason: str) -> dict[str, Any]:
    """``removed``: a kick or a ban took this socket out of the room."""
    return {"type": "removed", "room": room, "reason": reason}


def typing_event(*, room: str, username: str) -> dict[str, Any]:
    """``typing``: someone in the room is typing."""
    return {"type": "typing", "room": room, "user": username}


def mention_event(message: Message) -> dict[str, Any]:
    """``mention``: pushed to a mentioned user's every socket (the push adds ``event_id``)."""
    return {
        "type": "mention",
        "room": message.room.slug,
        "seq": message.seq,
        "id": message.pk,
        "author": message.author.get_username(),
        "body": message.body,
    }


def announcement_event(announcement: Announcement) -> dict[str, Any]:
    """``announcement``: a staff notice, to a room (``room``) or to everyone (``room`` null)."""
    return {
        "type": "announcement",
        "id": announcement.pk,
        "room": announcement.room.slug if announcement.room else None,
        "body": announcement.body,
        "ts": announcement.send_at.isoformat(),
    }


# --- The room list: direct messages, invites, removals, mutes ---------------------------


def room_entry(listing: Any) -> dict[str, Any]:
    """One room as a user's room list shows it (``/api/rooms/``, ``room.added``).

    ``listing`` is a chat.selectors.RoomListing (room, the user's membership, a DM's
    other people). ``kind`` is ``dm`` for a direct message, whose ``people`` are the
    other members; ``role`` and ``muted`` are the user's own (null role: a public room
    not entered).
    """
    room, membership = listing.room, listing.membership
    entry: dict[str, Any] = {
        "slug": room.slug, "title": room.title, "public": room.is_public, "last_seq": room.last_seq,
        "kind": "dm" if room.is_dm else "room",
        "role": membership.role if membership is not None else None,
        "muted": bool(membership is not None and membership.notifications_muted),
    }
    if room.is_dm:
        entry["people"] = [{"user": user, "name": name} for user, name in listing.people]
    return entry


def room_added_event(listing: Any) -> dict[str, Any]:
    """``room.added``: to a user's sockets, a room they can now see (a DM opened with them, an invite)."""
    return {"type": "room.added", "room": listing.room.slug, "entry": room_entry(listing)}


def room_removed_event(*, room: str, reason: str) -> dict[str, Any]:
    """``room.removed``: to a user's sockets, a private room they are no longer in."""
    return {"type": "room.removed", "room": room, "reason": reason}


def room_muted_event(membership: Membership) -> dict[str, Any]:
    """``room.muted``: to a user's sockets, their own notification setting of a room changed."""
    return {"type": "room.muted", "room": membership.room.slug, "muted": membership.notifications_muted}


def dm_event(message: Message) -> dict[str, Any]:
    """``dm``: to the other members' sockets, a new direct message (for notifications and unread counts)."""
    return {
        "type": "dm",
        "room": message.room.slug,
        "seq": message.seq,
        "id": message.pk,
        "author": message.author.get_username(),
        "body": message.body,
        "ts": _ts(message.created_at),
    }
