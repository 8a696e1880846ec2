from django.apps import AppConfig


class AttachmentsConfig(AppConfig):
    """Files and pictures shared in rooms: uploads, thumbnails, serving to readers of the room only."""

    name = "attachments"
