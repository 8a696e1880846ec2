"""Read positions and unread counts."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser

from chat.models import Room
from chat.selectors import rooms_visible
from receipts.models import ReadPosition


def unread_by_room(*, user: AbstractBaseUser) -> dict[str, dict[str, int]]:
    """For every room the user can see: its latest seq, how far they read, and the difference."""
    read = dict(ReadPosition.objects.filter(user=user).values_list("room__slug", "seq"))
    return {
        room.slug: {"last_seq": room.last_seq, "read_seq": read.get(room.slug, 0),
                    "unread": max(0, room.last_seq - read.get(room.slug, 0))}
        for room in rooms_visible(user=user)
    }


def read_positions(*, room: Room, limit: int = 200) -> list[dict[str, object]]:
    """The most recently updated read positions in a room (for "seen by")."""
    rows = (
        ReadPosition.objects.filter(room=room, seq__gt=0)
        .select_related("user")
        .order_by("-updated_at")[:limit]
    )
    return [{"user": r.user.get_username(), "seq": r.seq} for r in rows]


def read_seq(*, room: Room, user: AbstractBaseUser) -> int:
    """How far ``user`` has read in ``room`` (0: nothing)."""
    return ReadPosition.objects.filter(room=room, user=user).values_list("seq", flat=True).first() or 0
