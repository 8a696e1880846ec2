"""GET /api/rooms/SLUG/messages/?before=SEQ: members only, pages in seq order, cacheable with an ETag."""

from __future__ import annotations

import pytest
from django.test import Client

from chat import services
from chat.models import Membership, Room

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def alice(make_user, lobby):
    user = make_user("alice")
    services.room_enter(slug="lobby", user=user)
    return user


@pytest.fixture
def client_for():
    def make(user) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make


def url(slug: str = "lobby", **params) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"/api/rooms/{slug}/messages/" + (f"?{query}" if query else "")


def post(room: Room, author, n: int) -> None:
    for i in range(n):
        services.message_post(room=room, author=author, body=f"m{i + 1}", client_id=f"c{i + 1}")


# --- who may read ------------------------------------------------------------------


def test_anonymous_is_redirected_to_login(lobby):
    """No session: a redirect to the login page, not data."""
    response = Client().get(url())
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_non_member_of_a_private_room_is_forbidden(alice, make_user, client_for):
    """A private room's history is for its members: anyone else gets 403 and no messages."""
    bob = make_user("bob")
    secret = services.room_create(slug="secret", title="Secret", is_public=False, created_by=bob)
    services.message_post(room=secret, author=bob, body="classified")
    response = client_for(alice).get(url("secret"))
    assert response.status_code == 403
    assert response.json() == {"error": "forbidden"}
    assert b"classified" not in response.content
    assert client_for(bob).get(url("secret")).status_code == 200


def test_banned_member_is_forbidden(alice, lobby, client_for):
    """A banned member can no longer read the room's history."""
    post(lobby, alice, 2)
    services.member_ban(membership=Membership.objects.get(room=lobby, user=alice))
    assert client_for(alice).get(url()).status_code == 403


def test_public_room_not_entered_yet_is_forbidden(lobby, make_user, client_for):
    """Members only, also for public rooms: the membership comes from joining the room first."""
    carol = make_user("carol")
    assert client_for(carol).get(url()).status_code == 403
    services.room_enter(slug="lobby", user=carol)
    assert client_for(carol).get(url()).status_code == 200


@pytest.mark.parametrize("slug", ["nowhere", "a" * 64])
def test_unknown_room_is_404(alice, client_for, slug):
    """A well-formed slug of no room: 404."""
    response = client_for(alice).get(url(slug))
    assert response.status_code == 404 and response.json() == {"error": "room_not_found"}


@pytest.mark.parametrize("slug", ["Lobby", "lob_by", "a" * 65, "lobby%0A", "%D9%A1%D9%A2%D9%A3", "..", "lob%20by"])
def test_malformed_slug_is_404(alice, client_for, slug):
    """Slugs the protocol cannot name are 404 before any lookup."""
    response = client_for(alice).get(url(slug))
    assert response.status_code == 404


def test_only_get(alice, client_for):
    """The endpoint is read-only."""
    assert client_for(alice).post(url()).status_code == 405


# --- pages -------------------------------------------------------------------------


def test_pages_in_seq_order_with_has_more(alice, lobby, client_for):
    """Without before: the newest page; with before: the page just below it; has_more until seq 1."""
    post(lobby, alice, 7)
    client = client_for(alice)
    first = client.get(url(limit=3)).json()
    assert first["room"] == "lobby"
    assert [m["seq"] for m in first["messages"]] == [5, 6, 7] and first["has_more"] is True
    assert [m["body"] for m in first["messages"]] == ["m5", "m6", "m7"]
    second = client.get(url(before=5, limit=3)).json()
    assert [m["seq"] for m in second["messages"]] == [2, 3, 4] and second["has_more"] is True
    last = client.get(url(before=2, limit=3)).json()
    assert [m["seq"] for m in last["messages"]] == [1] and last["has_more"] is False
    empty = client.get(url(before=1)).json()
    assert empty["messages"] == [] and empty["has_more"] is False
    # The messages are the same events the socket sends.
    assert first["messages"][0] == {
        "type": "message", "room": "lobby", "seq": 5, "id": first["messages"][0]["id"], "author": "alice",
        "author_name": "alice", "avatar": None, "body": "m5", "html": "<p>m5</p>", "client_id": "c5",
        "ts": first["messages"][0]["ts"],
    }


def test_default_page_is_the_history_page_setting_and_limit_is_capped(alice, lobby, client_for, settings):
    """No limit: HISTORY_PAGE messages; a limit is clamped to 1..100."""
    settings.REALTIME = {**settings.REALTIME, "HISTORY_PAGE": 4}
    post(lobby, alice, 6)
    client = client_for(alice)
    assert [m["seq"] for m in client.get(url()).json()["messages"]] == [3, 4, 5, 6]
    assert [m["seq"] for m in client.get(url(limit=0)).json()["messages"]] == [6]
    assert [m["seq"] for m in client.get(url(limit=-5)).json()["messages"]] == [6]
    assert len(client.get(url(limit=10_000)).json()["messages"]) == 6


