"""realtime.rows.one reads a row exactly as the ORM does: the same field values, with the
database's conversions (aware datetimes, booleans, JSON), or None when nothing matches."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from chat.models import Membership, Room
from realtime.rows import one

pytestmark = pytest.mark.django_db


def _values(instance) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}


def test_one_reads_the_same_values_as_the_orm(alice, lobby) -> None:
    """A user, a room and a membership (datetimes, booleans, foreign keys) by their unique
    keys equal what ``.get`` reads, field for field; the instances are saved-state models."""
    Membership.objects.create(room=lobby, user=alice)
    user_model = get_user_model()
    cases = [
        (user_model, ("id",), [alice.pk], user_model.objects.get(pk=alice.pk)),
        (Room, ("slug",), ["lobby"], Room.objects.get(slug="lobby")),
        (Membership, ("room", "user"), [lobby.pk, alice.pk], Membership.objects.get(room=lobby, user=alice)),
    ]
    for model, fields, params, expected in cases:
        got = one(model, fields, params)
        assert type(got) is model
        assert _values(got) == _values(expected)
        assert got._state.adding is False and got._state.db == "default"
    assert one(Room, ("slug",), ["no-such-room"]) is None


def test_one_with_only_reads_those_fields_and_defers_the_rest(alice) -> None:
    """``only``: the listed fields and the key are read, the others are deferred (loaded on
    first access, as with QuerySet.only) - the chat reads an avatar's version, not its PNG."""
    from chat.models import Avatar

    Avatar.objects.create(user=alice, png=b"\x89PNG-bytes")
    got = one(Avatar, ("user",), [alice.pk], only=("updated_at",))
    assert got.get_deferred_fields() == {"png"}
    assert got.updated_at == Avatar.objects.get(user=alice).updated_at
    assert bytes(got.png) == b"\x89PNG-bytes"
