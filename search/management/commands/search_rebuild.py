"""manage.py search_rebuild: index every message again, from scratch (SQLite FTS5 or PostgreSQL)."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand

from search import services


class Command(BaseCommand):
    help = "Rebuild the full-text search index from the stored messages (deleted ones are left out)."

    def handle(self, *args, **options) -> None:
        started = time.monotonic()
        count = services.index_rebuild()
        self.stdout.write(f"indexed {count} messages in {time.monotonic() - started:.1f} s")
