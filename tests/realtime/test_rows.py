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
