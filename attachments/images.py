"""What the bytes are, and safe renditions of pictures: type sniffing and Pillow's re-encoding.

The type comes from the file's first bytes (``filetype``), never from its name or the
client's Content-Type. Pictures are decoded and written again by Pillow, upright (EXIF
orientation applied) and without any metadata (EXIF, GPS, XMP, comments), so neither the
thumbnail nor the served image carries where or on what it was taken.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import IO

import filetype
from PIL import Image, ImageOps, UnidentifiedImageError

from attachments.models import INLINE_TYPES

THUMBNAIL_BOX = (480, 480)
# Decoding a picture of more pixels than this is refused (a decompression bomb).
MAX_PIXELS = 40_000_000
_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WEBP"}
_SNIFF_BYTES = 8192


def sniff(file: IO[bytes]) -> str:
    """The MIME type of the file's bytes; ``application/octet-stream`` when unrecognised."""
    file.seek(0)
    head = file.read(_SNIFF_BYTES)
    file.seek(0)
    kind = filetype.guess(head)
    return kind.mime if kind is not None else "application/octet-stream"


@dataclass(frozen=True)
class Renditions:
    """A picture re-encoded without metadata, and its thumbnail (bytes and their type)."""

    image: bytes
    thumbnail: bytes
    thumbnail_type: str


class NotAPicture(ValueError):
    """Pillow could not decode the bytes as the sniffed picture type, or it is too large to decode."""


def renditions(file: IO[bytes], *, content_type: str) -> Renditions:
    """The picture written again (upright, no metadata) and a thumbnail of at most THUMBNAIL_BOX."""
    if content_type not in INLINE_TYPES:
        raise NotAPicture(f"{content_type} is not a picture shown inline")
    file.seek(0)
    try:
        with Image.open(file) as source:
            if source.width * source.height > MAX_PIXELS:
                raise NotAPicture("the picture has too many pixels")
            source.load()
            animated = getattr(source, "is_animated", False)
            image = _clean(source, content_type, animated=animated)
            thumbnail = ImageOps.exif_transpose(source.copy()) if not animated else source.copy()
            thumbnail.thumbnail(THUMBNAIL_BOX)
            thumb_bytes, thumb_type = _encode_thumbnail(thumbnail)
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise NotAPicture(str(exc)) from None
    return Renditions(image=image, thumbnail=thumb_bytes, thumbnail_type=thumb_type)


def _clean(source: Image.Image, content_type: str, *, animated: bool) -> bytes:
    """The picture in its own format, metadata dropped (Pillow writes only what it is given)."""
    out = io.BytesIO()
    fmt = _FORMATS[content_type]
    if animated:
        # Every frame kept (their duration and loop too); orientation is left as the frames are.
        for key in ("exif", "xmp", "XML:com.adobe.xmp", "comment", "icc_profile"):
            source.info.pop(key, None)
        source.save(out, format=fmt, save_all=True)
        return out.getvalue()
    upright = ImageOps.exif_transpose(source.copy())
    upright.info.clear()
    if fmt == "JPEG":
        upright = upright.convert("RGB") if upright.mode not in ("RGB", "L") else upright
        upright.save(out, format="JPEG", quality=90, optimize=True)
    else:
        upright.save(out, format=fmt)
    return out.getvalue()


def _encode_thumbnail(image: Image.Image) -> tuple[bytes, str]:
    """A thumbnail as WebP (small, with transparency), nothing but pixels."""
    out = io.BytesIO()
    image.info.clear()
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGBA")
    image.save(out, format="WEBP", quality=80)
    return out.getvalue(), "image/webp"
