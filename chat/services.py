"""Writes: rooms, direct messages and invites, posting, editing and deleting messages, moderation.

Each function that changes what clients see emits the real-time event itself, after
the transaction commits (``realtime.broadcast.*_on_commit``): nobody can save a
message without notifying the room, and a rolled-back write reaches nobody.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from attachments import services as attachment_services
from chat import events, markup, moderation, selectors
from chat.errors import Blocked, ChatError, Forbidden, InvalidRequest, MessageNotFound, RoomNotFound
from chat.models import Announcement, Avatar, BannedWord, BannedWordList, Membership, Message, Room
from realtime import broadcast, push
from search import services as search_index

logger = logging.getLogger(__name__)

#: A refused write: one of chat.errors (its ``code`` names the refusal).
ServiceError = ChatError


def room_create(*, slug: str, title: str, is_public: bool = True, created_by: AbstractBaseUser | None = None) -> Room:
    """Create a room; its creator becomes its owner (who moderates it and invites to it)."""
    with transaction.atomic():
        room = Room(slug=slug, title=title, is_public=is_public, created_by=created_by)
        room.full_clean()
        room.save()
        if created_by is not None:
            Membership.objects.create(room=room, user=created_by, role=Membership.Role.OWNER)
    return room


# --- Direct messages, invites, removals and one's own notification setting -------------

#: A group DM holds the opener and at most this many other people.
DM_MAX_OTHERS = 8


def _dm_slug(key: str) -> str:
    """The DM's slug, a function of its people: concurrent opens collide on it as on the key."""
    return "dm-" + hashlib.sha256(key.encode()).hexdigest()[:24]


def _room_added_on_commit(room: Room, user: AbstractBaseUser) -> None:
    """Tell the user's sockets (after commit) that a room joined their list, as the list shows it to them."""
    broadcast.user_send_on_commit(user.pk, events.room_added_event(selectors.room_listing(room=room, user=user)))


def dm_open(*, opener: AbstractBaseUser, usernames: Collection[str]) -> tuple[Room, bool]:
    """The direct message between ``opener`` and the named people: ``(room, created)``.

    The same set of people always gets the same room, whoever opens it: the room's
    ``dm_key`` is their sorted user ids, unique in the database, so two concurrent opens
    create one room (the loser's insert fails and it reads the winner's). Every name must
    be an active user, and at most ``DM_MAX_OTHERS`` others; otherwise nothing is
    created. A new DM reaches each member's sockets as ``room.added``.
    """
    if not opener.is_active:
        raise Forbidden("your account is inactive")
    names = {str(name) for name in usernames} - {opener.get_username()}
    if not names:
        raise InvalidRequest("name at least one other person", field="users")
    if len(names) > DM_MAX_OTHERS:
        raise InvalidRequest(f"a direct message holds at most {DM_MAX_OTHERS} other people", field="users")
    others = list(get_user_model().objects.filter(username__in=names, is_active=True).order_by("username"))
    unknown = names - {u.get_username() for u in others}
    if unknown:
        raise InvalidRequest("no such user", field="users", users=sorted(unknown))
    people = [opener, *others]
    key = ",".join(str(pk) for pk in sorted(u.pk for u in people))
    existing = Room.objects.filter(dm_key=key).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            room = Room.objects.create(
                slug=_dm_slug(key), title=", ".join(sorted(u.get_username() for u in people))[:200],
                is_public=False, created_by=opener, dm_key=key,
            )
            Membership.objects.bulk_create([Membership(room=room, user=u) for u in people])
            for user in people:
                _room_added_on_commit(room, user)
    except IntegrityError:
        existing = Room.objects.filter(dm_key=key).first()
        if existing is None:
            raise
        return existing, False
    return room, True


def _managing_membership(room: Room, by: AbstractBaseUser) -> Membership:
    """``by``'s membership if they may change who is in ``room`` (its owner or a moderator)."""
    if room.is_dm:
        raise Forbidden("a direct message's people are fixed: open another one", room=room.slug)
    membership = selectors.room_access(room=room, user=by).require("read")
    if membership is None or not membership.is_moderator:
        raise Forbidden("only the room's owner and moderators manage its members", room=room.slug)
    return membership


