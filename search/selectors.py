"""Reads: full-text search of the messages a user may read now, newest first.

The rooms come from chat.selectors.rooms_readable (the queryset form of room_access's
``can_read``), applied inside the one query, so a hit from a room the user left, was
removed or banned from, or never belonged to cannot be returned, however the index is.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.postgres.search import SearchHeadline, SearchQuery
from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import F, Value
from django.db.models.functions import Replace

from chat.models import Message, Room
from chat.selectors import rooms_readable
from search.models import MessageVector
from search.query import MARK_END, MARK_START, Query, highlight_html
from search.services import FTS_TABLE, PG_CONFIG, is_postgres

#: Words of context FTS5's snippet keeps around the matches of a long message.
SNIPPET_TOKENS = 32


@dataclass(frozen=True, slots=True)
class Hit:
    """One message found, and its matching text as safe HTML (``<mark>`` around matches)."""

    message: Message
    highlight: str


@dataclass(frozen=True, slots=True)
class SearchPage:
    """A page of hits, newest first; ``next_before`` continues after it (None: no more)."""

    hits: list[Hit]
    next_before: int | None


def message_search(
    *, user: AbstractBaseUser, query: Query, room: Room | None = None, before: int | None = None, limit: int = 20
) -> SearchPage:
    """The messages matching ``query`` in the rooms ``user`` may read (or in ``room``), newest first.

    ``before`` is a message id (the previous page's ``next_before``): ids grow with time,
    so it is a stable cursor while new messages arrive. Deleted messages are never found.
    """
    readable = rooms_readable(user=user)
    if room is not None:
        readable = readable.filter(pk=room.pk)
    search = _search_postgres if is_postgres() else _search_sqlite
    found = search(query, readable.order_by().values("pk"), before, limit + 1)
    # No ordering: the page keeps the index's order (the default, room then seq, would sort a join).
    messages = Message.objects.select_related("room", "author").order_by().in_bulk([pk for pk, _ in found[:limit]])
    hits = [Hit(messages[pk], highlight_html(marked)) for pk, marked in found[:limit] if pk in messages]
    return SearchPage(hits, found[limit - 1][0] if len(found) > limit else None)


def _search_sqlite(query: Query, rooms, before: int | None, limit: int) -> list[tuple[int, str]]:
    # CROSS JOIN keeps the FTS5 table the outer loop: it yields matches newest first
    # (rowid = message id, descending), each checked against the message's room and
    # tombstone, and the LIMIT stops the walk as soon as a page is full.
    try:
        rooms_sql, rooms_params = rooms.query.sql_with_params()
    except EmptyResultSet:  # no room at all (an inactive user): nothing to search
        return []
    message = connection.ops.quote_name(Message._meta.db_table)
    sql = (
        f"SELECT {FTS_TABLE}.rowid, snippet({FTS_TABLE}, 0, %s, %s, '…', %s) "
        f"FROM {FTS_TABLE} CROSS JOIN {message} AS m ON m.id = {FTS_TABLE}.rowid "
        f"WHERE {FTS_TABLE} MATCH %s AND m.deleted_at IS NULL AND m.room_id IN ({rooms_sql})"
    )
    params: list = [MARK_START, MARK_END, SNIPPET_TOKENS, query.fts5(), *rooms_params]
    if before is not None:
        sql += f" AND {FTS_TABLE}.rowid < %s"
        params.append(before)
    sql += f" ORDER BY {FTS_TABLE}.rowid DESC LIMIT %s"
    params.append(limit)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _tsquery(query: Query) -> SearchQuery:
    """The terms as one PostgreSQL query, all of them required (as FTS5's implicit AND)."""
    parts = [
        SearchQuery(term.tsquery_prefix(), search_type="raw", config=PG_CONFIG) if term.prefix
        else SearchQuery(term.text, search_type="phrase", config=PG_CONFIG)
        for term in query.terms
    ]
    return functools.reduce(operator.and_, parts)


#: ts_headline's parser drops what looks like an HTML tag; these stand in for < and >
#: while it runs (private-use characters, put back before the HTML is escaped).
_LT, _GT = "\ue0f0", "\ue0f1"
_TAGS_BACK = str.maketrans({_LT: "<", _GT: ">"})


def _search_postgres(query: Query, rooms, before: int | None, limit: int) -> list[tuple[int, str]]:
    tsquery = _tsquery(query)
    found = MessageVector.objects.filter(
        vector=tsquery, message__deleted_at__isnull=True, message__room_id__in=rooms
    )
    if before is not None:
        found = found.filter(message_id__lt=before)
    body = Replace(Replace(F("message__body"), Value("<"), Value(_LT)), Value(">"), Value(_GT))
    found = found.annotate(
        marked=SearchHeadline(
            body, tsquery, config=PG_CONFIG, start_sel=MARK_START, stop_sel=MARK_END,
            max_words=SNIPPET_TOKENS, min_words=SNIPPET_TOKENS // 2,
        )
    )
    rows = found.order_by("-message_id").values_list("message_id", "marked")[:limit]
    return [(pk, marked.translate(_TAGS_BACK)) for pk, marked in rows]
