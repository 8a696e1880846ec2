"""Search fixtures: lobby members alice and bob, and a client logged in as anyone."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from chat import services


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def members(make_user: Any, lobby: Any) -> tuple[Any, Any]:
    """alice and bob, both in the lobby."""
    alice, bob = make_user("alice"), make_user("bob")
    for user in (alice, bob):
        services.room_enter(slug="lobby", user=user)
    return alice, bob


@pytest.fixture
def client_for():
    def make(user: Any) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make