def member_invite(*, room: Room, by: AbstractBaseUser, username: str) -> tuple[Membership, bool]:
    """Make an active user a member of a room, as its owner or a moderator: ``(membership, created)``.

    The invited user's sockets hear ``room.added`` after commit, so the room appears in
    their list at once. Inviting a member again changes nothing; a banned user stays
    banned (staff lift bans).
    """
    with transaction.atomic():
        _managing_membership(room, by)
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise InvalidRequest("no such user", field="user", user=username)
        existing = Membership.objects.filter(room=room, user=user).first()
        if existing is not None:
            if existing.banned:
                raise Forbidden("this user is banned from the room", room=room.slug, user=username)
            return existing, False
        membership = Membership.objects.create(room=room, user=user)
        _room_added_on_commit(room, user)
    return membership, True


def member_remove(*, room: Room, by: AbstractBaseUser, username: str) -> None:
    """Take a member out of a room, as its owner or a moderator; their sockets leave it at once.

    Nobody removes the owner, and a moderator removes only plain members. The user's
    sockets leave the room (the ``room_remove`` control, reason ``removed``) and, for a private
    room, hear ``room.removed`` so it leaves their list.
    """
    with transaction.atomic():
        mine = _managing_membership(room, by)
        target = Membership.objects.select_related("room", "user").filter(
            room=room, user__username=username).first()
        if target is None:
            raise InvalidRequest("not a member of this room", field="user", user=username)
        if target.role == Membership.Role.OWNER or (
            target.role == Membership.Role.MODERATOR and mine.role != Membership.Role.OWNER
        ):
            raise Forbidden("you cannot remove this member", room=room.slug, user=username)
        target.delete()
        broadcast.user_control_on_commit(target.user_id, "room_remove", room=room.slug, reason="removed")
        if not room.is_public:
            broadcast.user_send_on_commit(target.user_id, events.room_removed_event(room=room.slug, reason="removed"))


def room_notifications_set(*, room: Room, user: AbstractBaseUser, muted: bool) -> Membership:
    """Silence (or not) a room's notifications for oneself; the user's other tabs hear ``room.muted``.

    Muted: no ``mention`` or ``dm`` push from the room reaches the user, and the page
    dims its unread badge. Entering a public room for the first time makes the membership.
    """
    with transaction.atomic():
        membership = selectors.room_access(room=room, user=user).require("enter")
        if membership is None:
            membership, _ = Membership.objects.get_or_create(room=room, user=user)
        if membership.notifications_muted != muted:
            membership.notifications_muted = muted
            membership.save(update_fields=["notifications_muted"])
            broadcast.user_send_on_commit(user.pk, events.room_muted_event(membership))
    return membership


def room_enter(*, slug: str, user: AbstractBaseUser) -> tuple[Room, Membership]:
    """The room and the user's membership, joining a public room on first entry.

    Refused: no such room, banned, or a private room the user is not a member of.
    """
    room = selectors.room_by_slug(slug=slug)
    if room is None:
        raise RoomNotFound("no such room", room=slug)
    membership = selectors.room_access(room=room, user=user, just_read=True).require("enter")
    if membership is None:
        # room_access just found none: make it (get_or_create would look it up again first).
        # Another socket of the user entering at the same moment makes it first: read theirs.
        try:
            with transaction.atomic():
                membership = Membership.objects.create(room=room, user=user)
        except IntegrityError:
            membership = selectors.membership_of(room=room, user=user)
            if membership is None:  # not a duplicate: the room was deleted meanwhile
                raise RoomNotFound("no such room", room=slug) from None
    return room, membership


def avatar_set(*, user: AbstractBaseUser, data: bytes) -> Avatar:
    """Store the user's profile picture (chat.avatars re-encodes it; refused: ``AvatarRefused``).

    Messages carry its URL from the author's next connection (a socket keeps the URL it
    first read).
    """
    from chat import avatars

    png = avatars.thumbnail_png(data)
    avatar, _ = Avatar.objects.update_or_create(user=user, defaults={"png": png, "updated_at": timezone.now()})
    return avatar


