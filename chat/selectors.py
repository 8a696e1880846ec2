"""Reads: rooms a user may see, and a room's history by seq."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Q, QuerySet

from chat.models import Membership, Message, Room


def room_by_slug(*, slug: str) -> Room | None:
    """The room with this slug, or None."""
    return Room.objects.filter(slug=slug).first()


def membership_of(*, room: Room, user: AbstractBaseUser) -> Membership | None:
    """The user's membership of the room, or None."""
    return Membership.objects.filter(room=room, user=user).first()


def rooms_visible(*, user: AbstractBaseUser) -> QuerySet[Room]:
    """Public rooms and the private rooms the user belongs to, minus those they are banned from."""
    banned = Membership.objects.filter(user=user, banned=True).values("room_id")
    return (
        Room.objects.filter(Q(is_public=True) | Q(memberships__user=user))
        .exclude(pk__in=banned)
        .distinct()
        .order_by("slug")
    )


def _messages(room: Room) -> QuerySet[Message]:
    return Message.objects.filter(room=room).select_related("author", "room")


def room_latest(*, room: Room, limit: int) -> list[Message]:
    """The newest ``limit`` messages (deleted ones included as tombstones), oldest first."""
    page = list(_messages(room).order_by("-seq")[:limit])
    page.reverse()
    return page


def room_before(*, room: Room, before_seq: int, limit: int) -> list[Message]:
    """Up to ``limit`` messages with seq < before_seq, oldest first."""
    page = list(_messages(room).filter(seq__lt=before_seq).order_by("-seq")[:limit])
    page.reverse()
    return page


@dataclass(frozen=True)
class Resume:
    """What a joining socket is sent: messages in seq order, the room's latest seq, and
    whether the client's position was too old (``reset``: it gets the latest page)."""

    messages: list[Message]
    latest_seq: int
    reset: bool


def room_resume(*, room: Room, last_seq: int | None, page: int, cap: int) -> Resume:
    """Everything after ``last_seq`` (at most ``cap``), or the latest page."""
    latest = Room.objects.values_list("last_seq", flat=True).get(pk=room.pk)
    # Pages end at ``latest``: a message committed since is sent live, and the consumer
    # drops live messages at or below ``latest``, so one past it here would arrive twice.
    if last_seq is None:
        return Resume(room_before(room=room, before_seq=latest + 1, limit=page), latest, reset=False)
    if last_seq > latest:
        # The client claims messages that do not exist (another database?): start over.
        return Resume(room_before(room=room, before_seq=latest + 1, limit=page), latest, reset=True)
    if latest - last_seq > cap:
        return Resume(room_before(room=room, before_seq=latest + 1, limit=page), latest, reset=True)
    missed = list(_messages(room).filter(seq__gt=last_seq, seq__lte=latest).order_by("seq"))
    return Resume(missed, latest, reset=False)
