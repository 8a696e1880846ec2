"""One row by a unique key, without the ORM's query building: the lookups every handshake,
join and message makes.

Building ``.filter(...).first()`` or ``.get(...)`` cost more than running the query, and
``.first()`` orders by the model's ordering, which can join more tables (for the chat's
Membership, two; docs/performance.md has the figures). A raw queryset still resolves its
columns against the model on every call. :func:`one` builds its query, its column list and
the database's value converters once per model and key, then runs the query and reads the
row into the model as the ORM does (``Model.from_db``, the converters applied).
"""

from __future__ import annotations

import functools
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection
from django.db.models import Model
from django.db.models.sql import Query


@functools.cache
def _plan(model: type[Model], fields: tuple[str, ...], only: tuple[str, ...] | None,
          ) -> tuple[str, list[str], list[tuple[int, Any]]]:
    meta = model._meta
    q = connection.ops.quote_name
    concrete = list(meta.concrete_fields)
    if only is not None:
        wanted = {meta.get_field(name).attname for name in only} | {meta.pk.attname}
        concrete = [f for f in concrete if f.attname in wanted]
    columns = ", ".join(q(f.column) for f in concrete)
    where = " AND ".join(f"{q(meta.get_field(name).column)} = %s" for name in fields)
    sql = f"SELECT {columns} FROM {q(meta.db_table)} WHERE {where}"
    compiler = connection.ops.compiler("SQLCompiler")(Query(model), connection, DEFAULT_DB_ALIAS)
    converters = compiler.get_converters([f.get_col(meta.db_table) for f in concrete])
    return sql, [f.attname for f in concrete], sorted(converters.items())


def one(model: type[Model], fields: tuple[str, ...], params: list[Any], *, only: tuple[str, ...] | None = None) -> Any:
    """The ``model`` row whose ``fields`` equal ``params`` (a unique key), or None.

    ``only``: read just these fields (and the primary key); the others are deferred, as
    with ``QuerySet.only``.
    """
    sql, names, converters = _plan(model, fields, only)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    if converters:
        row = list(row)
        for pos, (functions, expression) in converters:
            value = row[pos]
            for convert in functions:
                value = convert(value, expression, connection)
            row[pos] = value
    return model.from_db(DEFAULT_DB_ALIAS, names, row)