def _postable_membership(
    room: Room, user: AbstractBaseUser, membership: Membership | None = selectors.UNLOADED
) -> Membership | None:
    # Every message runs this (selectors.membership_of: a raw query, no query building). A
    # socket passes the membership it cached at join (ChatConsumer drops it when a
    # ``membership`` event says it changed, and marks it stale for the messages already
    # queued with it: those are checked against the database here).
    if membership is selectors.UNLOADED or getattr(membership, "stale", False):
        membership = selectors.membership_of(room=room, user=user)
    selectors.room_access(room=room, user=user, membership=membership).require("post")
    return membership


@dataclass(frozen=True)
class MessageDraft:
    """One message to post: the batch writer's input (``membership``: the caller's cached one, if any)."""

    room: Room
    author: AbstractBaseUser
    body: str
    client_id: str | None = None
    membership: Any = selectors.UNLOADED
    attachments: Sequence[int] = ()  # upload ids, attached in the batch's transaction
    reply_to: int | None = None  # the seq of the room's message this one quotes


#: What :func:`messages_post` returns for each draft: ``(message, created)`` or the refusal.
PostOutcome = tuple[Message, bool] | ChatError


def message_post(
    *, room: Room, author: AbstractBaseUser, body: str, client_id: str | None = None,
    membership: Membership | None = selectors.UNLOADED, attachments: Sequence[int] = (),
    reply_to: int | None = None,
) -> tuple[Message, bool]:
    """Store one message with the room's next seq and broadcast it after commit.

    Returns ``(message, created)``; a refusal (chat.errors) is raised. The same writer as
    a batch (:func:`messages_post` with one draft): there is one write path.
    """
    draft = MessageDraft(room, author, body, client_id, membership, tuple(attachments), reply_to)
    outcome = messages_post(drafts=[draft])[0]
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def messages_post(*, drafts: Sequence[MessageDraft]) -> list[PostOutcome]:
    """Store messages in one transaction (group commit), each with its room's next seq; broadcast after commit.

    Returns one outcome per draft, in order: ``(message, created)``, or the refusal
    (chat.errors) of that draft alone. A ``client_id`` the author already used in the
    room gives the original message with ``created=False`` and stores nothing.

    Each room's seqs for the batch come from one ``UPDATE room SET last_seq = last_seq + n
    ... RETURNING`` inside the transaction: the row lock (PostgreSQL) or the write lock
    taken at BEGIN IMMEDIATE (SQLite) serialises writers across processes, and the unique
    (room, seq) constraint would refuse a duplicate if anything else ever went wrong. The
    batch is published in seq order once it commits: a rolled-back batch reaches nobody.

    A repeated ``client_id`` is caught by the unique (room, author, client_id) constraint
    rather than looked up first (one query less on the hot path): the insert fails, the
    transaction (with its seqs) rolls back, and each draft of the batch is written again
    on its own, where a repeat reads the original.

    The banned-words filter runs before anything is stored: *mask* words are stored (and
    so broadcast, served and mentioned) starred out; a *hide* word refuses the post
    (``blocked``) and stores nothing.

    A draft's ``attachments`` (upload ids) are attached in the same transaction: any that
    is not the author's own unsent upload to this room refuses that post
    (``invalid_attachment``); in a batch, the batch rolls back and each draft is written
    alone, so only that one is refused.

    The stored body is rendered to ``html`` here, once: every delivery carries that
    string. A draft's ``reply_to`` is the seq of an earlier, not deleted message of the
    same room that it quotes; any other seq refuses that post (``message_not_found``).
    """
    try:
        with transaction.atomic():
            return _messages_write(drafts)
    except _BatchRefused as refused:
        if len(drafts) == 1:
            return [refused.error]
        return [_message_write_alone(draft) for draft in drafts]
    except RoomNotFound:
        if len(drafts) == 1:
            raise
        return [_message_write_alone(draft) for draft in drafts]  # a room deleted meanwhile: refuse its drafts only
    except IntegrityError:
        if len(drafts) > 1:
            return [_message_write_alone(draft) for draft in drafts]
        draft = drafts[0]
        existing = _original(draft.room, draft.author, draft.client_id)
        if existing is None:
            raise
        return [(existing, False)]


