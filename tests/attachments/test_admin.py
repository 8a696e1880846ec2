"""Staff remove files in the admin, through the service (row, bytes, and the room told)."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from attachments import services
from attachments.models import Attachment
from tests.attachments.conftest import png_bytes

pytestmark = pytest.mark.django_db


def test_staff_remove_a_file_from_the_admin_and_its_bytes_go_too(people, make_user, django_capture_on_commit_callbacks):
    """The admin's delete action removes the row and the stored bytes; the changelist shows files, not an add form."""
    alice, _ = people
    attachment = services.upload_store(room_slug="lobby", user=alice, file=SimpleUploadedFile("a.png", png_bytes()))
    storage, name = attachment.file.storage, attachment.file.name
    staff = make_user("staff", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(staff)
    assert client.get("/admin/attachments/attachment/").status_code == 200
    assert client.get("/admin/attachments/attachment/add/").status_code == 403
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/admin/attachments/attachment/", {
            "action": "remove_files", "_selected_action": [attachment.pk],
        })
    assert response.status_code == 302
    assert not Attachment.objects.exists()
    assert not storage.exists(name)
