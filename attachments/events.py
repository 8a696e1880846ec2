"""Every shape the attachments feature sends, built in one place: an attachment's metadata and its removal."""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from attachments.models import Attachment


def attachment_event(attachment: Attachment) -> dict[str, Any]:
    """An attachment as messages, history and the upload's reply carry it (``thumbnail_url``: images only)."""
    item: dict[str, Any] = {
        "id": attachment.pk,
        "name": attachment.name,
        "size": attachment.size,
        "content_type": attachment.content_type,
        "url": reverse("attachments:file", kwargs={"token": attachment.token}),
    }
    if attachment.thumbnail:
        item["thumbnail_url"] = reverse("attachments:thumbnail", kwargs={"token": attachment.token})
    return item


def attachments_of(message: Any) -> list[dict[str, Any]]:
    """The attachments of a message (prefetched by history's selectors, else one query)."""
    return [attachment_event(a) for a in message.attachments.all()]


def attachment_removed_event(attachment: Attachment, *, room: str, seq: int) -> dict[str, Any]:
    """``attachment.removed``: staff removed a file; clients drop it from the message."""
    return {"type": "attachment.removed", "room": room, "seq": seq, "message_id": attachment.message_id,
            "id": attachment.pk}
