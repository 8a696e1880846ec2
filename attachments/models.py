"""Uploaded files. Writes go through attachments.services; reads through attachments.selectors."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

from chat.models import Message, Room


def _token() -> str:
    # 256 random bits: the file's URL is not guessable (access is still checked on every fetch).
    return secrets.token_urlsafe(32)


def _storage():
    from django.core.files.storage import storages

    return storages[settings.ATTACHMENTS_STORAGE]


class Attachment(models.Model):
    """A file uploaded to a room; ``message`` is set once a message carries it (null: pending).

    Stored under its random token, never under the uploader's file name; ``name`` is only
    shown and sent in Content-Disposition. ``content_type`` is sniffed from the bytes.
    """

    token = models.CharField(max_length=64, unique=True, default=_token, editable=False)
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="+")
    uploader = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.CASCADE, related_name="attachments"
    )
    name = models.CharField(max_length=255)
    size = models.PositiveBigIntegerField()
    content_type = models.CharField(max_length=100)
    file = models.FileField(storage=_storage, max_length=255)
    thumbnail = models.FileField(storage=_storage, max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["pk"]
        indexes = [models.Index(fields=["uploader", "created_at"], name="attachment_uploader_created")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_image(self) -> bool:
        """A raster image the browser may show inline (PNG, JPEG, GIF, WebP)."""
        return self.content_type in INLINE_TYPES


#: The only types ever served inline; everything else is a download.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
