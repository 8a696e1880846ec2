"""Attachments on an S3-compatible store through django-storages, against a real S3 HTTP server.

moto's server speaks the S3 API over HTTP on a loopback port; the storage is django-storages'
S3Storage chosen by settings exactly as docs/deploy.md says. What it must hold: an upload
lands in the bucket under its random token (not under the user's file name), the file and its
thumbnail are served back by our views (never by a bucket URL), and removing it deletes the
objects.
"""

from __future__ import annotations

import boto3
import pytest
from django.test import Client
from moto.server import ThreadedMotoServer

from attachments import services as attachment_services
from attachments.models import Attachment
from tests import services
from tests.attachments.conftest import jpeg_with_gps
from tests.attachments.test_views import _upload

pytestmark = pytest.mark.django_db

BUCKET = "chat-files"


@pytest.fixture(scope="module")
def s3_endpoint():
    port = services.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_storage(settings, s3_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    settings.STORAGES = {
        **settings.STORAGES,
        settings.ATTACHMENTS_STORAGE: {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": BUCKET, "endpoint_url": s3_endpoint, "region_name": "us-east-1",
                "default_acl": "private", "querystring_auth": True, "file_overwrite": False,
            },
        },
    }
    # The model's fields took their storage when the app loaded (from the environment, as in
    # production); point them at the one these settings now name.
    from django.core.files.storage import storages

    for name in ("file", "thumbnail"):
        monkeypatch.setattr(Attachment._meta.get_field(name), "storage", storages[settings.ATTACHMENTS_STORAGE])
    return client


def test_an_upload_lives_in_the_bucket_and_is_served_by_the_views(
    people, s3_storage, django_capture_on_commit_callbacks
):
    """The bytes go to the bucket under the token; our views stream the picture and thumbnail back;
    removing the file deletes its objects."""
    alice, _ = people
    client = Client()
    client.force_login(alice)
    response = _upload(client, "holiday.jpg", jpeg_with_gps())
    assert response.status_code == 201, response.content
    body = response.json()
    keys = [o["Key"] for o in s3_storage.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    attachment = Attachment.objects.get(id=body["id"])
    assert keys and all(attachment.token in key for key in keys), keys
    assert not any("holiday" in key for key in keys), "stored under the token, never the user's file name"
    for url in (body["url"], body["thumbnail_url"]):
        got = client.get(url)
        assert got.status_code == 200 and got["X-Content-Type-Options"] == "nosniff"
        data = b"".join(got.streaming_content)
        assert data and b"SpyCam" not in data
    with django_capture_on_commit_callbacks(execute=True):  # the bytes go after commit
        attachment_services.attachment_remove(attachment=attachment)
    assert s3_storage.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0
