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

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Membership(models.Model):
    """A user's place in a room: role, mute and ban."""

    class Role(models.TextChoices):
        MEMBER = "member", "Member"
        MODERATOR = "moderator", "Moderator"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    muted_until = models.DateTimeField(null=True, blank=True)
    banned = models.BooleanField(default=False)
    joined_at = models.DateTimeField(default=timezone.now)

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
        return self.role == self.Role.MODERATOR


class Message(models.Model):
    """One message. ``seq`` numbers a room's messages 1, 2, 3 … without gaps or repeats."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="messages")
    body = models.TextField()
    seq = models.BigIntegerField()
    client_id = models.CharField(max_length=64, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    edited_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

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
