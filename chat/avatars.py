"""Profile pictures: an upload decoded by Pillow, turned upright, cut square and re-encoded.

Only the decoded pixels survive: the output is a new PNG, so EXIF (GPS, camera), ICC
profiles, comments and anything appended to the file are dropped. What Pillow cannot
decode as one of the allowed formats is refused, whatever its name or declared type.
"""

from __future__ import annotations

import io

from PIL import Image, ImageOps, UnidentifiedImageError

#: Largest upload accepted (bytes) and the largest image decoded (pixels): a small file
#: can still declare an enormous canvas (a decompression bomb).
MAX_BYTES = 5 * 1024 * 1024
MAX_PIXELS = 40_000_000
#: The stored square's side, in pixels (shown at about 34 CSS px, sharp on 2x screens).
SIZE = 128
FORMATS = ("JPEG", "PNG", "WEBP", "GIF")


class AvatarRefused(ValueError):
    """The upload is not an image this accepts; the message says why, to a person."""


def thumbnail_png(data: bytes) -> bytes:
    """The square, upright, metadata-free PNG of an uploaded image."""
    if len(data) > MAX_BYTES:
        raise AvatarRefused(f"the picture is larger than {MAX_BYTES // (1024 * 1024)} MB")
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            if image.width * image.height > MAX_PIXELS:
                raise AvatarRefused("the picture has too many pixels")
            image.load()
            upright = ImageOps.exif_transpose(image)
            square = ImageOps.fit(upright.convert("RGBA"), (SIZE, SIZE), Image.Resampling.LANCZOS)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as exc:
        raise AvatarRefused("not a JPEG, PNG, WebP or GIF picture") from exc
    out = io.BytesIO()
    square.save(out, format="PNG", optimize=True)
    return out.getvalue()