class _BatchRefused(Exception):
    """A refusal found after the batch's inserts (an attachment): the whole batch rolls back."""

    def __init__(self, error: ChatError) -> None:
        super().__init__(str(error))
        self.error = error


def _message_write_alone(draft: MessageDraft) -> PostOutcome:
    """One draft of a batch that failed as a whole, in its own transaction."""
    try:
        return messages_post(drafts=[draft])[0]
    except ChatError as exc:
        return exc


def _messages_write(drafts: Sequence[MessageDraft]) -> list[PostOutcome]:
    """The batch's checks, seqs and inserts, inside the caller's transaction."""
    outcomes: list[PostOutcome | None] = [None] * len(drafts)
    accepted: list[tuple[int, MessageDraft, str, bool]] = []
    quoted: dict[int, Message | None] = {}
    for index, draft in enumerate(drafts):
        try:
            _postable_membership(draft.room, draft.author, draft.membership)
            body, moderated = _body_moderated(draft.body, room=draft.room)
            quoted[index] = _reply_target(draft.room, draft.reply_to) if draft.reply_to is not None else None
        except Blocked as exc:
            original = _original(draft.room, draft.author, draft.client_id)
            # Stored before the word was banned: a resend gets it back.
            outcomes[index] = (original, False) if original is not None else exc
            continue
        except ChatError as exc:
            outcomes[index] = exc
            continue
        accepted.append((index, draft, body, moderated))
    if accepted:
        counts: dict[int, int] = {}
        for _, draft, _, _ in accepted:
            counts[draft.room.pk] = counts.get(draft.room.pk, 0) + 1
        top = _seqs_take(counts)
        gone = next((draft.room for _, draft, _, _ in accepted if draft.room.pk not in top), None)
        if gone is not None:  # deleted since the socket joined it (its membership went with it)
            raise RoomNotFound("no such room", room=gone.slug)
        now = timezone.now()
        messages = []
        for index, draft, body, moderated in accepted:  # seqs in arrival order, per room
            seq = top[draft.room.pk] - counts[draft.room.pk] + 1
            counts[draft.room.pk] -= 1
            messages.append(Message(
                room=draft.room, author=draft.author, body=body, html=markup.body_render(body), seq=seq,
                client_id=draft.client_id, reply_to=quoted[index], created_at=now,
                moderated_at=now if moderated else None,
            ))
        Message.objects.bulk_create(messages)
        attached: list[Any] = []
        for (_, draft, _, _), message in zip(accepted, messages, strict=True):
            try:
                attached.append(attachment_services.attachments_claim(
                    room=draft.room, author=draft.author, ids=draft.attachments, message=message
                ) if draft.attachments else ())
            except ChatError as exc:
                raise _BatchRefused(exc) from exc
        search_index.messages_index(messages=messages)  # commits or rolls back with the batch
        broadcast.room_send_many_on_commit([
            (m.room.slug, events.message_event(m, attachments=files))
            for m, files in zip(messages, attached, strict=True)
        ])
        for (index, _, _, _), message in zip(accepted, messages, strict=True):
            if message.room.dm_key is not None:
                _dm_notify_on_commit(message)
            message_postprocess_queue(message=message)
            outcomes[index] = (message, True)
    return outcomes  # type: ignore[return-value]


def _dm_notify_on_commit(message: Message) -> None:
    """A DM's other members hear ``dm`` on all their sockets (unless they muted it), after commit."""
    recipients = Membership.objects.filter(
        room=message.room, banned=False, notifications_muted=False
    ).exclude(user_id=message.author_id).values_list("user_id", flat=True)
    event = events.dm_event(message)
    for user_id in recipients:
        broadcast.user_send_on_commit(user_id, event)


def _original(room: Room, author: AbstractBaseUser, client_id: str | None) -> Message | None:
    """The message the author already posted in the room with this client_id, if any."""
    if client_id is None:
        return None
    return Message.objects.filter(room=room, author=author, client_id=client_id).first()


def _reply_target(room: Room, seq: int) -> Message:
    """The message of ``room`` with this seq that a new message may quote: it exists and is not deleted.

    Looked up by the unique (room, seq): a seq of another room, or past the room's last
    seq, matches nothing here.
    """
    quoted = Message.objects.select_related("author").filter(room=room, seq=seq).first()
    if quoted is None or quoted.is_deleted:
        raise MessageNotFound("the message you reply to does not exist", room=room.slug, reply_to=seq)
    return quoted


