from django.apps import AppConfig


class ReceiptsConfig(AppConfig):
    """Read receipts and unread counts: a feature built only through realtime.features."""

    name = "receipts"
