"""Uploads, attaching, removing and sweeping, against the database and a real storage directory."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from PIL import Image

from attachments import services
from attachments.errors import AttachmentInvalid, UploadRejected, UploadTooLarge
from attachments.models import Attachment
from chat import services as chat_services
from chat.errors import Forbidden, RoomNotFound
from chat.models import Message, Room
from tests.attachments.conftest import HTML_AS_PNG, jpeg_with_gps, png_bytes

pytestmark = pytest.mark.django_db


def _exif_of(data: bytes) -> dict:
    with Image.open(io.BytesIO(data)) as image:
        return {"exif": dict(image.getexif()), "info_exif": image.info.get("exif"), "size": image.size}


def test_a_picture_is_stored_upright_without_metadata_with_a_thumbnail(people, upload_file):
    """A JPEG with GPS and a camera model: the stored picture and its thumbnail carry no EXIF, and stand upright."""
    alice, _ = people
    original = jpeg_with_gps(width=40, height=20, orientation=6)
    assert _exif_of(original)["exif"]  # the fixture does carry metadata
    attachment = services.upload_store(room_slug="lobby", user=alice, file=upload_file("cat.jpg", original))
    assert attachment.content_type == "image/jpeg" and attachment.thumbnail
    for field in (attachment.file, attachment.thumbnail):
        with field.open("rb") as f:
            stored = _exif_of(f.read())
        assert stored["exif"] == {} and not stored["info_exif"]
        assert stored["size"][0] < stored["size"][1]  # orientation 6 applied: 40x20 became 20x40
    with attachment.file.open("rb") as f:
        assert b"SpyCam" not in f.read()
    assert attachment.size == attachment.file.size


def test_an_html_page_named_png_is_not_a_picture(people, upload_file):
    """The type comes from the bytes: an HTML page sent as cat.png with image/png is an opaque download."""
    alice, _ = people
    attachment = services.upload_store(room_slug="lobby", user=alice,
                                       file=upload_file("cat.png", HTML_AS_PNG, "image/png"))
    assert attachment.content_type == "application/octet-stream"
    assert not attachment.thumbnail and not attachment.is_image


def test_uploads_are_refused_to_rooms_the_user_may_not_read_and_over_the_limit(people, upload_file, settings):
    """Unknown room, a private room of others, an empty file and one over UPLOAD_MAX_BYTES store nothing."""
    alice, bob = people
    Room.objects.create(slug="secret", title="Secret", is_public=False, created_by=None)
    with pytest.raises(RoomNotFound):
        services.upload_store(room_slug="nowhere", user=alice, file=upload_file("a.png", png_bytes()))
    with pytest.raises(Forbidden):
        services.upload_store(room_slug="secret", user=alice, file=upload_file("a.png", png_bytes()))
    with pytest.raises(UploadRejected):
        services.upload_store(room_slug="lobby", user=alice, file=upload_file("empty.txt", b""))
    settings.UPLOAD_MAX_BYTES = 100
    with pytest.raises(UploadTooLarge):
        services.upload_store(room_slug="lobby", user=alice, file=upload_file("big.bin", b"x" * 101))
    assert Attachment.objects.count() == 0


def test_a_corrupt_picture_is_refused(people, upload_file):
    """Bytes that sniff as PNG but do not decode are refused, not stored as a picture."""
    alice, _ = people
    with pytest.raises(UploadRejected):
        services.upload_store(room_slug="lobby", user=alice, file=upload_file("x.png", png_bytes()[:40]))


def _pending(user, room_slug="lobby", name="a.png"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return services.upload_store(room_slug=room_slug, user=user, file=SimpleUploadedFile(name, png_bytes()))


def test_a_message_takes_the_authors_pending_uploads_and_its_event_carries_them(people):
    """message_post attaches the ids in its transaction; the broadcast event and history carry the metadata."""
    alice, _ = people
    lobby = Room.objects.get(slug="lobby")
    chat_services.room_enter(slug="lobby", user=alice)
    first, second = _pending(alice), _pending(alice, name="b.png")
    message, created = chat_services.message_post(room=lobby, author=alice, body="look",
                                                  attachments=[second.pk, first.pk])
    assert created
    assert list(Message.objects.get(pk=message.pk).attachments.values_list("pk", flat=True)) == [first.pk, second.pk]
    from chat import events, selectors

    event = events.message_event(selectors.room_latest(room=lobby, limit=1)[0])
    assert [a["id"] for a in event["attachments"]] == [first.pk, second.pk]
    assert set(event["attachments"][0]) == {"id", "name", "size", "content_type", "url", "thumbnail_url"}


@pytest.mark.parametrize("case", ["someone_elses", "already_sent", "other_room", "eleven", "unknown"])
def test_a_message_with_an_attachment_it_may_not_take_is_refused_and_stores_nothing(people, case):
    """Another's upload, one already sent, one to another room, more than 10, or none such: invalid_attachment."""
    alice, bob = people
    lobby = Room.objects.get(slug="lobby")
    Room.objects.create(slug="random", title="Random")
    for user in (alice, bob):
        chat_services.room_enter(slug="lobby", user=user)
    chat_services.room_enter(slug="random", user=alice)
    if case == "someone_elses":
        ids = [_pending(bob).pk]
    elif case == "already_sent":
        ids = [_pending(alice).pk]
        chat_services.message_post(room=lobby, author=alice, body="first", attachments=ids)
    elif case == "other_room":
        ids = [_pending(alice, room_slug="random").pk]
    elif case == "eleven":
        ids = [_pending(alice, name=f"{i}.png").pk for i in range(11)]
    else:
        ids = [987654]
    before = Message.objects.count()
    with pytest.raises(AttachmentInvalid):
        chat_services.message_post(room=lobby, author=alice, body="with files", attachments=ids)
    assert Message.objects.count() == before
    if case != "already_sent":
        assert not Attachment.objects.filter(message__isnull=False).exists()


