from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SearchConfig(AppConfig):
    """Full-text search over messages: SQLite FTS5 or PostgreSQL's text search, one API."""

    name = "search"

    def ready(self) -> None:
        from search import services

        # ``flush`` (and every transactional test) empties the models' tables but not the
        # FTS5 table, which no model owns; it then emits post_migrate, so prune there.
        post_migrate.connect(services.index_prune_on_migrate, sender=self)