def _body_moderated(body: str, *, room: Room, **context: Any) -> tuple[str, bool]:
    """The body to store and whether the filter changed it; refused (``blocked``) for a *hide* word."""
    word_filter = moderation.word_filter()
    if not word_filter.active:
        return body, False
    if word_filter.blocks(body):
        raise Blocked("the message contains a word that is not allowed here", room=room.slug, **context)
    masked = word_filter.masked(body)
    return masked, masked != body


def _seqs_take(counts: dict[int, int]) -> dict[int, int]:
    """Take ``counts[room_pk]`` seqs of each room in one statement: each room's new last seq (none if deleted).

    Inside the caller's transaction; the room rows stay locked (PostgreSQL) until it ends.
    """
    table = connection.ops.quote_name(Room._meta.db_table)
    column = connection.ops.quote_name(Room._meta.get_field("last_seq").column)
    pk = connection.ops.quote_name(Room._meta.pk.column)
    rooms = sorted(counts)
    cases = " ".join("WHEN %s THEN CAST(%s AS INTEGER)" for _ in rooms)
    params: list[int] = [v for room in rooms for v in (room, counts[room])]
    placeholders = ", ".join(["%s"] * len(rooms))
    with connection.cursor() as cursor:
        if len(rooms) > 1 and connection.features.has_select_for_update:
            # Lock the rows in key order first: two batches over the same rooms in two
            # processes then wait for each other instead of deadlocking (an UPDATE locks
            # rows in whatever order its plan visits them). SQLite locks the whole file.
            # NO KEY UPDATE, as the UPDATE itself takes: inserts that reference a room still go on.
            lock = "FOR NO KEY UPDATE" if connection.vendor == "postgresql" else "FOR UPDATE"
            cursor.execute(f"SELECT {pk} FROM {table} WHERE {pk} IN ({placeholders}) ORDER BY {pk} {lock}", rooms)
        cursor.execute(
            f"UPDATE {table} SET {column} = {column} + CASE {pk} {cases} END "
            f"WHERE {pk} IN ({placeholders}) RETURNING {pk}, {column}",
            [*params, *rooms],
        )
        return dict(cursor.fetchall())


def _message_in_room(room: Room, message_id: int) -> Message:
    message = Message.objects.select_related("room", "author").filter(pk=message_id, room=room).first()
    if message is None or message.is_deleted:
        raise MessageNotFound("no such message", id=message_id, room=room.slug)
    return message


def message_edit(*, room: Room, user: AbstractBaseUser, message_id: int, body: str) -> Message:
    """Change the text of one's own message and broadcast ``message.updated``.

    The banned-words filter applies as to a new message: masked, or refused (``blocked``)
    with the message unchanged.
    """
    with transaction.atomic():
        _postable_membership(room, user)
        message = _message_in_room(room, message_id)
        if message.author_id != user.pk:
            raise Forbidden("you can only edit your own messages", id=message_id)
        _message_rewrite(message, body, id=message_id)
    return message


def _message_rewrite(message: Message, body: str, *, skip_unchanged: bool = False, **context: Any) -> bool:
    """Store a new (filtered) body and broadcast ``message.updated`` after commit.

    Returns whether it wrote; with ``skip_unchanged`` the same text writes and sends nothing.
    """
    body, moderated = _body_moderated(body, room=message.room, **context)
    if skip_unchanged and body == message.body:
        return False
    message.body = body
    message.html = markup.body_render(body)
    message.edited_at = timezone.now()
    fields = ["body", "html", "edited_at"]
    if moderated:
        message.moderated_at = message.edited_at
        fields.append("moderated_at")
    message.save(update_fields=fields)
    search_index.message_index(message=message)
    if not message.is_deleted:  # a tombstone's text is for staff only; clients never see it again
        broadcast.room_send_on_commit(message.room.slug, events.message_updated_event(message))
    return True


