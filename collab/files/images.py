"""Image size and thumbnail with Pillow, called in a worker thread.

Image decoders are where hostile files do harm, so this module is careful:
it opens only the format the bytes were recognised as, refuses to decode
images with more pixels than ``MAX_PIXELS`` (a small PNG can claim to be
100 000 x 100 000 pixels and take gigabytes once decoded), and treats any
failure as "no thumbnail": a broken image is still a file people can download.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import NamedTuple

from PIL import Image, ImageOps

log = logging.getLogger(__name__)

THUMBNAIL_BOX = (400, 400)
# Below Pillow's own bomb limit (Image.MAX_IMAGE_PIXELS), so we skip such images
# quietly instead of having Pillow warn or raise.
MAX_PIXELS = min(40_000_000, Image.MAX_IMAGE_PIXELS or 40_000_000)
JPEG_QUALITY = 80

_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WEBP"}
_ROTATED = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height
_ORIENTATION_TAG = 0x0112


class ImageInfo(NamedTuple):
    width: int | None
    height: int | None
    thumbnail: bool


NOT_AN_IMAGE = ImageInfo(None, None, False)


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:
        return 1


def _flatten(image: Image.Image) -> Image.Image:
    """An RGB image for JPEG; transparent parts become white, as they look in a chat."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, "white")
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _write_thumbnail(image: Image.Image, target: Path) -> None:
    image.draft("RGB", THUMBNAIL_BOX)  # JPEG: decode at a reduced scale, far less memory
    image.thumbnail(THUMBNAIL_BOX)
    small = _flatten(ImageOps.exif_transpose(image))
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        small.save(temp, "JPEG", quality=JPEG_QUALITY)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def inspect(source: Path, content_type: str, thumbnail: Path) -> ImageInfo:
    """Width and height as displayed, and whether ``thumbnail`` exists afterwards.

    A thumbnail made for the same bytes earlier is reused.
    """
    fmt = _FORMATS.get(content_type)
    if fmt is None:
        return NOT_AN_IMAGE
    try:
        with Image.open(source, formats=[fmt]) as image:
            width, height = image.size
            if _orientation(image) in _ROTATED:
                width, height = height, width
            if width <= 0 or height <= 0 or width * height > MAX_PIXELS:
                return ImageInfo(width, height, False)
            if not thumbnail.exists():
                _write_thumbnail(image, thumbnail)
            return ImageInfo(width, height, True)
    except Exception as exc:
        log.info("no thumbnail for %s (%s): %s", source.name, content_type, exc)
        return NOT_AN_IMAGE
