"""Reaction counts for the messages a socket is about to show."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Count, Q

from chat.models import Room
from reactions.models import Reaction


def reactions_recent(*, room: Room, since_seq: int, user: AbstractBaseUser) -> list[dict]:
    """Counts per (message, emoji) for messages with seq > since_seq, with whether ``user`` reacted."""
    rows = (
        Reaction.objects.filter(message__room=room, message__seq__gt=since_seq, message__deleted_at__isnull=True)
        .values("message_id", "message__seq", "emoji")
        .annotate(count=Count("id"), mine=Count("id", filter=Q(user=user)))
        .order_by("message__seq", "emoji")
    )
    return [
        {"id": r["message_id"], "seq": r["message__seq"], "emoji": r["emoji"], "count": r["count"],
         "mine": r["mine"] > 0}
        for r in rows
    ]
