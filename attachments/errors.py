"""Why an upload or an attachment was refused: chat's domain errors, so the chat's error map and views apply."""

from __future__ import annotations

from chat.errors import ChatError


class AttachmentInvalid(ChatError):
    """A message names an attachment that is not the sender's own pending upload to this room, or too many."""

    code = "invalid_attachment"


class UploadTooLarge(ChatError):
    """The upload is over ``UPLOAD_MAX_BYTES``."""

    code = "upload_too_large"


class UploadRejected(ChatError):
    """The upload is empty, has no file, or is an image Pillow refuses (corrupt, too many pixels)."""

    code = "upload_rejected"
