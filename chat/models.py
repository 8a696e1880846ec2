"""Rooms, memberships and messages. Writes go through chat.services; reads through chat.selectors."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

slug_validator = RegexValidator(r"\A[a-z0-9-]{1,64}\Z", "1-64 characters of a-z, 0-9 and -.")


class Room(models.Model):
    """A place to chat. ``last_seq`` is the seq of its newest message (0: none yet)."""

    slug = models.CharField(max_length=64, unique=True, validators=[slug_validator])
    title = models.CharField(max_length=200)
    is_public = models.BooleanField(default=True, help_text="Anyone logged in may join a public room.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_seq = models.BigIntegerField(default=0, editable=False)
    #: A direct message's people: their sorted user ids, comma-separated (null: not a DM).
    #: Unique, so two people opening the same conversation at once get one room.
    dm_key = models.CharField(max_length=200, unique=True, null=True, blank=True, editable=False)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def is_dm(self) -> bool:
        """A direct message: a private room of a fixed set of people (chat.services.dm_open)."""
        return self.dm_key is not None


class Membership(models.Model):
    """A user's place in a room: role, mute and ban, and whether they silenced its notifications."""

    class Role(models.TextChoices):
        MEMBER = "member", "Member"
        MODERATOR = "moderator", "Moderator"
        OWNER = "owner", "Owner"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    muted_until = models.DateTimeField(null=True, blank=True)
    banned = models.BooleanField(default=False)
    joined_at = models.DateTimeField(default=timezone.now)
    #: The member's own choice: no notifications from this room, its unread badge dimmed.
    #: Not ``muted_until``, which is staff silencing the member.
    notifications_muted = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "room"], name="membership_unique_user_room")]
        ordering = ["room", "user"]

    def __str__(self) -> str:
        return f"{self.user} in {self.room}"

    def is_muted(self, now=None) -> bool:
        """Whether the member may not post right now."""
        return self.muted_until is not None and self.muted_until > (now or timezone.now())

    @property
    def is_moderator(self) -> bool:
        """Moderates the room: a moderator or its owner (who has every moderator right)."""
        return self.role in (self.Role.MODERATOR, self.Role.OWNER)


class Message(models.Model):
    """One message. ``seq`` numbers a room's messages 1, 2, 3 … without gaps or repeats."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="messages")
    body = models.TextField()
    #: ``body`` rendered by chat.markup.body_render when it was written: the sanitised HTML pages insert.
    html = models.TextField(blank=True, default="")
    #: The earlier message of the same room this one quotes (chat.services validates the room).
    reply_to = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    seq = models.BigIntegerField()
    client_id = models.CharField(max_length=64, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    edited_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    #: When the moderation filter last changed the message (masked or hid it).
    moderated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="message_unique_room_seq"),
            models.UniqueConstraint(
                fields=["room", "author", "client_id"],
                condition=models.Q(client_id__isnull=False),
                name="message_unique_client_id",
            ),
        ]
        ordering = ["room", "seq"]

    def __str__(self) -> str:
        return f"{self.room.slug}#{self.seq}"

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None


class Announcement(models.Model):
    """A notice from staff to everyone or to one room, now or at a time; delivered by Celery."""

    body = models.TextField(max_length=2000)
    room = models.ForeignKey(
        Room, null=True, blank=True, on_delete=models.CASCADE, related_name="announcements",
        help_text="Leave empty to announce to everyone connected.",
    )
    send_at = models.DateTimeField(default=timezone.now, help_text="When to send it (now by default).")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    #: Set by code that creates announcements automatically (schedules), so a re-run creates none twice.
    key = models.CharField(max_length=200, unique=True, null=True, blank=True, editable=False)
    queued_at = models.DateTimeField(null=True, blank=True, editable=False)
    sent_at = models.DateTimeField(null=True, blank=True, editable=False)
    sockets = models.PositiveIntegerField(null=True, blank=True, editable=False, help_text="Sockets it went out to.")

    class Meta:
        ordering = ["-send_at"]

    def __str__(self) -> str:
        return (self.body[:60] + "…") if len(self.body) > 60 else self.body

    @property
    def status(self) -> str:
        if self.sent_at is not None:
            return "sent"
        if self.send_at > timezone.now():
            return "scheduled"
        return "sending"


class BannedWord(models.Model):
    """A word the moderation filter masks or hides, before a message is stored or sent.

    Written through chat.services (``banned_word_save``, ``banned_word_delete``), which
    bump :class:`BannedWordList` so every process recompiles its filter (chat/moderation.py).
    """

    class Action(models.TextChoices):
        MASK = "mask", "Mask the word with ***"
        HIDE = "hide", "Hide the whole message"

    word = models.CharField(max_length=100, unique=True)
    action = models.CharField(max_length=8, choices=Action.choices, default=Action.MASK)

    class Meta:
        ordering = ["word"]

    def __str__(self) -> str:
        return self.word


class BannedWordList(models.Model):
    """The banned-word list's version: one row, bumped by every change to the words.

    Each process compares it with the version its compiled filter was built from, at
    most every ``MODERATION_CACHE_SECONDS``: one primary-key read instead of the list.
    """

    version = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"banned words v{self.version}"


class Avatar(models.Model):
    """A user's profile picture: a small square PNG, re-encoded by chat.avatars (no metadata kept)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE,
                                related_name="avatar")
    png = models.BinaryField()
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"avatar of {self.user_id}"

    @property
    def url(self) -> str:
        """Where pages load it; the version in the query lets browsers cache it for long."""
        return f"/api/avatars/{self.user_id}/?v={int(self.updated_at.timestamp())}"
