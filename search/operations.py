"""Migration operations that apply on one database vendor only.

The index is an FTS5 virtual table on SQLite and a model with a GIN index on PostgreSQL;
each migration step names the vendor it is for, and the model's state exists on both so
the ORM (and ``flush``) knows it either way.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations


class OnVendor(migrations.operations.base.Operation):
    """Run ``operation``'s database work only on ``vendor``; its state change applies everywhere."""

    reduces_to_sql = True
    reversible = True

    def __init__(self, vendor: str, operation: migrations.operations.base.Operation) -> None:
        self.vendor = vendor
        self.operation = operation

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return ("search.operations.OnVendor", [self.vendor, self.operation], {})

    def state_forwards(self, app_label: str, state: Any) -> None:
        self.operation.state_forwards(app_label, state)

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == self.vendor:
            self.operation.database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == self.vendor:
            self.operation.database_backwards(app_label, schema_editor, from_state, to_state)

    def describe(self) -> str:
        return f"{self.operation.describe()} (on {self.vendor} only)"
