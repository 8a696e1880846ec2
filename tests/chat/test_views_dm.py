"""The JSON API of direct messages, members, the room mute and the people search (chat.views).

Each refusal is a JSON 4xx (never a redirect, a 500 or a created row); CSRF applies as
to every POST; the people search shows active users' usernames and display names only.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client

from chat import services
from chat.models import Membership, Room

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def people(make_user):
    return {name: make_user(name) for name in ("alice", "bob", "carol")}


def as_user(user, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def post(client: Client, url: str, body, **extra):
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post(url, data, content_type="application/json", **extra)


def test_opening_a_dm_answers_201_then_200_with_the_same_room(people):
    """A new DM is 201 with its slug and list entry; the same people again (either side) is 200, same room."""
    first = post(as_user(people["alice"]), "/api/dm/", {"users": ["bob"]})
    assert first.status_code == 201
    body = first.json()
    assert body["room"].startswith("dm-") and body["created"] is True
    assert body["entry"]["kind"] == "dm" and body["entry"]["people"] == [{"user": "bob", "name": "bob"}]
    second = post(as_user(people["bob"]), "/api/dm/", {"users": ["alice"]})
    assert second.status_code == 200 and second.json()["room"] == body["room"]


@pytest.mark.parametrize("body", [
    {"users": ["nobody"]}, {"users": ["inactive"]}, {"users": "bob"}, {"users": [7]}, {"users": []},
    {"users": [f"u{i}" for i in range(20)]}, "not json", "[1, 2]",
], ids=["unknown", "inactive", "not-a-list", "not-names", "empty", "too-many", "bad-json", "not-an-object"])
def test_a_bad_dm_request_is_a_json_400_and_creates_nothing(people, make_user, body):
    """Unknown, inactive or malformed: 400 with a JSON error code, and no room or membership."""
    make_user("inactive", is_active=False)
    response = post(as_user(people["alice"]), "/api/dm/", body)
    assert response.status_code == 400 and response.json()["error"] == "invalid_field"
    assert not Room.objects.exists() and not Membership.objects.exists()


def test_without_a_session_or_csrf_token_nothing_is_opened(people):
    """No session: a JSON 401. A session without the CSRF token: 403. Neither creates a room."""
    anonymous = post(Client(), "/api/dm/", {"users": ["bob"]})
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "not_authenticated"
    assert post(as_user(people["alice"], csrf=True), "/api/dm/", {"users": ["bob"]}).status_code == 403
    assert Client().get("/api/people/?q=b").status_code == 401
    assert not Room.objects.exists()


def test_members_are_invited_listed_and_removed_by_the_owner(people):
    """The owner invites (201, then 200), lists the members with roles, and removes one (204)."""
    alice = as_user(people["alice"])
    services.room_create(slug="design", title="Design", is_public=False, created_by=people["alice"])
    assert post(alice, "/api/rooms/design/members/", {"user": "bob"}).status_code == 201
    assert post(alice, "/api/rooms/design/members/", {"user": "bob"}).status_code == 200
    listed = alice.get("/api/rooms/design/members/").json()
    assert listed["role"] == "owner"
    assert [(m["user"], m["role"]) for m in listed["members"]] == [("alice", "owner"), ("bob", "member")]
    assert alice.delete("/api/rooms/design/members/bob/").status_code == 204
    assert not Membership.objects.filter(room__slug="design", user=people["bob"]).exists()


def test_members_api_refuses_outsiders_members_and_dms(people):
    """An outsider may not list or invite (403); a member may not invite or remove (403); a DM's people are fixed."""
    services.room_create(slug="design", title="Design", is_public=False, created_by=people["alice"])
    services.member_invite(room=Room.objects.get(slug="design"), by=people["alice"], username="bob")
    carol, bob = as_user(people["carol"]), as_user(people["bob"])
    assert carol.get("/api/rooms/design/members/").status_code == 403
    assert post(carol, "/api/rooms/design/members/", {"user": "carol"}).status_code == 403
    assert post(bob, "/api/rooms/design/members/", {"user": "carol"}).status_code == 403
    assert bob.delete("/api/rooms/design/members/alice/").status_code == 403
    assert post(as_user(people["alice"]), "/api/rooms/design/members/", {"user": 5}).status_code == 400
    assert as_user(people["alice"]).get("/api/rooms/nowhere/members/").status_code == 404
    dm = post(as_user(people["alice"]), "/api/dm/", {"users": ["bob"]}).json()["room"]
    assert post(as_user(people["alice"]), f"/api/rooms/{dm}/members/", {"user": "carol"}).status_code == 403
    assert not Membership.objects.filter(user=people["carol"]).exists()


def test_the_mute_is_stored_and_listed(people, lobby):
    """POST mute stores the choice on the membership; /api/rooms/ lists it; a non-boolean is a 400."""
    alice = as_user(people["alice"])
    assert post(alice, "/api/rooms/lobby/mute/", {"muted": "yes"}).status_code == 400
    response = post(alice, "/api/rooms/lobby/mute/", {"muted": True})
    assert response.status_code == 200 and response.json() == {"room": "lobby", "muted": True}
    (entry,) = alice.get("/api/rooms/").json()["rooms"]
    assert entry["muted"] is True and entry["kind"] == "room"


def test_people_search_finds_active_users_by_name_and_shows_only_names(people, make_user):
    """By username or name prefix, case-insensitive; inactive users and oneself never appear; only user and name."""
    make_user("bobby", first_name="Robert", last_name="Tables")
    make_user("bobcat", is_active=False)
    found = as_user(people["alice"]).get("/api/people/?q=BOB").json()["people"]
    assert found == [{"user": "bob", "name": "bob"}, {"user": "bobby", "name": "Robert Tables"}]
    assert as_user(people["alice"]).get("/api/people/?q=rob").json()["people"] == [
        {"user": "bobby", "name": "Robert Tables"}]
    assert as_user(people["alice"]).get("/api/people/?q=ali").json()["people"] == []
    assert as_user(people["alice"]).get("/api/people/?q=").json()["people"] == []


def test_the_new_room_form_offers_a_private_choice(people):
    """The chat page's form creates a private room when "Private" is chosen; its creator owns it."""
    form = {"slug": "hideout", "title": "Hideout", "is_public": "False"}
    response = as_user(people["alice"]).post("/rooms/new/", form)
    assert response.status_code == 302
    room = Room.objects.get(slug="hideout")
    assert not room.is_public
    assert Membership.objects.get(room=room).role == Membership.Role.OWNER
    page = as_user(people["alice"]).get("/").content.decode()
    assert "Private: people you invite" in page and 'id="dm-list"' in page


def test_the_page_opens_a_room_rather_than_a_dm_by_default(people, lobby):
    """With a DM (whose slug sorts first) and the lobby, the page without ?room= opens the lobby."""
    services.dm_open(opener=people["alice"], usernames=["bob"])
    response = as_user(people["alice"]).get("/")
    assert response.context["config"]["room"] == "lobby"
    assert [r["kind"] for r in response.context["config"]["rooms"]] == ["dm", "room"]
