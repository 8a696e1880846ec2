"""One row by a unique key, without the ORM's query building: the lookups every handshake,
join and message makes.

Building ``.filter(...).first()`` or ``.get(...)`` cost more than running the query, and
``.first()`` orders by the model's ordering, which can join more tables (for the chat's
Membership, two; docs/performance.md has the figures). :func:`one` runs a raw query of all
columns, built once per model and key, and still reads the row into the model.
"""

from __future__ import annotations

import functools
from typing import Any

from django.db import connection
from django.db.models import Model


@functools.cache
def one_sql(model: type[Model], *fields: str) -> str:
    """``SELECT * FROM <model's table> WHERE <each field's column> = %s AND …``."""
    meta = model._meta
    q = connection.ops.quote_name
    where = " AND ".join(f"{q(meta.get_field(name).column)} = %s" for name in fields)
    return f"SELECT * FROM {q(meta.db_table)} WHERE {where}"


def one(model: type[Model], fields: tuple[str, ...], params: list[Any]) -> Any:
    """The ``model`` row whose ``fields`` equal ``params`` (a unique key), or None."""
    return next(iter(model._default_manager.raw(one_sql(model, *fields), params)), None)
