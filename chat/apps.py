from django.apps import AppConfig


class ChatConfig(AppConfig):
    """The chat app: rooms, messages, moderation."""

    name = "chat"

