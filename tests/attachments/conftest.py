"""Fixtures for the attachments tests: a throwaway storage, pictures with metadata, a disguised page."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def media(settings: Any, tmp_path: Any) -> Any:
    """Uploads of this test go to a directory of its own (not var/media)."""
    settings.STORAGES = {
        **settings.STORAGES,
        "attachments": {"BACKEND": "django.core.files.storage.FileSystemStorage",
                        "OPTIONS": {"location": str(tmp_path / "media")}},
    }
    return tmp_path / "media"


def jpeg_with_gps(*, width: int = 40, height: int = 20, orientation: int = 6) -> bytes:
    """A JPEG carrying EXIF: a camera model, GPS coordinates and an orientation (6: rotate 90° to show)."""
    image = Image.new("RGB", (width, height), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0110] = "SpyCam 3000"  # Model
    exif[0x0112] = orientation
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0), 3: "W", 4: (0.0, 7.0, 0.0)}  # GPSInfo
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    return out.getvalue()


def png_bytes(width: int = 8, height: int = 8) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (width, height), (10, 120, 200, 255)).save(out, format="PNG")
    return out.getvalue()


HTML_AS_PNG = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"


@pytest.fixture
def upload_file():
    """``upload_file(name, data)``: an UploadedFile as Django's parser makes one."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    def make(name: str, data: bytes, content_type: str = "image/png") -> Any:
        return SimpleUploadedFile(name, data, content_type=content_type)

    return make


@pytest.fixture
def people(alice: Any, bob: Any, lobby: Any):
    """alice and bob, both members of the public ``lobby`` (reading a room needs its membership)."""
    from chat import services

    for user in (alice, bob):
        services.room_enter(slug="lobby", user=user)
    return alice, bob
