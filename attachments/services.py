"""Writes: storing an upload, attaching uploads to a message, removing files, sweeping abandoned uploads.

Files are written through Django's storage API (``settings.ATTACHMENTS_STORAGE``: local
files under var/media by default, any S3-compatible store through django-storages), under
the attachment's random token. Removal deletes the bytes after the row's transaction
commits, so a rolled-back removal never loses a file still listed.
"""

from __future__ import annotations

import logging
import os
import unicodedata
from collections.abc import Sequence
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from attachments import events, images
from attachments.errors import AttachmentInvalid, UploadRejected, UploadTooLarge
from attachments.models import Attachment
from chat import selectors as chat_selectors
from chat.errors import RoomNotFound
from chat.models import Message, Room
from realtime import broadcast

logger = logging.getLogger(__name__)

#: At most this many attachments on one message.
MAX_PER_MESSAGE = 10


def _display_name(name: str) -> str:
    """The uploader's file name, reduced to something safe to show and to send in a header."""
    name = os.path.basename((name or "").replace("\\", "/"))
    name = "".join(ch for ch in unicodedata.normalize("NFC", name) if unicodedata.category(ch)[0] != "C")
    name = name.strip().strip(".") or "file"
    stem, ext = os.path.splitext(name)
    return (stem[: 200 - len(ext[:20])] + ext[:20]) if len(name) > 200 else name


def upload_store(*, room_slug: str, user: AbstractBaseUser, file: UploadedFile) -> Attachment:
    """Store an upload to a room the user may read, pending until a message carries it.

    Refused: no such room or not readable (``RoomNotFound``/``Forbidden``/``Banned``), over
    ``UPLOAD_MAX_BYTES`` (``UploadTooLarge``), empty or a picture Pillow cannot decode
    (``UploadRejected``). A picture is stored re-encoded, upright and without metadata,
    with a thumbnail; anything else is stored as sent, typed by its bytes.
    """
    room = chat_selectors.room_by_slug(slug=room_slug)
    if room is None:
        raise RoomNotFound("no such room", room=room_slug)
    chat_selectors.room_access(room=room, user=user).require("read")
    if file.size > settings.UPLOAD_MAX_BYTES:
        raise UploadTooLarge(f"files are limited to {settings.UPLOAD_MAX_BYTES} bytes", limit=settings.UPLOAD_MAX_BYTES)
    if not file.size:
        raise UploadRejected("the file is empty")
    content_type = images.sniff(file)
    attachment = Attachment(room=room, uploader=user, name=_display_name(file.name), content_type=content_type)
    prefix = f"attachments/{attachment.token[:2]}/{attachment.token}"
    if content_type in images.INLINE_TYPES:
        try:
            pictures = images.renditions(file, content_type=content_type)
        except images.NotAPicture:
            raise UploadRejected("the picture could not be read", name=attachment.name) from None
        attachment.size = len(pictures.image)
        attachment.file.save(prefix, ContentFile(pictures.image), save=False)
        attachment.thumbnail.save(f"{prefix}-thumb", ContentFile(pictures.thumbnail), save=False)
    else:
        file.seek(0)
        attachment.size = file.size
        attachment.file.save(prefix, file, save=False)
    try:
        attachment.save()
    except Exception:
        _files_delete([attachment.file.name, attachment.thumbnail.name])
        raise
    return attachment


def attachments_claim(
    *, room: Room, author: AbstractBaseUser, ids: Sequence[int], message: Message
) -> list[Attachment]:
    """Attach the author's pending uploads to the room to ``message`` (in the caller's transaction).

    Every id must be the author's own upload to this room, not attached yet, and no more
    than ``MAX_PER_MESSAGE``; otherwise ``AttachmentInvalid`` and the caller's transaction
    (the message with it) rolls back. Returns them in the order given.
    """
    wanted = list(dict.fromkeys(ids))
    if len(wanted) > MAX_PER_MESSAGE:
        raise AttachmentInvalid(f"at most {MAX_PER_MESSAGE} attachments per message", room=room.slug)
    if not wanted:
        return []
    found = {
        a.pk: a
        for a in Attachment.objects.select_for_update().filter(
            pk__in=wanted, room=room, uploader=author, message__isnull=True
        )
    }
    missing = [pk for pk in wanted if pk not in found]
    if missing:
        raise AttachmentInvalid(
            "attachments must be your own uploads to this room, not yet sent", room=room.slug, ids=missing
        )
    Attachment.objects.filter(pk__in=wanted).update(message=message)
    for attachment in found.values():
        attachment.message = message
    return [found[pk] for pk in wanted]


def attachment_remove(*, attachment: Attachment) -> None:
    """Remove a file (staff, from the admin): the row now, the bytes after commit; the room is told."""
    with transaction.atomic():
        message = (
            Message.objects.select_related("room").filter(pk=attachment.message_id).first()
            if attachment.message_id else None
        )
        names = [attachment.file.name, attachment.thumbnail.name]
        if message is not None and not message.is_deleted:
            broadcast.room_send_on_commit(
                message.room.slug, events.attachment_removed_event(attachment, room=message.room.slug, seq=message.seq)
            )
        attachment.delete()
        transaction.on_commit(lambda: _files_delete(names))


def attachments_sweep(*, older_than: timedelta = timedelta(days=1)) -> int:
    """Remove uploads no message took within ``older_than``; returns how many (run by Celery beat)."""
    cutoff = timezone.now() - older_than
    count = 0
    for attachment in Attachment.objects.filter(message__isnull=True, created_at__lt=cutoff).iterator():
        attachment_remove(attachment=attachment)
        count += 1
    return count


def _files_delete(names: Sequence[str]) -> None:
    """Delete stored bytes; a failure is logged (an orphan file costs space, never a leak: its URL needs the row)."""
    storage = Attachment._meta.get_field("file").storage
    for name in names:
        if not name:
            continue
        try:
            storage.delete(name)
        except Exception:
            logger.warning("could not delete the stored file %s", name, exc_info=True)
