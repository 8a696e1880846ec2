"""Adding and removing reactions; each change reaches the room after commit."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction

from chat.errors import MessageNotFound
from chat.models import Message
from chat.selectors import room_access
from reactions import events
from reactions.models import Reaction
from realtime import broadcast


def _reactable(*, room_slug: str, message_id: int, user: AbstractBaseUser) -> Message:
    """The live message to react to, if the user may read its room; else chat's domain error."""
    message = Message.objects.select_related("room").filter(pk=message_id, room__slug=room_slug).first()
    if message is None or message.is_deleted:
        raise MessageNotFound("no such message", id=message_id, room=room_slug)
    room_access(room=message.room, user=user).require("read")
    return message


def _announce(message: Message, emoji: str, user: AbstractBaseUser, action: str) -> None:
    count = Reaction.objects.filter(message=message, emoji=emoji).count()
    broadcast.room_send_on_commit(
        message.room.slug, events.reaction_event(message=message, emoji=emoji, count=count, user=user, action=action)
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
