"""Read positions and unread counts."""

from __future__ import annotations

import functools

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection

from chat.models import Room
from chat.selectors import rooms_visible
from receipts.models import ReadPosition


def unread_by_room(*, user: AbstractBaseUser) -> dict[str, dict[str, int]]:
    """For every room the user can see: its latest seq, how far they read, and the difference."""
    read = dict(ReadPosition.objects.filter(user=user).values_list("room__slug", "seq"))
    return {
        room.slug: {"last_seq": room.last_seq, "read_seq": read.get(room.slug, 0),
                    "unread": max(0, room.last_seq - read.get(room.slug, 0))}
        for room in rooms_visible(user=user)
    }


# Both run on every join (the receipts snapshot), so their SQL is built once, not by the
# ORM per call (the ORM's query building cost more than the queries; docs/performance.md).


@functools.cache
def _positions_sql() -> str:
    q = connection.ops.quote_name
    position, user = ReadPosition._meta, get_user_model()._meta
    username = user.get_field(get_user_model().USERNAME_FIELD).column
    return (f"SELECT u.{q(username)}, p.{q('seq')} FROM {q(position.db_table)} p "
            f"JOIN {q(user.db_table)} u ON u.{q(user.pk.column)} = p.{q(position.get_field('user').column)} "
            f"WHERE p.{q(position.get_field('room').column)} = %s AND p.{q('seq')} > 0 "
            f"ORDER BY p.{q('updated_at')} DESC LIMIT %s")


@functools.cache
def _read_seq_sql() -> str:
    q = connection.ops.quote_name
    meta = ReadPosition._meta
    return (f"SELECT {q('seq')} FROM {q(meta.db_table)} WHERE {q(meta.get_field('room').column)} = %s "
            f"AND {q(meta.get_field('user').column)} = %s")


def read_positions(*, room: Room, limit: int = 200) -> list[dict[str, object]]:
    """The most recently updated read positions in a room (for "seen by")."""
    with connection.cursor() as cursor:
        cursor.execute(_positions_sql(), [room.pk, limit])
        return [{"user": username, "seq": seq} for username, seq in cursor.fetchall()]


def read_seq(*, room: Room, user: AbstractBaseUser) -> int:
    """How far ``user`` has read in ``room`` (0: nothing)."""
    with connection.cursor() as cursor:
        cursor.execute(_read_seq_sql(), [room.pk, user.pk])
        row = cursor.fetchone()
    return row[0] if row else 0
