"""Writes: the search index kept in step with the messages, inside the writer's transaction.

chat.services calls these where it stores, rewrites or tombstones a message, so the index
commits or rolls back with the message itself: a search never finds a message that does
not exist, nor misses one that does (``index_rebuild`` repairs an index made otherwise).
One statement per write, raw, as the write path's other hot queries are.
"""

from __future__ import annotations

from typing import Any

from django.db import connection, transaction

from chat.models import Message

#: The FTS5 table (SQLite): rowid = the message's id; made by search/migrations/0001.
FTS_TABLE = "search_message_fts"
#: The PostgreSQL text-search configuration (stemming and stop words): FTS5 stems with porter too.
PG_CONFIG = "english"
PG_TABLE = "search_messagevector"


def is_postgres() -> bool:
    """Whether the default database is PostgreSQL (else SQLite with FTS5)."""
    return connection.vendor == "postgresql"


def message_index(*, message: Message) -> None:
    """Index the message's current body, replacing what was indexed for it; a deleted one is unindexed.

    Always an upsert, so an index that drifted (a restored database) cannot fail a post.
    """
    if message.is_deleted:
        message_unindex(message_id=message.pk)
        return
    with connection.cursor() as cursor:
        if is_postgres():
            cursor.execute(
                f"INSERT INTO {PG_TABLE} (message_id, vector) VALUES (%s, to_tsvector(%s::regconfig, %s)) "
                "ON CONFLICT (message_id) DO UPDATE SET vector = EXCLUDED.vector",
                [message.pk, PG_CONFIG, message.body],
            )
        else:
            cursor.execute(
                f"INSERT OR REPLACE INTO {FTS_TABLE} (rowid, body) VALUES (%s, %s)", [message.pk, message.body]
            )


def messages_index(*, messages: list[Message]) -> None:
    """Index new messages stored together (a batch of posts): one statement for all of them."""
    rows = [(m.pk, m.body) for m in messages if not m.is_deleted]
    if not rows:
        return
    with connection.cursor() as cursor:
        if is_postgres():
            cursor.executemany(
                f"INSERT INTO {PG_TABLE} (message_id, vector) VALUES (%s, to_tsvector('{PG_CONFIG}'::regconfig, %s)) "
                "ON CONFLICT (message_id) DO UPDATE SET vector = EXCLUDED.vector",
                rows,
            )
        else:
            cursor.executemany(f"INSERT OR REPLACE INTO {FTS_TABLE} (rowid, body) VALUES (%s, %s)", rows)


def message_unindex(*, message_id: int) -> None:
    """Take a message out of the index (deleted, hidden by moderation): search never finds it again."""
    with connection.cursor() as cursor:
        if is_postgres():
            cursor.execute(f"DELETE FROM {PG_TABLE} WHERE message_id = %s", [message_id])
        else:
            cursor.execute(f"DELETE FROM {FTS_TABLE} WHERE rowid = %s", [message_id])


def index_rebuild() -> int:
    """Index every message that is not deleted, from scratch; returns how many.

    For an index that was lost, made before this app, or written around the services
    (a bulk load); it runs in one transaction, so searches see the old index until it commits.
    """
    table = connection.ops.quote_name(Message._meta.db_table)
    with transaction.atomic(), connection.cursor() as cursor:
        if is_postgres():
            cursor.execute(f"TRUNCATE {PG_TABLE}")
            cursor.execute(
                f"INSERT INTO {PG_TABLE} (message_id, vector) SELECT id, to_tsvector(%s::regconfig, body) "
                f"FROM {table} WHERE deleted_at IS NULL",
                [PG_CONFIG],
            )
        else:
            cursor.execute(f"DELETE FROM {FTS_TABLE}")
            cursor.execute(
                f"INSERT INTO {FTS_TABLE} (rowid, body) SELECT id, body FROM {table} WHERE deleted_at IS NULL"
            )
        count = cursor.rowcount
        if not is_postgres():
            # Merge the index's segments into one: fewer b-trees for every query to visit.
            cursor.execute(f"INSERT INTO {FTS_TABLE} ({FTS_TABLE}) VALUES ('optimize')")
    return count


def index_prune_on_migrate(*, using: str = "default", **kwargs: Any) -> None:
    """After ``flush`` (post_migrate): an FTS5 index of messages that are all gone is emptied.

    Only that case, so it costs one query on a normal ``migrate``; any other drift is
    ``manage.py search_rebuild``'s.
    """
    from django.db import connections

    db = connections[using]
    if db.vendor != "sqlite" or FTS_TABLE not in db.introspection.table_names():
        return
    if not Message.objects.using(using).exists():
        with db.cursor() as cursor:
            cursor.execute(f"DELETE FROM {FTS_TABLE}")
