"""Every event the reactions feature sends to a socket, built in one place."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser

from chat.models import Message


def reaction_event(*, message: Message, emoji: str, count: int, user: AbstractBaseUser, action: str) -> dict[str, Any]:
    """``reaction``: the emoji's new count on a message, after ``user`` added or removed theirs."""
    return {"type": "reaction", "room": message.room.slug, "id": message.pk, "seq": message.seq, "emoji": emoji,
            "count": count, "user": user.get_username(), "action": action}


def reactions_event(*, room: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """``reactions``: after ``joined``, the counts of the room's recent messages."""
    return {"type": "reactions", "room": room, "items": items}
