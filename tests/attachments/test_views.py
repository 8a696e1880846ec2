"""The upload and file endpoints through Django's full request stack: statuses, headers, and who may fetch."""

from __future__ import annotations

import io

import pytest
from django.test import Client
from PIL import Image

from chat import services as chat_services
from chat.models import Membership, Room
from tests.attachments.conftest import HTML_AS_PNG, jpeg_with_gps, png_bytes

pytestmark = pytest.mark.django_db


def _client(user, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def _upload(client: Client, name: str, data: bytes, room: str = "lobby", **extra):
    return client.post(f"/api/rooms/{room}/uploads/", {"file": _named(name, data)}, **extra)


def _named(name: str, data: bytes):
    f = io.BytesIO(data)
    f.name = name
    return f


def _assert_private_and_nosniff(response) -> None:
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "private" in response["Cache-Control"]


def test_an_image_upload_answers_201_and_its_files_carry_no_metadata(people):
    """201 with id, url, name, size, content_type and thumbnail_url; the picture and thumbnail are inline, EXIF-free."""
    alice, _ = people
    client = _client(alice)
    response = _upload(client, "holiday.jpg", jpeg_with_gps())
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"id", "url", "name", "size", "content_type", "thumbnail_url"}
    assert body["name"] == "holiday.jpg" and body["content_type"] == "image/jpeg"
    for url, kind in ((body["url"], "image/jpeg"), (body["thumbnail_url"], "image/webp")):
        got = client.get(url)
        assert got.status_code == 200 and got["Content-Type"] == kind
        _assert_private_and_nosniff(got)
        assert got["Content-Disposition"].startswith("inline")
        data = b"".join(got.streaming_content)
        with Image.open(io.BytesIO(data)) as image:
            assert dict(image.getexif()) == {} and "exif" not in image.info
        assert b"SpyCam" not in data


def test_a_disguised_html_file_is_served_as_a_download_never_inline(people):
    """An HTML page named .png: typed application/octet-stream, Content-Disposition attachment, no thumbnail."""
    alice, _ = people
    client = _client(alice)
    body = _upload(client, "cute.png", HTML_AS_PNG).json()
    assert body["content_type"] == "application/octet-stream" and "thumbnail_url" not in body
    got = client.get(body["url"])
    assert got.status_code == 200
    assert got["Content-Type"] == "application/octet-stream"
    assert got["Content-Disposition"].startswith("attachment")
    assert "sandbox" in got["Content-Security-Policy"]
    _assert_private_and_nosniff(got)


def test_unknown_and_unreadable_rooms_answer_404(people, make_user):
    """Upload to no room, to a private room of others, or as a banned member: 404, the same as no room."""
    alice, bob = people
    secret = Room.objects.create(slug="secret", title="Secret", is_public=False)
    carol = make_user("carol")
    Membership.objects.create(room=secret, user=carol)
    assert _upload(_client(alice), "a.png", png_bytes(), room="nowhere").status_code == 404
    assert _upload(_client(alice), "a.png", png_bytes(), room="secret").status_code == 404
    assert _upload(_client(alice), "a.png", png_bytes(), room="bad slug!").status_code == 404
    Membership.objects.filter(room__slug="lobby", user=bob).update(banned=True)
    response = _upload(_client(bob), "a.png", png_bytes())
    assert response.status_code == 404 and response.json()["error"] == "room_not_found"


def test_a_file_is_served_only_to_readers_of_its_room_now(people, make_user):
    """The uploader and members read it; an outsider, a banned member, and anyone after deletion get 404."""
    alice, bob = people
    secret = chat_services.room_create(slug="secret", title="Secret", is_public=False, created_by=alice)
    Membership.objects.create(room=secret, user=bob)
    carol = make_user("carol")
    body = _upload(_client(alice), "plan.pdf", b"%PDF-1.4 plan", room="secret").json()
    assert _client(bob).get(body["url"]).status_code == 404  # pending: the uploader's alone
    message, _ = chat_services.message_post(room=secret, author=alice, body="the plan", attachments=[body["id"]])
    assert _client(alice).get(body["url"]).status_code == 200
    assert _client(bob).get(body["url"]).status_code == 200
    assert _client(carol).get(body["url"]).status_code == 404
    assert Client().get(body["url"]).status_code == 404
    Membership.objects.filter(room=secret, user=bob).update(banned=True)
    assert _client(bob).get(body["url"]).status_code == 404
    chat_services.message_delete(room=secret, user=alice, message_id=message.pk)
    assert _client(alice).get(body["url"]).status_code == 404
    assert _client(alice).get("/files/not-a-token/").status_code == 404


def test_oversized_uploads_get_413_json_by_header_and_while_streaming(people, settings, monkeypatch):
    """Past UPLOAD_MAX_BYTES: 413 JSON from the declared length alone, and from the stream when the header allows it."""
    alice, _ = people
    settings.UPLOAD_MAX_BYTES = 1000
    client = _client(alice)
    response = _upload(client, "big.bin", b"x" * 200_000)
    assert response.status_code == 413 and response.json()["error"] == "upload_too_large"
    from attachments import views

    monkeypatch.setattr(views, "MULTIPART_SLACK", 10_000_000)  # the header passes; the stream cap must stop it

    def never(**kwargs):
        raise AssertionError("the parse went on past the limit and reached the service")

    monkeypatch.setattr(views.services, "upload_store", never)
    response = _upload(client, "big.bin", b"x" * 5000)
    assert response.status_code == 413 and response.json()["limit"] == 1000
    from attachments.models import Attachment

    assert Attachment.objects.count() == 0


def test_uploads_need_csrf_a_login_and_the_file_field(people):
    """No CSRF token: 403; not logged in: 403 JSON; no `file` field: 400 JSON."""
    alice, _ = people
    assert _upload(_client(alice, csrf=True), "a.png", png_bytes()).status_code == 403
    response = _upload(Client(), "a.png", png_bytes())
    assert response.status_code == 403 and response.json()["error"] == "not_authenticated"
    response = _client(alice).post("/api/rooms/lobby/uploads/", {"other": "x"})
    assert response.status_code == 400 and response.json()["error"] == "upload_rejected"


def test_uploads_are_rate_limited_per_user(people, settings):
    """Past the burst: 429 with Retry-After; another user is not affected."""
    alice, bob = people
    settings.UPLOAD_RATE_BURST = 2
    settings.UPLOAD_RATE_PER_MINUTE = 1
    client = _client(alice)
    assert [_upload(client, "a.png", png_bytes()).status_code for _ in range(3)] == [201, 201, 429]
    assert _upload(_client(bob), "a.png", png_bytes()).status_code == 201
