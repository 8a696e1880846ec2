"""search.services: the index follows every write of chat.services, in the same transaction."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from chat import services
from chat.models import Message
from search import services as search_services
from search.query import query_parse
from search.selectors import message_search

pytestmark = pytest.mark.django_db


def found(user, text: str) -> list[str]:
    return [hit.message.body for hit in message_search(user=user, query=query_parse(text)).hits]


def indexed() -> set[int]:
    """The message ids the index holds (either backend)."""
    table, column = ((search_services.PG_TABLE, "message_id") if search_services.is_postgres()
                     else (search_services.FTS_TABLE, "rowid"))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table}")
        return {row[0] for row in cursor.fetchall()}


def test_post_edit_and_delete_keep_the_index_in_step(members, lobby):
    """Posted: found; edited: found by the new words only; deleted: found no more."""
    alice, _ = members
    message, _ = services.message_post(room=lobby, author=alice, body="the quarterly report")
    assert found(alice, "quarterly") == ["the quarterly report"]
    services.message_edit(room=lobby, user=alice, message_id=message.pk, body="the annual summary")
    assert found(alice, "quarterly") == []
    assert found(alice, "annual") == ["the annual summary"]
    services.message_delete(room=lobby, user=alice, message_id=message.pk)
    assert found(alice, "annual") == []
    assert message.pk not in indexed()  # gone from the index itself, not only filtered out


def test_staff_edit_remove_and_moderation_mask_keep_the_index_in_step(members, lobby):
    """The admin's edit and removal, and the moderation hook's mask, reach the index too."""
    alice, _ = members
    message, _ = services.message_post(room=lobby, author=alice, body="darn this build")
    services.message_edit_by_staff(message=message, body="fix this build")
    assert found(alice, "fix") == ["fix this build"]
    services.banned_word_add(word="build", action="mask")
    services.message_moderate(message_id=message.pk)
    assert found(alice, "build") == []
    assert found(alice, "fix") == ["fix this *****"]
    services.message_remove(message=Message.objects.get(pk=message.pk))
    assert found(alice, "fix") == []
    assert message.pk not in indexed()


def test_a_hidden_message_leaves_the_index(members, lobby):
    """A message the moderation hook hides (a *hide* word banned after it was posted) is found no more."""
    alice, _ = members
    message, _ = services.message_post(room=lobby, author=alice, body="buy cheapmeds now")
    services.banned_word_add(word="cheapmeds", action="hide")
    services.message_moderate(message_id=message.pk)
    assert found(alice, "buy") == []
    assert message.pk not in indexed()


def test_a_rolled_back_post_is_not_indexed(members, lobby):
    """The index write is part of the message's transaction: a rollback leaves neither."""
    alice, _ = members
    with pytest.raises(RuntimeError), transaction.atomic():
        services.message_post(room=lobby, author=alice, body="never committed")
        raise RuntimeError
    assert found(alice, "committed") == []


def test_rebuild_indexes_messages_written_around_the_services(members, lobby):
    """Rows written straight to the table (a bulk load) are found after ``search_rebuild``; tombstones are not."""
    alice, _ = members
    Message.objects.bulk_create([
        Message(room=lobby, author=alice, body="imported from the old chat", seq=1),
        Message(room=lobby, author=alice, body="imported but deleted", seq=2, deleted_at="2026-01-01T00:00:00Z"),
    ])
    assert found(alice, "imported") == []
    call_command("search_rebuild", stdout=open("/dev/null", "w"))
    assert found(alice, "imported") == ["imported from the old chat"]


def test_flush_empties_the_fts_index(members, lobby):
    """After every message is gone (``flush``), post_migrate empties the FTS5 table no model owns."""
    if search_services.is_postgres():
        pytest.skip("the PostgreSQL index is a model's table: flush truncates it")
    alice, _ = members
    services.message_post(room=lobby, author=alice, body="left behind")
    Message.objects.all().delete()
    search_services.index_prune_on_migrate(using="default")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {search_services.FTS_TABLE}")
        assert cursor.fetchone()[0] == 0


def test_a_batch_of_new_messages_is_indexed_in_one_call(members, lobby):
    """messages_index (for batched posts) makes every new message findable, and skips tombstones."""
    alice, _ = members
    rows = Message.objects.bulk_create([
        Message(room=lobby, author=alice, body="batch one", seq=1),
        Message(room=lobby, author=alice, body="batch two", seq=2, deleted_at="2026-01-01T00:00:00Z"),
    ])
    search_services.messages_index(messages=rows)
    assert found(alice, "batch") == ["batch one"]