def message_delete(*, room: Room, user: AbstractBaseUser, message_id: int) -> Message:
    """Delete one's own message, or any message as a moderator; broadcast ``message.deleted``."""
    with transaction.atomic():
        access = selectors.room_access(room=room, user=user)
        message = _message_in_room(room, message_id)
        membership = access.membership
        is_moderator = membership is not None and membership.is_moderator and access.can_read
        if message.author_id != user.pk and not is_moderator:
            raise Forbidden("you can only delete your own messages", id=message_id)
        if message.author_id == user.pk and membership is not None:
            access.require("read")  # a banned author keeps their messages as they are
        return _message_tombstone(message)


def _message_tombstone(message: Message) -> Message:
    message.deleted_at = timezone.now()
    message.save(update_fields=["deleted_at"])
    search_index.message_unindex(message_id=message.pk)
    broadcast.room_send_on_commit(message.room.slug, events.message_deleted_event(message))
    return message


# --- Moderation (the admin calls these; staff rights are checked by the admin) ---------


def message_remove(*, message: Message) -> Message:
    """Delete a message as staff; everyone in the room sees it disappear."""
    with transaction.atomic():
        if message.is_deleted:
            return message
        return _message_tombstone(message)


def message_edit_by_staff(*, message: Message, body: str) -> Message:
    """Change any message's text as staff (the admin's change form); the room sees ``message.updated``.

    The stored row is re-read (the admin's form has already set ``body`` on its copy) and
    the banned-words filter re-applied: masked, or refused (``blocked``). An unchanged
    body changes nothing and sends nothing.
    """
    with transaction.atomic():
        stored = Message.objects.select_for_update(of=("self",)).select_related("room", "author").get(pk=message.pk)
        _message_rewrite(stored, body, skip_unchanged=True, id=stored.pk)
    message.body, message.edited_at, message.moderated_at = stored.body, stored.edited_at, stored.moderated_at
    return stored


def _membership_changed_on_commit(membership: Membership, *, banned_now: bool) -> None:
    """A new ban takes the member's sockets out of the room; then they hear their new standing."""
    if banned_now:
        broadcast.user_control_on_commit(
            membership.user_id, "room_remove", room=membership.room.slug, reason="banned"
        )
    broadcast.user_send_on_commit(membership.user_id, events.membership_event(membership))


def membership_update(
    *, membership: Membership, role: str, muted_until: datetime | None, banned: bool
) -> Membership:
    """Set a member's role, mute and ban; what changed takes effect live, after commit.

    Compared with the stored row: a new ban takes the user's sockets out of the room
    (``removed``) and refuses rejoining; any change reaches the user's own sockets as a
    ``membership`` event, which also makes each socket drop the membership it cached
    (chat.consumers), so a mute or a role applies to the next message. Nothing changed:
    nothing is sent.
    """
    if role not in Membership.Role.values:
        raise ValueError(f"unknown role {role!r}")
    with transaction.atomic():
        stored = Membership.objects.select_for_update(of=("self",)).select_related("room", "user").get(pk=membership.pk)
        new = {"role": role, "muted_until": muted_until, "banned": banned}
        changed = [field for field, value in new.items() if getattr(stored, field) != value]
        if changed:
            banned_now = banned and not stored.banned
            for field in changed:
                setattr(stored, field, new[field])
            stored.save(update_fields=changed)
            _membership_changed_on_commit(stored, banned_now=banned_now)
    membership.role, membership.muted_until, membership.banned = stored.role, stored.muted_until, stored.banned
    return stored


def membership_add(
    *, room: Room, user: AbstractBaseUser, role: str = Membership.Role.MEMBER,
    muted_until: datetime | None = None, banned: bool = False,
) -> Membership:
    """Make a user a member of a room (the admin's add form); a ban added so applies at once.

    The user may have a socket in the room already (a public room joined before the
    membership was deleted): a banned one is taken out, as by :func:`membership_update`.
    """
    if role not in Membership.Role.values:
        raise ValueError(f"unknown role {role!r}")
    with transaction.atomic():
        membership = Membership.objects.create(
            room=room, user=user, role=role, muted_until=muted_until, banned=banned
        )
        _membership_changed_on_commit(membership, banned_now=banned)
    return membership


