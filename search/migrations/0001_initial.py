"""The search index: an FTS5 table on SQLite, a tsvector table with a GIN index on PostgreSQL.

Both are filled from the messages already stored (the last two steps), so an existing
database is searchable as soon as it is migrated.
"""

import django.contrib.postgres.indexes
import django.contrib.postgres.search
import django.db.models.deletion
from django.db import migrations, models

from search.operations import OnVendor

FTS_CREATE = (
    "CREATE VIRTUAL TABLE search_message_fts USING fts5(body, tokenize = 'porter unicode61 remove_diacritics 2')"
)


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("chat", "0003_banned_word_list"),
    ]

    operations = [
        OnVendor("postgresql", migrations.CreateModel(
            name="MessageVector",
            fields=[
                ("message", models.OneToOneField(
                    db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, primary_key=True,
                    related_name="+", serialize=False, to="chat.message",
                )),
                ("vector", django.contrib.postgres.search.SearchVectorField()),
            ],
            options={
                "indexes": [django.contrib.postgres.indexes.GinIndex(fields=["vector"], name="search_vector_gin")],
            },
        )),
        OnVendor("postgresql", migrations.RunSQL(
            "ALTER TABLE search_messagevector ADD CONSTRAINT search_messagevector_message_fk "
            "FOREIGN KEY (message_id) REFERENCES chat_message (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED",
            "ALTER TABLE search_messagevector DROP CONSTRAINT search_messagevector_message_fk",
        )),
        OnVendor("sqlite", migrations.RunSQL(FTS_CREATE, "DROP TABLE search_message_fts")),
        OnVendor("sqlite", migrations.RunSQL(
            "INSERT INTO search_message_fts (rowid, body) SELECT id, body FROM chat_message WHERE deleted_at IS NULL",
            migrations.RunSQL.noop,
        )),
        OnVendor("postgresql", migrations.RunSQL(
            "INSERT INTO search_messagevector (message_id, vector) "
            "SELECT id, to_tsvector('english'::regconfig, body) FROM chat_message WHERE deleted_at IS NULL",
            migrations.RunSQL.noop,
        )),
    ]
