"""Marking a room read: persisted, then sent to the user's other tabs and to the room."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from chat.models import Membership, Room
from realtime import broadcast
from realtime.protocol import ErrorCode, ProtocolError
from receipts.models import ReadPosition


def read_mark(*, room_slug: str, user: AbstractBaseUser, seq: int) -> int:
    """Move the user's read position in a room forward to ``seq`` (clamped to the room's latest).

    Returns the position now stored. Moving backwards changes nothing and sends nothing,
    so tabs and devices that report out of order never lower it.
    """
    with transaction.atomic():
        room = Room.objects.filter(slug=room_slug).first()
        if room is None:
            raise ProtocolError(ErrorCode.ROOM_NOT_FOUND, "no such room", room=room_slug)
        if not Membership.objects.filter(room=room, user=user, banned=False).exists():
            raise ProtocolError(ErrorCode.FORBIDDEN, "you are not a member of this room", room=room_slug)
        seq = min(seq, room.last_seq)
        position, _ = ReadPosition.objects.get_or_create(user=user, room=room)
        if seq <= position.seq:
            return position.seq
        ReadPosition.objects.filter(pk=position.pk).update(seq=seq, updated_at=timezone.now())
        event = {"type": "read", "room": room.slug, "seq": seq}
        broadcast.user_send_on_commit(user.pk, event)
        broadcast.room_send_on_commit(
            room.slug, {"type": "receipt", "room": room.slug, "user": user.get_username(), "seq": seq}
        )
    return seq