def test_removing_a_file_deletes_its_bytes_after_commit_and_tells_the_room(people, django_capture_on_commit_callbacks):
    """attachment_remove: the row goes, the stored bytes go after commit, the room gets attachment.removed."""
    alice, _ = people
    lobby = Room.objects.get(slug="lobby")
    chat_services.room_enter(slug="lobby", user=alice)
    attachment = _pending(alice)
    message, _ = chat_services.message_post(room=lobby, author=alice, body="x", attachments=[attachment.pk])
    storage, name = attachment.file.storage, attachment.file.name
    assert storage.exists(name)
    with django_capture_on_commit_callbacks(execute=True):
        services.attachment_remove(attachment=Attachment.objects.get(pk=attachment.pk))
    assert not Attachment.objects.filter(pk=attachment.pk).exists()
    assert not storage.exists(name)


def test_the_sweep_removes_only_uploads_left_unsent_for_a_day(people, django_capture_on_commit_callbacks):
    """A day-old pending upload is swept (bytes too); a fresh one and a sent one stay."""
    alice, _ = people
    lobby = Room.objects.get(slug="lobby")
    chat_services.room_enter(slug="lobby", user=alice)
    old, fresh, sent = _pending(alice), _pending(alice), _pending(alice)
    chat_services.message_post(room=lobby, author=alice, body="x", attachments=[sent.pk])
    Attachment.objects.filter(pk__in=[old.pk, sent.pk]).update(created_at=timezone.now() - timedelta(days=2))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.attachments_sweep() == 1
    assert set(Attachment.objects.values_list("pk", flat=True)) == {fresh.pk, sent.pk}
    assert not old.file.storage.exists(old.file.name)


def test_the_sweep_is_scheduled_by_beat(settings):
    """Celery beat runs the sweep (the schedule names the task that exists)."""
    from attachments import tasks

    entry = settings.CELERY_BEAT_SCHEDULE["attachments-sweep"]
    assert entry["task"] == tasks.attachments_sweep.name


def test_a_rolled_back_post_leaves_the_uploads_pending(people):
    """The attach is part of the post's transaction: rolled back, the upload is still the author's to send."""
    alice, _ = people
    lobby = Room.objects.get(slug="lobby")
    chat_services.room_enter(slug="lobby", user=alice)
    attachment = _pending(alice)
    with pytest.raises(RuntimeError), transaction.atomic():
        chat_services.message_post(room=lobby, author=alice, body="x", attachments=[attachment.pk])
        raise RuntimeError
    assert Attachment.objects.get(pk=attachment.pk).message_id is None
