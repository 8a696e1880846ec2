"""A message's `attachments` over the socket (WebsocketCommunicator): carried live and in history, refused clearly."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile

from attachments import services
from tests.attachments.conftest import png_bytes
from tests.chat.test_consumers import connect, join, recv

pytestmark = pytest.mark.django_db(transaction=True)


def _upload(user, name="a.png"):
    return services.upload_store(room_slug="lobby", user=user, file=SimpleUploadedFile(name, png_bytes())).pk


async def test_a_message_with_attachments_reaches_the_room_and_history_with_their_metadata(people):
    """Everyone gets `message` with the files' metadata; a client joining later gets them in history."""
    alice, bob = people
    upload_id = await sync_to_async(_upload)(alice)
    a, b = await connect(alice), await connect(bob)
    await join(a)
    await join(b)
    await a.send_json_to({"type": "message", "room": "lobby", "body": "see", "attachments": [upload_id]})
    for comm in (a, b):
        event = await recv(comm, type_="message")
        assert [f["id"] for f in event["attachments"]] == [upload_id]
        assert event["attachments"][0]["url"].startswith("/files/")
        assert event["attachments"][0]["thumbnail_url"].endswith("/thumbnail/")
    await b.disconnect()
    b = await connect(bob)
    await join(b)
    history = await recv(b, type_="message")
    assert [f["id"] for f in history["attachments"]] == [upload_id]
    await a.disconnect()
    await b.disconnect()


async def test_attachments_that_are_not_the_senders_get_an_error_frame_and_nothing_is_stored(people):
    """Bob's upload in Alice's message: invalid_attachment; 11 ids or a non-list: invalid_field; the socket lives on."""
    alice, bob = people
    bobs = await sync_to_async(_upload)(bob)
    a = await connect(alice)
    await join(a)
    await a.send_json_to({"type": "message", "room": "lobby", "body": "x", "attachments": [bobs]})
    error = await recv(a, type_="error")
    assert error["code"] == "invalid_attachment" and error["ids"] == [bobs]
    await a.send_json_to({"type": "message", "room": "lobby", "body": "x", "attachments": list(range(1, 12))})
    assert (await recv(a, type_="error"))["field"] == "attachments"
    await a.send_json_to({"type": "message", "room": "lobby", "body": "x", "attachments": "1"})
    assert (await recv(a, type_="error"))["code"] == "invalid_field"
    await a.send_json_to({"type": "message", "room": "lobby", "body": "still here"})
    assert "attachments" not in await recv(a, type_="message")
    from chat.models import Message

    assert await sync_to_async(Message.objects.count)() == 1
    await a.disconnect()


async def test_a_file_removed_by_staff_is_gone_from_a_join_served_by_the_rooms_window(people):
    """Staff remove one of a message's two files while the process's window holds the message: a later
    join, answered from the window (realtime.streams), carries the other file only, as the database does."""
    from attachments.models import Attachment
    from chat import events, selectors
    from chat.models import Room
    from realtime import metrics

    alice, bob = people
    first, second = await sync_to_async(_upload)(alice), await sync_to_async(_upload)(alice, "b.png")
    a = await connect(alice)
    await join(a)  # seeds the window
    await a.send_json_to({"type": "message", "room": "lobby", "body": "two", "attachments": [first, second]})
    await recv(a, type_="message")
    await sync_to_async(lambda: services.attachment_remove(attachment=Attachment.objects.get(pk=first)))()
    assert (await recv(a, type_="attachment.removed"))["id"] == first
    cached = metrics.JOIN_HISTORY.labels(source="cache")._value.get()
    b = await connect(bob)
    await join(b)
    history = await recv(b, type_="message")
    assert metrics.JOIN_HISTORY.labels(source="cache")._value.get() == cached + 1
    assert [f["id"] for f in history["attachments"]] == [second]

    def from_database():
        room = Room.objects.get(slug="lobby")
        return events.message_events(selectors.room_resume(room=room, last_seq=0, page=50, cap=500).messages)

    assert [history] == await sync_to_async(from_database)()
    await a.disconnect()
    await b.disconnect()
