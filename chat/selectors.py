"""Reads: who may do what in a room, rooms a user may see, people to talk to, and a room's history by seq."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Q, QuerySet

from chat import errors
from chat.models import Avatar, Membership, Message, Room
from realtime.rows import one

# --- Access: the one answer to "may this user read / post in this room" -------------

Action = Literal["enter", "read", "post"]
#: ``room_access(membership=...)``'s default: the membership has not been looked up yet.
UNLOADED: Any = object()


@dataclass(slots=True)
class Access:
    """What a user may do in a room; ``refusal`` says why not, as a domain error.

    * ``can_enter``: join it over a socket, see it listed, be mentioned in it: a public
      room or one the user is a member of, never while banned.
    * ``can_read``: read its history, react, mark it read: a member who is not banned
      (a public room's membership comes from entering it).
    * ``can_post``: post and edit: ``can_read`` and not muted.
    """

    room: Room | None
    membership: Membership | None
    can_enter: bool
    can_read: bool
    can_post: bool
    #: The refusal of each action denied (absent: allowed).
    refusals: dict[str, errors.ChatError]

    @property
    def reason(self) -> str | None:
        """The code of the first refusal (enter, then read, then post); None: all three are allowed."""
        for action in ("enter", "read", "post"):
            if action in self.refusals:
                return self.refusals[action].code
        return None

    def refusal(self, action: Action) -> errors.ChatError | None:
        """The domain error refusing ``action``, or None when it is allowed."""
        return self.refusals.get(action)

    def require(self, action: Action) -> Membership | None:
        """Raise the refusal of ``action`` if it is denied; else the membership (None: a public room not entered)."""
        refused = self.refusals.get(action)
        if refused is not None:
            raise refused
        return self.membership


def room_access(
    *, room: Room | None, user: AbstractBaseUser, membership: Membership | None = UNLOADED, just_read: bool = False
) -> Access:
    """The access of ``user`` to ``room`` (None: no such room).

    Private rooms and direct messages (private rooms of a fixed set of people, see
    ``Room.is_dm``) are entered by members only: an outsider is refused every action,
    so every door that asks here (socket join, history, reactions, receipts, mentions,
    presence, the room list, the admin's Online now) stays shut to them.

    ``membership`` saves the lookup when the caller already loaded it (``message_post``
    reads it with a raw query, the hot path); None there means "has none". ``just_read``:
    the caller read ``room`` itself a moment ago (``services.room_enter``), so an outsider's
    answer need not ask again whether it still exists.
    """
    if room is None:
        gone = errors.RoomNotFound("no such room")
        return Access(None, None, False, False, False, {"enter": gone, "read": gone, "post": gone})
    slug = room.slug
    if membership is UNLOADED:
        membership = membership_of(room=room, user=user)
    refusals: dict[str, errors.ChatError] = {}
    if not user.is_active:
        inactive = errors.Forbidden("your account is inactive", room=slug)
        refusals = {"enter": inactive, "read": inactive, "post": inactive}
    elif membership is not None and membership.banned:
        banned = errors.Banned("you are banned from this room", room=slug)
        refusals = {"enter": banned, "read": banned, "post": banned}
    elif membership is None:
        if not just_read and not Room.objects.filter(pk=room.pk).exists():
            # Deleted since the caller loaded it (consumers keep the joined room's model).
            gone = errors.RoomNotFound("no such room", room=slug)
            refusals = {"enter": gone, "read": gone, "post": gone}
        else:
            outsider = errors.Forbidden("you are not a member of this room", room=slug)
            refusals = {"read": outsider, "post": outsider}
            if not room.is_public:
                refusals["enter"] = errors.Forbidden("this room is private", room=slug)
    elif membership.is_muted():
        refusals = {"post": errors.Muted("you are muted in this room", room=slug,
                                         until=membership.muted_until.isoformat())}
    return Access(
        room, membership, "enter" not in refusals, "read" not in refusals, "post" not in refusals, refusals
    )



# Every join, message and door asks for the room by slug and for the user's membership:
# both skip the ORM's query building (realtime.rows). Each matches at most one row (unique).


def room_by_slug(*, slug: str) -> Room | None:
    """The room with this slug, or None."""
    return one(Room, ("slug",), [slug])


class Standing:
    """What ``room_access`` asks of a membership, kept by a socket between its messages.

    A joined socket answers every message's permission question from the membership its
    join read (chat.consumers). Rather than the model instance it was read into (its
    ``_state``, the ids, the dates, the cached related objects), the socket keeps this
    record of the three values the answer depends on, in slots. ``stale``: a ``membership``
    event said it changed since; a message queued with it is checked against the database
    when it is written (chat.services).
    """

    __slots__ = ("role", "muted_until", "banned", "stale")

    def __init__(self, membership: Membership) -> None:
        self.role, self.muted_until, self.banned = membership.role, membership.muted_until, membership.banned
        self.stale = False

    @classmethod
    def of(cls, membership: Membership | None) -> Standing | None:
        """The standing of ``membership`` (None: has none)."""
        return None if membership is None else cls(membership)

    is_muted = Membership.is_muted
    is_moderator = Membership.is_moderator
    Role = Membership.Role

    def __repr__(self) -> str:
        return f"<Standing {self.role} muted_until={self.muted_until} banned={self.banned}>"


def membership_of(*, room: Room, user: AbstractBaseUser) -> Membership | None:
    """The user's membership of the room, or None."""
    return one(Membership, ("room", "user"), [room.pk, user.pk])


def rooms_visible(*, user: AbstractBaseUser) -> QuerySet[Room]:
    """The rooms ``room_access`` lets the user enter, as one query: public rooms and the
    private rooms the user belongs to, minus those they are banned from."""
    if not user.is_active:
        return Room.objects.none()
    banned = Membership.objects.filter(user=user, banned=True).values("room_id")
    return (
        Room.objects.filter(Q(is_public=True) | Q(memberships__user=user))
        .exclude(pk__in=banned)
        .distinct()
        .order_by("slug")
    )


def rooms_readable(*, user: AbstractBaseUser) -> QuerySet[Room]:
    """The rooms ``room_access`` lets the user read, as one query (search filters by it).

    The same rule as ``Access.can_read``: an active user's rooms where they hold a
    membership that is not banned (a public room's membership comes from entering it).
    A test holds the two to the same answer for every standing.
    """
    if not user.is_active:
        return Room.objects.none()
    return Room.objects.filter(memberships__user=user, memberships__banned=False)
def display_name(user: AbstractBaseUser) -> str:
    """What the page calls a person: their full name, else their username."""
    return (getattr(user, "get_full_name", lambda: "")() or "").strip() or user.get_username()


@dataclass(slots=True)
class RoomListing:
    """A room as one user's room list shows it: their membership and, for a DM, the other people."""

    room: Room
    membership: Membership | None
    #: A DM's other members, (username, display name), by username.
    people: list[tuple[str, str]] = field(default_factory=list)


def room_list(*, user: AbstractBaseUser) -> list[RoomListing]:
    """The user's room list: ``rooms_visible`` with their memberships and each DM's other people (three queries)."""
    rooms = list(rooms_visible(user=user))
    mine = {m.room_id: m for m in Membership.objects.filter(user=user, room__in=[r.pk for r in rooms])}
    dm_ids = [r.pk for r in rooms if r.is_dm]
    people: dict[int, list[tuple[str, str]]] = {pk: [] for pk in dm_ids}
    if dm_ids:
        others = (Membership.objects.filter(room_id__in=dm_ids).exclude(user=user)
                  .select_related("user").order_by("user__username"))
        for m in others:
            people[m.room_id].append((m.user.get_username(), display_name(m.user)))
    return [RoomListing(r, mine.get(r.pk), people.get(r.pk, [])) for r in rooms]


def room_listing(*, room: Room, user: AbstractBaseUser) -> RoomListing:
    """One room as ``room_list`` shows it to ``user`` (for the event telling them it was added)."""
    membership = Membership.objects.filter(room=room, user=user).first()
    people: list[tuple[str, str]] = []
    if room.is_dm:
        others = (Membership.objects.filter(room=room).exclude(user=user)
                  .select_related("user").order_by("user__username"))
        people = [(m.user.get_username(), display_name(m.user)) for m in others]
    return RoomListing(room, membership, people)


def room_members(*, room: Room) -> list[Membership]:
    """A room's members who are not banned, owners and moderators first, then by username."""
    order = {Membership.Role.OWNER: 0, Membership.Role.MODERATOR: 1, Membership.Role.MEMBER: 2}
    members = list(Membership.objects.filter(room=room, banned=False).select_related("user"))
    members.sort(key=lambda m: (order.get(m.role, 3), m.user.get_username()))
    return members


def people_search(*, q: str, exclude: AbstractBaseUser | None = None, limit: int = 10) -> list[AbstractBaseUser]:
    """Active users whose username or name starts with ``q`` (case-insensitive), by username.

    Only people one could write to: inactive accounts never appear. Callers show only
    usernames and display names.
    """
    q = q.strip()
    if not q:
        return []
    User = get_user_model()
    match = Q(username__istartswith=q) | Q(first_name__istartswith=q) | Q(last_name__istartswith=q)
    found = User.objects.filter(match, is_active=True)
    if exclude is not None:
        found = found.exclude(pk=exclude.pk)
    return list(found.order_by("username")[:limit])


def rooms_moderated(*, user: AbstractBaseUser) -> list[str]:
    """The slugs of the rooms the user moderates (the page offers Delete on anyone's message there)."""
    return list(Membership.objects.filter(user=user, role=Membership.Role.MODERATOR, banned=False)
                .values_list("room__slug", flat=True).order_by())


def avatar_of(*, user_id: int) -> Avatar | None:
    """The profile picture of the user with this id, or None."""
    return Avatar.objects.filter(user_id=user_id).first()


def _messages(room: Room) -> QuerySet[Message]:
    # The authors' pictures' versions only (events.avatar_url): not the PNGs themselves.
    return (Message.objects.filter(room=room).select_related("author__avatar", "room", "reply_to__author")
            .defer("author__avatar__png")
            .prefetch_related("attachments"))


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


def room_around(*, room: Room, seq: int, limit: int) -> list[Message]:
    """Up to ``limit`` messages centred on ``seq`` (a search hit, a reply's parent), oldest first."""
    older = list(_messages(room).filter(seq__lt=seq).order_by("-seq")[: limit // 2])
    older.reverse()
    newer = list(_messages(room).filter(seq__gte=seq).order_by("seq")[: limit - len(older)])
    return older + newer


@dataclass(frozen=True)
class Resume:
    """What a joining socket is sent: messages in seq order, the room's latest seq, and
    whether the client's position was too old (``reset``: it gets the latest page)."""

    messages: list[Message]
    latest_seq: int
    reset: bool


def room_resume(*, room: Room, last_seq: int | None, page: int, cap: int, latest: int | None = None) -> Resume:
    """Everything after ``last_seq`` (at most ``cap``), or the latest page.

    ``latest``: the room's last seq as the caller just read it (saves a query). It must
    have been read after the caller subscribed to the room's broadcasts, as
    ``room.last_seq`` of a room loaded after subscribing is: a message committed after
    that read then arrives live.
    """
    if latest is None:
        latest = Room.objects.values_list("last_seq", flat=True).get(pk=room.pk)
    if last_seq == latest or (latest == 0 and last_seq is None):
        # Nothing to read: a client that saw the last message (the usual reconnect), or a
        # first look at an empty room. The query would return nothing, after building a
        # four-table join.
        return Resume([], latest, reset=False)
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
