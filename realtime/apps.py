from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    """The real-time core: connects the account signals that end open sockets."""

    name = "realtime"
    verbose_name = "Real-time"

    def ready(self) -> None:
        from realtime import signals  # noqa: F401  (connects receivers)