def membership_delete(*, membership: Membership) -> None:
    """Delete a membership; the user's sockets leave the room (a public room may be joined again)."""
    with transaction.atomic():
        room_slug, user_id = membership.room.slug, membership.user_id
        membership.delete()
        broadcast.user_control_on_commit(user_id, "room_remove", room=room_slug, reason="kicked")


def member_mute(*, membership: Membership, until: datetime | None) -> Membership:
    """Mute a member until a time (None: unmute)."""
    return membership_update(
        membership=membership, role=membership.role, muted_until=until, banned=membership.banned
    )


def member_ban(*, membership: Membership) -> Membership:
    """Ban a member: their sockets leave the room at once and cannot rejoin."""
    return membership_update(
        membership=membership, role=membership.role, muted_until=membership.muted_until, banned=True
    )


def member_unban(*, membership: Membership) -> Membership:
    """Lift a ban; the member may join again."""
    return membership_update(
        membership=membership, role=membership.role, muted_until=membership.muted_until, banned=False
    )


def member_kick(*, room_slug: str, user_id: int) -> None:
    """Remove a user's sockets from a room now, without a ban (they may rejoin)."""
    broadcast.user_control(user_id, "room_remove", room=room_slug, reason="kicked")


# --- Server-initiated events (Celery tasks call these) -----------------------------


def _enqueue_on_commit(task: Any, *args: Any) -> None:
    """Queue a Celery task after commit; a broker outage is logged, never fails the write."""

    def send() -> None:
        try:
            task.delay(*args)
        except Exception:
            logger.exception("could not queue %s", task.name)

    transaction.on_commit(send)


def announcement_create(
    *, body: str, room: Room | None = None, send_at: datetime | None = None,
    created_by: AbstractBaseUser | None = None, key: str | None = None,
) -> Announcement:
    """Record an announcement and queue its delivery when it is due now.

    ``key`` makes creation idempotent (a redelivered schedule task creates it once).
    Announcements due later are queued by ``announcements_queue_due`` (Celery beat).
    """
    with transaction.atomic():
        if key is not None:
            existing = Announcement.objects.filter(key=key).first()
            if existing is not None:
                return existing
        announcement = Announcement.objects.create(
            body=body, room=room, send_at=send_at or timezone.now(), created_by=created_by, key=key
        )
        if announcement.send_at <= timezone.now():
            announcement_queue(announcement=announcement)
    return announcement


def announcement_queue(*, announcement: Announcement) -> None:
    """Queue delivery after commit and note when."""
    from chat import tasks

    Announcement.objects.filter(pk=announcement.pk).update(queued_at=timezone.now())
    _enqueue_on_commit(tasks.announcement_deliver, announcement.pk)


def announcements_queue_due(*, requeue_after: timedelta = timedelta(minutes=2)) -> int:
    """Queue every due, unsent announcement not queued recently; returns how many."""
    now = timezone.now()
    due = Announcement.objects.filter(sent_at__isnull=True, send_at__lte=now).filter(
        Q(queued_at__isnull=True) | Q(queued_at__lt=now - requeue_after)
    )
    count = 0
    with transaction.atomic():
        for announcement in due:
            announcement_queue(announcement=announcement)
            count += 1
    return count


def announcement_deliver(*, announcement_id: int) -> Announcement | None:
    """Push an announcement to its sockets once and record when and to how many.

    Idempotent: a delivered announcement is not pushed again, and a push repeated
    because the worker died before recording it carries the same ``event_id``, which
    every socket delivers only once.
    """
    announcement = Announcement.objects.select_related("room").filter(pk=announcement_id).first()
    if announcement is None or announcement.sent_at is not None:
        return announcement
    event = events.announcement_event(announcement)
    event_id = f"announcement:{announcement.pk}"
    if announcement.room is not None:
        sockets = push.push_room(announcement.room.slug, event, event_id=event_id)
    else:
        sockets = push.push_everyone(event, event_id=event_id)
    pause = settings.REALTIME["FAULT_PAUSE_AFTER_PUSH"]
    if pause:
        time.sleep(pause)  # fault injection for tests only (0 in every real deployment)
    Announcement.objects.filter(pk=announcement.pk, sent_at__isnull=True).update(
        sent_at=timezone.now(), sockets=sockets
    )
    announcement.refresh_from_db()
    return announcement


