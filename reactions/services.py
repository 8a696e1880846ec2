"""Adding and removing reactions; each change reaches the room after commit."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction

from chat.models import Membership, Message
from reactions.models import Reaction
from realtime import broadcast
from realtime.protocol import ErrorCode, ProtocolError


def _reactable(*, room_slug: str, message_id: int, user: AbstractBaseUser) -> Message:
    message = Message.objects.select_related("room").filter(pk=message_id, room__slug=room_slug).first()
    if message is None or message.is_deleted:
        raise ProtocolError(ErrorCode.MESSAGE_NOT_FOUND, "no such message", id=message_id, room=room_slug)
    membership = Membership.objects.filter(room=message.room, user=user).first()
    if membership is None or membership.banned:
        raise ProtocolError(ErrorCode.FORBIDDEN, "you are not a member of this room", room=room_slug)
    return message


def _announce(message: Message, emoji: str, user: AbstractBaseUser, action: str) -> None:
    count = Reaction.objects.filter(message=message, emoji=emoji).count()
    broadcast.room_send_on_commit(
        message.room.slug,
        {"type": "reaction", "room": message.room.slug, "id": message.pk, "seq": message.seq, "emoji": emoji,
         "count": count, "user": user.get_username(), "action": action},
    )


def reaction_add(*, room_slug: str, message_id: int, user: AbstractBaseUser, emoji: str) -> bool:
    """Add the user's emoji to a message; False if it was already there (nothing sent)."""
    with transaction.atomic():
        message = _reactable(room_slug=room_slug, message_id=message_id, user=user)
        try:
            with transaction.atomic():
                Reaction.objects.create(message=message, user=user, emoji=emoji)
        except IntegrityError:
            return False
        _announce(message, emoji, user, "add")
    return True


def reaction_remove(*, room_slug: str, message_id: int, user: AbstractBaseUser, emoji: str) -> bool:
    """Remove the user's emoji from a message; False if it was not there."""
    with transaction.atomic():
        message = _reactable(room_slug=room_slug, message_id=message_id, user=user)
        deleted, _ = Reaction.objects.filter(message=message, user=user, emoji=emoji).delete()
        if not deleted:
            return False
        _announce(message, emoji, user, "remove")
    return True
