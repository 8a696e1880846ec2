"""Marking a room read: persisted, then sent to the user's other tabs and to the room."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from chat.errors import RoomNotFound
from chat.selectors import room_access, room_by_slug
from realtime import broadcast
from receipts import events
from receipts.models import ReadPosition


def read_mark(*, room_slug: str, user: AbstractBaseUser, seq: int) -> int:
    """Move the user's read position in a room forward to ``seq`` (clamped to the room's latest).

    Returns the position now stored. Moving backwards changes nothing and sends nothing,
    so tabs and devices that report out of order never lower it.
    """
    with transaction.atomic():
        room = room_by_slug(slug=room_slug)
        if room is None:
            raise RoomNotFound("no such room", room=room_slug)
        room_access(room=room, user=user).require("read")
        seq = min(seq, room.last_seq)
        position, _ = ReadPosition.objects.get_or_create(user=user, room=room)
        if seq <= position.seq:
            return position.seq
        ReadPosition.objects.filter(pk=position.pk).update(seq=seq, updated_at=timezone.now())
        broadcast.user_send_on_commit(user.pk, events.read_event(room=room.slug, seq=seq))
        broadcast.room_send_on_commit(room.slug, events.receipt_event(room=room.slug, user=user, seq=seq))
    return seq
