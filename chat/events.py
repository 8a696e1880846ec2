"""The protocol events the chat sends, built from models in one place."""

from __future__ import annotations

from typing import Any

from chat.models import Membership, Message


def _ts(value) -> str | None:
    return value.isoformat() if value is not None else None


def message_event(message: Message) -> dict[str, Any]:
    """``message`` for a live message; a ``message.deleted`` tombstone for a deleted one.

    History sends tombstones too, so a client sees every seq and never mistakes a
    deleted message for a gap.
    """
    if message.is_deleted:
        return message_deleted_event(message)
    event: dict[str, Any] = {
        "type": "message",
        "room": message.room.slug,
        "seq": message.seq,
        "id": message.pk,
        "author": message.author.get_username(),
        "body": message.body,
        "client_id": message.client_id,
        "ts": _ts(message.created_at),
    }
    if message.edited_at is not None:
        event["edited_ts"] = _ts(message.edited_at)
    return event


def message_updated_event(message: Message) -> dict[str, Any]:
    """``message.updated`` after an edit or a moderation mask."""
    return {
        "type": "message.updated",
        "room": message.room.slug,
        "seq": message.seq,
        "id": message.pk,
        "body": message.body,
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
