"""Reads: the attachment a user may fetch now."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser

from attachments.models import Attachment
from chat.selectors import room_access


def attachment_readable(*, token: str, user: AbstractBaseUser) -> Attachment | None:
    """The attachment with this token if ``user`` may see it now; None otherwise (the view's 404).

    Readers of the room only (``room_access``: members, not banned, active), and of a
    message not deleted; a pending upload only by its uploader.
    """
    attachment = Attachment.objects.select_related("room", "message").filter(token=token).first()
    if attachment is None or not user.is_authenticated:
        return None
    if attachment.message is None:
        if attachment.uploader_id != user.pk:
            return None
    elif attachment.message.is_deleted:
        return None
    if not room_access(room=attachment.room, user=user).can_read:
        return None
    return attachment
