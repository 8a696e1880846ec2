from django.apps import AppConfig


class ReactionsConfig(AppConfig):
    """Emoji reactions on messages: a feature built only through realtime.features."""

    name = "reactions"
