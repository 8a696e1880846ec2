"""Reaction counts for the messages a socket is about to show."""

from __future__ import annotations

import functools

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection

from chat.models import Message, Room
from reactions.models import Reaction


@functools.cache
def _recent_sql() -> str:
    # Run on every join (the reactions snapshot): built once, not by the ORM per call.
    q = connection.ops.quote_name
    reaction, message = Reaction._meta, Message._meta
    r_message, r_user = reaction.get_field("message").column, reaction.get_field("user").column
    m_id = q(message.pk.column)
    return (f"SELECT m.{m_id}, m.{q('seq')}, r.{q('emoji')}, COUNT(*), "
            f"SUM(CASE WHEN r.{q(r_user)} = %s THEN 1 ELSE 0 END) "
            f"FROM {q(reaction.db_table)} r JOIN {q(message.db_table)} m ON m.{m_id} = r.{q(r_message)} "
            f"WHERE m.{q(message.get_field('room').column)} = %s AND m.{q('seq')} > %s "
            f"AND m.{q('deleted_at')} IS NULL "
            f"GROUP BY m.{m_id}, m.{q('seq')}, r.{q('emoji')} ORDER BY m.{q('seq')}, r.{q('emoji')}")


def reactions_recent(*, room: Room, since_seq: int, user: AbstractBaseUser) -> list[dict]:
    """Counts per (message, emoji) for messages with seq > since_seq, with whether ``user`` reacted."""
    with connection.cursor() as cursor:
        cursor.execute(_recent_sql(), [user.pk, room.pk, since_seq])
        rows = cursor.fetchall()
    return [{"id": mid, "seq": seq, "emoji": emoji, "count": count, "mine": mine > 0}
            for mid, seq, emoji, count, mine in rows]
