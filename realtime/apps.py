from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    """The real-time core: connects the account signals and discovers apps' realtime_features."""

    name = "realtime"
    verbose_name = "Real-time"

    def ready(self) -> None:
        from realtime import features, signals  # noqa: F401  (signals connects receivers)

        features.autodiscover()
