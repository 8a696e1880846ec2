"""Profile pictures: chat.avatars' re-encoding, the upload and the serving views, and the events' ``avatar``."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image

from chat import avatars, events, selectors, services

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def jpeg_with_exif(width: int = 300, height: int = 200, orientation: int = 6) -> bytes:
    """A landscape JPEG whose EXIF says "rotate 90°" and carries a camera and GPS tag."""
    image = Image.new("RGB", (width, height), "red")
    image.paste(Image.new("RGB", (width // 2, height), "blue"), (0, 0))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "SecretCam"
    exif[0x8825] = {1: "N"}
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    return out.getvalue()


def test_thumbnail_is_square_upright_and_carries_no_metadata():
    """The stored PNG is SIZE x SIZE, turned as EXIF said, and has no EXIF or text chunks left."""
    png = avatars.thumbnail_png(jpeg_with_exif())
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (avatars.SIZE, avatars.SIZE)
    assert not image.getexif() and not image.info.get("exif") and b"SecretCam" not in png
    # Orientation 6 turns the blue left half to the top: without the transpose it stays left.
    top = image.getpixel((avatars.SIZE // 2, 5))
    left = image.getpixel((5, avatars.SIZE // 2 + 30))
    assert top[2] > 200 and top[0] < 60, top
    assert left[0] > 200 or left[2] > 200


@pytest.mark.parametrize("data", [b"", b"not an image", b"<svg onload=alert(1)>", b"GIF89a" + b"\0" * 10,
                                  b"%PDF-1.4 ..."])
def test_what_is_not_a_decodable_picture_is_refused(data):
    """Anything Pillow cannot decode as JPEG, PNG, WebP or GIF is refused, whatever it claims to be."""
    with pytest.raises(avatars.AvatarRefused):
        avatars.thumbnail_png(data)


def test_a_huge_canvas_is_refused_before_it_is_decoded(monkeypatch):
    """A small file declaring more pixels than MAX_PIXELS is refused (a decompression bomb)."""
    monkeypatch.setattr(avatars, "MAX_PIXELS", 100)
    out = io.BytesIO()
    Image.new("RGB", (20, 20)).save(out, format="PNG")
    with pytest.raises(avatars.AvatarRefused):
        avatars.thumbnail_png(out.getvalue())


def test_upload_then_serve_to_logged_in_users_with_nosniff(make_user, lobby):
    """POST /api/avatar/ stores it; GET serves our PNG with nosniff to members, never to anonymous visitors."""
    alice, bob = make_user("alice"), make_user("bob")
    client = Client()
    client.force_login(alice)
    response = client.post("/api/avatar/", {"picture": SimpleUploadedFile("me.jpg", jpeg_with_exif())})
    assert response.status_code == 200
    url = response.json()["avatar"]
    assert url.startswith(f"/api/avatars/{alice.pk}/?v=")
    other = Client()
    other.force_login(bob)
    served = other.get(url)
    assert served.status_code == 200 and served["Content-Type"] == "image/png"
    assert served["X-Content-Type-Options"] == "nosniff"
    assert Image.open(io.BytesIO(served.content)).size == (avatars.SIZE, avatars.SIZE)
    assert Client().get(url).status_code == 302  # to the login page
    assert other.get(f"/api/avatars/{bob.pk}/").status_code == 404


def test_bad_uploads_get_a_json_4xx_and_store_nothing(make_user):
    """No file, a non-image or an oversized file: 400/413 with a reason; nothing is stored."""
    alice = make_user("alice")
    client = Client()
    client.force_login(alice)
    assert client.post("/api/avatar/", {}).status_code == 400
    bad = client.post("/api/avatar/", {"picture": SimpleUploadedFile("x.png", b"<script>", "image/png")})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_image"
    big = client.post("/api/avatar/", {"picture": SimpleUploadedFile("x.jpg", b"\xff" * (avatars.MAX_BYTES + 1))})
    assert big.status_code == 413
    assert selectors.avatar_of(user_id=alice.pk) is None


def test_events_carry_the_avatar_and_history_reads_it_without_a_query_per_message(
    make_user, lobby, django_assert_max_num_queries
):
    """message events carry ``avatar`` (null without a picture); a page of history reads them in its own query."""
    alice, bob = make_user("alice"), make_user("bob")
    for user in (alice, bob):
        services.room_enter(slug="lobby", user=user)
    services.avatar_set(user=alice, data=jpeg_with_exif())
    for i in range(6):
        services.message_post(room=lobby, author=alice if i % 2 else bob, body=f"m{i}")
    with django_assert_max_num_queries(2):  # the page with its authors' avatars, and its attachments
        page = events.message_events(selectors.room_latest(room=lobby, limit=10))
    assert {e["author"]: e["avatar"] for e in page} == {
        "alice": selectors.avatar_of(user_id=alice.pk).url, "bob": None,
    }
