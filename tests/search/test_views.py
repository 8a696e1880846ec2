"""GET /api/search/: JSON hits newest first, every hostile query a result or a JSON 400, never a 500."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.test import Client

from chat import services

pytestmark = pytest.mark.django_db

HOSTILE = [
    'NEAR("launch" "codes", 2)', "launch AND NOT codes", "launch OR", "(launch", "launch)", '"launch', "launch*",
    "*", "***", "^launch", "body:launch", "launch -codes", "'; DROP TABLE chat_message; --", "\\", "%", "_",
    "🚀 launch", "x" * 10_000, "launch\x00codes", "", "   ", "a" * 256, "NEAR", "AND OR NOT", '""""',
]


def search(client: Client, **params):
    return client.get("/api/search/?" + urlencode(params))


@pytest.fixture
def alice_client(members, lobby, client_for):
    alice, _ = members
    services.message_post(room=lobby, author=alice, body="launch codes <b>are</b> here")
    return client_for(alice)


def test_hits_carry_the_message_and_an_escaped_highlight(alice_client):
    """A hit has room, seq, author, body, ts and a highlight whose only markup is <mark>."""
    response = search(alice_client, q="codes")
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("private")
    (hit,) = response.json()["results"]
    assert {k: hit[k] for k in ("room", "seq", "author", "body")} == {
        "room": "lobby", "seq": 1, "author": "alice", "body": "launch codes <b>are</b> here"}
    assert hit["ts"]
    assert hit["highlight"] == "launch <mark>codes</mark> &lt;b&gt;are&lt;/b&gt; here"
    assert response.json()["next_before"] is None


@pytest.mark.parametrize("q", HOSTILE)
def test_hostile_queries_get_results_or_a_json_400(alice_client, q):
    """FTS operators, quotes, *, NEAR, parentheses, 10 KB, NUL, empty: 200 with results or 400 JSON."""
    response = search(alice_client, q=q)
    assert response.status_code in (200, 400), response.content[:200]
    body = response.json()
    if response.status_code == 400:
        assert body["error"] == "invalid_query" and body["detail"]
    else:
        assert isinstance(body["results"], list)


def test_operators_are_searched_as_words(alice_client):
    """``launch OR nothing`` is three words (all must match), not an FTS5 OR: nothing found."""
    assert search(alice_client, q="launch nothing").json()["results"] == []
    assert len(search(alice_client, q="(launch codes)").json()["results"]) == 1


@pytest.mark.parametrize(("params", "status", "error"), [
    ({"q": "launch", "room": "nope"}, 404, "room_not_found"),
    ({"q": "launch", "room": "../etc"}, 404, "room_not_found"),
    ({"q": "launch", "before": "x"}, 400, "invalid_field"),
    ({"q": "launch", "limit": "1e9"}, 400, "invalid_field"),
])
def test_bad_parameters_are_json_4xx(alice_client, params, status, error):
    """An unknown room is 404; a non-integer cursor or limit 400, each with a JSON error."""
    response = search(alice_client, **params)
    assert (response.status_code, response.json()["error"]) == (status, error)


def test_a_private_room_is_refused_to_outsiders_and_anonymous_is_redirected(members, client_for):
    """``room=`` of a private room one is not in: 403 and nothing of it; no session: the login page."""
    alice, bob = members
    secret = services.room_create(slug="secret", title="Secret", is_public=False, created_by=bob)
    services.message_post(room=secret, author=bob, body="launch plans")
    response = search(client_for(alice), q="launch", room="secret")
    assert response.status_code == 403 and b"launch plans" not in response.content
    assert search(client_for(alice), q="launch").json()["results"] == []
    assert len(search(client_for(bob), q="launch", room="secret").json()["results"]) == 1
    assert search(Client(), q="launch").status_code == 302


def test_searches_past_the_rate_limit_get_429(alice_client, settings):
    """A flood of searches from one user is refused with 429 and Retry-After, not queued."""
    settings.SEARCH_RATE_BURST, settings.SEARCH_RATE_PER_SECOND = 2, 0.01
    statuses = [search(alice_client, q="launch").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    response = search(alice_client, q="launch")
    assert response.json()["error"] == "rate_limited" and int(response["Retry-After"]) >= 1


@pytest.mark.parametrize("before", [str(2**63), str(10**30), str(-(2**63) - 1), "9" * 5000])
def test_out_of_range_cursor_is_not_a_server_error(alice_client, before):
    """A cursor past the 64-bit range is refused (400) or answered, never a 500."""
    assert search(alice_client, q="launch", before=before).status_code in (200, 400)