def banned_word_add(*, word: str, action: str = BannedWord.Action.MASK) -> BannedWord:
    """Ban a word; the next message on this process is filtered with it, on every other within the bound."""
    with transaction.atomic():
        banned_word = BannedWord(word=word.strip(), action=action)
        banned_word.full_clean()
        banned_word.save()
        _banned_words_changed()
    return banned_word


def banned_word_update(*, banned_word: BannedWord, word: str, action: str) -> BannedWord:
    """Change a banned word or its action (applies as :func:`banned_word_add` does)."""
    with transaction.atomic():
        banned_word.word, banned_word.action = word.strip(), action
        banned_word.full_clean()
        banned_word.save(update_fields=["word", "action"])
        _banned_words_changed()
    return banned_word


def banned_word_delete(*, banned_word: BannedWord) -> None:
    """Allow a word again (messages already masked stay masked)."""
    with transaction.atomic():
        banned_word.delete()
        _banned_words_changed()


def _banned_words_changed() -> None:
    """Bump the list's version (other processes recompile) and drop this process's filter on commit."""
    bump = BannedWordList.objects.filter(pk=1)
    if not bump.update(version=F("version") + 1):
        _, created = BannedWordList.objects.get_or_create(pk=1, defaults={"version": 1})
        if not created:  # another writer created it meanwhile: still count this change
            bump.update(version=F("version") + 1)
    transaction.on_commit(moderation.word_filter_invalidate)


def message_moderate(*, message_id: int) -> Message | None:
    """The hook for slow checks after a message is stored; today it re-applies the word list.

    The write path filters every message already; this catches a message posted on a
    process whose list was up to ``MODERATION_CACHE_SECONDS`` old, and is where checks
    too slow for the write path belong. Its outcome reaches browsers as an edit:
    ``message.updated`` (masked) or ``message.deleted`` (hidden). Idempotent: a second
    run changes nothing.
    """
    with transaction.atomic():
        message = Message.objects.select_related("room", "author").filter(pk=message_id).first()
        if message is None or message.is_deleted:
            return message
        word_filter = moderation.word_filter_load()
        if word_filter.blocks(message.body):
            message.moderated_at = timezone.now()
            message.save(update_fields=["moderated_at"])
            return _message_tombstone(message)
        masked = word_filter.masked(message.body)
        if masked != message.body:
            message.body = masked
            message.html = markup.body_render(masked)
            message.moderated_at = message.edited_at = timezone.now()
            message.save(update_fields=["body", "html", "moderated_at", "edited_at"])
            search_index.message_index(message=message)
            broadcast.room_send_on_commit(message.room.slug, events.message_updated_event(message))
    return message


def mentions_notify(*, message_id: int) -> list[str]:
    """Push a ``mention`` to every socket of each user the message mentions who can see the room
    and has not muted it.

    Returns the usernames notified. Idempotent at the sockets: each notification has an
    ``event_id`` of the message and user.
    """
    message = Message.objects.select_related("room", "author").filter(pk=message_id).first()
    if message is None or message.is_deleted:
        return []
    names = markup.mentions_find(message.body) - {message.author.get_username()}
    if not names:
        return []
    room = message.room
    users = get_user_model().objects.filter(username__in=names, is_active=True)
    memberships = {m.user_id: m for m in Membership.objects.filter(room=room, user__in=users)}
    notified = []
    for user in users:
        membership = memberships.get(user.pk)
        if not selectors.room_access(room=room, user=user, membership=membership).can_enter:
            continue
        if membership is not None and membership.notifications_muted:
            continue  # the user silenced this room
        push.push_user(user.pk, events.mention_event(message), event_id=f"mention:{message.pk}:{user.pk}")
        notified.append(user.get_username())
    return sorted(notified)


def message_postprocess_queue(*, message: Message) -> None:
    """After commit, queue the slow moderation hook (when words are banned) and mentions.

    Most messages need neither, and skipping the broker keeps the write path short.
    """
    from chat import tasks

    if moderation.word_filter().active:
        _enqueue_on_commit(tasks.message_moderate, message.pk)
    if "@" in message.body:
        _enqueue_on_commit(tasks.mentions_notify, message.pk)