def test_deleted_messages_are_tombstones(alice, lobby, client_for):
    """A deleted message keeps its place in the page as message.deleted, without its text."""
    post(lobby, alice, 3)
    second = lobby.messages.get(seq=2)
    services.message_delete(room=lobby, user=alice, message_id=second.pk)
    page = client_for(alice).get(url()).json()["messages"]
    assert [m["type"] for m in page] == ["message", "message.deleted", "message"]
    assert page[1] == {"type": "message.deleted", "room": "lobby", "seq": 2, "id": second.pk}


@pytest.mark.parametrize(
    "params",
    [{"before": "abc"}, {"before": "1.5"}, {"limit": "x"}, {"before": ""}, {"before": "9" * 5000}],
    ids=["before-text", "before-float", "limit-text", "before-empty", "before-5000-digits"],
)
def test_malformed_parameters_are_400(alice, lobby, client_for, params):
    """Non-integer before/limit: 400 with invalid_field, never a server error."""
    response = client_for(alice).get(url(**params))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_field"


@pytest.mark.parametrize("before", [str(2**63), str(10**30), str(-(2**63) - 1)])
def test_out_of_range_before_is_not_a_server_error(alice, lobby, client_for, before):
    """A before past the 64-bit range is refused (400) or answered, never a 500."""
    post(lobby, alice, 2)
    response = client_for(alice).get(url(before=before))
    assert response.status_code in (200, 400), response.status_code


# --- caching -----------------------------------------------------------------------


def test_etag_and_304(alice, lobby, client_for):
    """Each page has an ETag; If-None-Match with it answers 304 without a body; a change makes a new ETag."""
    post(lobby, alice, 3)
    client = client_for(alice)
    response = client.get(url(before=4))
    etag = response["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 10
    again = client.get(url(before=4), HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again.content == b"" and again["ETag"] == etag
    assert client.get(url(before=4), HTTP_IF_NONE_MATCH='W/' + etag).status_code == 304
    assert client.get(url(before=4), HTTP_IF_NONE_MATCH='"something-else"').status_code == 200
    # An edit changes the page, so the old ETag no longer matches.
    first = lobby.messages.get(seq=1)
    services.message_edit(room=lobby, user=alice, message_id=first.pk, body="edited")
    changed = client.get(url(before=4), HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag
    assert changed.json()["messages"][0]["body"] == "edited"


def test_cache_control_is_private(alice, lobby, client_for):
    """Responses are private to the user (never in a shared cache) and vary by cookie."""
    post(lobby, alice, 2)
    client = client_for(alice)
    for response in (client.get(url()), client.get(url(before=2))):
        directives = {d.strip() for d in response["Cache-Control"].split(",")}
        assert "private" in directives and "public" not in directives
        assert "Cookie" in response["Vary"]
    newest = client.get(url())
    assert "max-age=0" in newest["Cache-Control"]  # the newest page changes with every message
    etag = newest["ETag"]
    not_modified = client.get(url(), HTTP_IF_NONE_MATCH=etag)
    assert not_modified.status_code == 304 and "private" in not_modified["Cache-Control"]


def test_around_returns_the_messages_on_both_sides_of_a_seq(alice, lobby, client_for):
    """``?around=SEQ`` (a search hit's jump): SEQ with the messages just before and after it."""
    post(lobby, alice, 30)
    page = client_for(alice).get(url(around=15, limit=6)).json()
    assert [m["seq"] for m in page["messages"]] == [12, 13, 14, 15, 16, 17]
    assert page["has_more"] is True
    assert [m["seq"] for m in client_for(alice).get(url(around=2, limit=6)).json()["messages"]] == [1, 2, 3, 4, 5, 6]
    for around in ("x", str(10**30)):
        assert client_for(alice).get(url(around=around)).status_code in (200, 400)


def test_history_carries_html_and_reply_quotes_with_tombstones(alice, lobby, client_for):
    """History serves the stored html and each reply's quote; a deleted original shows as a tombstone quote."""
    original, _ = services.message_post(room=lobby, author=alice, body="see https://example.com")
    services.message_post(room=lobby, author=alice, body="again", reply_to=original.seq)
    client = client_for(alice)
    first, reply = client.get(url()).json()["messages"]
    assert first["html"] == ('<p>see <a href="https://example.com" target="_blank"'
                             ' rel="nofollow noopener noreferrer">https://example.com</a></p>')
    assert reply["reply_to"]["seq"] == 1 and reply["reply_to"]["excerpt"] == "see https://example.com"
    services.message_delete(room=lobby, user=alice, message_id=original.pk)
    tomb, reply = client.get(url()).json()["messages"]
    assert tomb["type"] == "message.deleted"
    assert reply["reply_to"]["deleted"] is True and reply["reply_to"]["excerpt"] == ""
