"""Writes: entering rooms, posting, editing and deleting messages, moderation.

Each function that changes what clients see emits the real-time event itself, after
the transaction commits (``realtime.broadcast.*_on_commit``): nobody can save a
message without notifying the room, and a rolled-back write reaches nobody.
"""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from chat import events
from chat.models import Membership, Message, Room
from realtime import broadcast
from realtime.protocol import ErrorCode, ProtocolError


class ServiceError(ProtocolError):
    """A refused write; its code is one of ``realtime.protocol.ErrorCode``."""


def room_create(*, slug: str, title: str, is_public: bool = True, created_by: AbstractBaseUser | None = None) -> Room:
    """Create a room; its creator becomes a moderator."""
    with transaction.atomic():
        room = Room(slug=slug, title=title, is_public=is_public, created_by=created_by)
        room.full_clean()
        room.save()
        if created_by is not None:
            Membership.objects.create(room=room, user=created_by, role=Membership.Role.MODERATOR)
    return room


def room_enter(*, slug: str, user: AbstractBaseUser) -> tuple[Room, Membership]:
    """The room and the user's membership, joining a public room on first entry.

    Refused: no such room, banned, or a private room the user is not a member of.
    """
    room = Room.objects.filter(slug=slug).first()
    if room is None:
        raise ServiceError(ErrorCode.ROOM_NOT_FOUND, "no such room", room=slug)
    membership = Membership.objects.filter(room=room, user=user).first()
    if membership is None:
        if not room.is_public:
            raise ServiceError(ErrorCode.FORBIDDEN, "this room is private", room=slug)
        membership, _ = Membership.objects.get_or_create(room=room, user=user)
    if membership.banned:
        raise ServiceError(ErrorCode.BANNED, "you are banned from this room", room=slug)
    return room, membership


def _postable_membership(room: Room, user: AbstractBaseUser) -> Membership:
    membership = Membership.objects.filter(room=room, user=user).first()
    if membership is None:
        raise ServiceError(ErrorCode.FORBIDDEN, "you are not a member of this room", room=room.slug)
    if membership.banned:
        raise ServiceError(ErrorCode.BANNED, "you are banned from this room", room=room.slug)
    if membership.is_muted():
        raise ServiceError(
            ErrorCode.MUTED, "you are muted in this room", room=room.slug, until=membership.muted_until.isoformat()
        )
    return membership


def message_post(
    *, room: Room, author: AbstractBaseUser, body: str, client_id: str | None = None
) -> tuple[Message, bool]:
    """Store a message with the room's next seq and broadcast it after commit.

    Returns ``(message, created)``. A ``client_id`` the author already used in this room
    returns the original message with ``created=False`` and stores nothing.

    The seq comes from an ``UPDATE room SET last_seq = last_seq + 1`` inside the
    transaction: the row lock (PostgreSQL) or the write lock taken at BEGIN IMMEDIATE
    (SQLite) serialises writers across processes, and the unique (room, seq) constraint
    would refuse a duplicate if anything else ever went wrong.
    """
    try:
        with transaction.atomic():
            _postable_membership(room, author)
            if client_id is not None:
                existing = Message.objects.filter(room=room, author=author, client_id=client_id).first()
                if existing is not None:
                    return existing, False
            Room.objects.filter(pk=room.pk).update(last_seq=F("last_seq") + 1)
            seq = Room.objects.values_list("last_seq", flat=True).get(pk=room.pk)
            message = Message.objects.create(room=room, author=author, body=body, seq=seq, client_id=client_id)
            broadcast.room_send_on_commit(room.slug, events.message_event(message))
            return message, True
    except IntegrityError:
        # Two sends of one client_id raced (PostgreSQL): the other one won.
        if client_id is None:
            raise
        return Message.objects.get(room=room, author=author, client_id=client_id), False


def _message_in_room(room: Room, message_id: int) -> Message:
    message = Message.objects.select_related("room", "author").filter(pk=message_id, room=room).first()
    if message is None or message.is_deleted:
        raise ServiceError(ErrorCode.MESSAGE_NOT_FOUND, "no such message", id=message_id, room=room.slug)
    return message


def message_edit(*, room: Room, user: AbstractBaseUser, message_id: int, body: str) -> Message:
    """Change the text of one's own message and broadcast ``message.updated``."""
    with transaction.atomic():
        _postable_membership(room, user)
        message = _message_in_room(room, message_id)
        if message.author_id != user.pk:
            raise ServiceError(ErrorCode.FORBIDDEN, "you can only edit your own messages", id=message_id)
        message.body = body
        message.edited_at = timezone.now()
        message.save(update_fields=["body", "edited_at"])
        broadcast.room_send_on_commit(room.slug, events.message_updated_event(message))
    return message


def message_delete(*, room: Room, user: AbstractBaseUser, message_id: int) -> Message:
    """Delete one's own message, or any message as a moderator; broadcast ``message.deleted``."""
    with transaction.atomic():
        membership = Membership.objects.filter(room=room, user=user).first()
        message = _message_in_room(room, message_id)
        is_moderator = membership is not None and membership.is_moderator and not membership.banned
        if message.author_id != user.pk and not is_moderator:
            raise ServiceError(ErrorCode.FORBIDDEN, "you can only delete your own messages", id=message_id)
        if message.author_id == user.pk and membership is not None and membership.banned:
            raise ServiceError(ErrorCode.BANNED, "you are banned from this room", room=room.slug)
        return _message_tombstone(message)


def _message_tombstone(message: Message) -> Message:
    message.deleted_at = timezone.now()
    message.save(update_fields=["deleted_at"])
    broadcast.room_send_on_commit(message.room.slug, events.message_deleted_event(message))
    return message


# --- Moderation (the admin calls these; staff rights are checked by the admin) ---------


def message_remove(*, message: Message) -> Message:
    """Delete a message as staff; everyone in the room sees it disappear."""
    with transaction.atomic():
        if message.is_deleted:
            return message
        return _message_tombstone(message)


def member_mute(*, membership: Membership, until: datetime | None) -> Membership:
    """Mute a member until a time (None: unmute)."""
    membership.muted_until = until
    membership.save(update_fields=["muted_until"])
    return membership


def member_ban(*, membership: Membership) -> Membership:
    """Ban a member: their sockets leave the room at once and cannot rejoin."""
    with transaction.atomic():
        membership.banned = True
        membership.save(update_fields=["banned"])
        broadcast.user_control_on_commit(
            membership.user_id, "room_remove", room=membership.room.slug, reason="banned"
        )
    return membership


def member_unban(*, membership: Membership) -> Membership:
    """Lift a ban; the member may join again."""
    membership.banned = False
    membership.save(update_fields=["banned"])
    return membership


def member_kick(*, room_slug: str, user_id: int) -> None:
    """Remove a user's sockets from a room now, without a ban (they may rejoin)."""
    broadcast.user_control(user_id, "room_remove", room=room_slug, reason="kicked")
