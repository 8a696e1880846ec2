"""Reaction counts for the messages a socket is about to show."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Count

from chat.models import Room
from reactions.models import Reaction


def reactions_recent(*, room: Room, since_seq: int, user: AbstractBaseUser) -> list[dict]:
    """Counts per (message, emoji) for messages with seq > since_seq, with whether ``user`` reacted."""
    rows = (
        Reaction.objects.filter(message__room=room, message__seq__gt=since_seq, message__deleted_at__isnull=True)
        .values("message_id", "message__seq", "emoji")
        .annotate(count=Count("id"))
        .order_by("message__seq", "emoji")
    )
    mine = set(
        Reaction.objects.filter(message__room=room, message__seq__gt=since_seq, user=user).values_list(
            "message_id", "emoji"
        )
    )
    return [
        {"id": r["message_id"], "seq": r["message__seq"], "emoji": r["emoji"], "count": r["count"],
         "mine": (r["message_id"], r["emoji"]) in mine}
        for r in rows
    ]
