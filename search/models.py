"""The PostgreSQL index: one search vector per message, with a GIN index.

On SQLite the index is the FTS5 table ``search_message_fts`` instead (made by the
migration, no model): this table exists on PostgreSQL only.
"""

from __future__ import annotations

from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models

from chat.models import Message


class MessageVector(models.Model):
    """A message's words as a ``tsvector``, written by search.services with the message."""

    # DO_NOTHING and no ORM constraint: deleting messages must not query this table on
    # SQLite, where it does not exist. On PostgreSQL the migration adds the foreign key
    # itself, ON DELETE CASCADE, so the database drops a deleted message's vector.
    message = models.OneToOneField(
        Message, on_delete=models.DO_NOTHING, primary_key=True, related_name="+", db_constraint=False
    )
    vector = SearchVectorField()

    class Meta:
        indexes = [GinIndex(fields=["vector"], name="search_vector_gin")]

    def __str__(self) -> str:
        return f"vector of message {self.message_id}"
