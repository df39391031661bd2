"""A photo's tiny grayscale picture: 16×16 bytes, enough to tell a standing camera from a moving one.

The camera's own EXIF thumbnail is used when there is one (a few KB already in the header);
otherwise the JPEG is decoded in draft mode, which reads its DCT at 1/8 scale and costs a small
fraction of a full decode. Either way the result is squeezed to SIDE × SIDE gray levels.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from datetime import tzinfo

from PIL import ExifTags, Image

from daemon.pipeline.clock import camera_reading
from daemon.pipeline.records import ImageRecord
from daemon.pipeline.standing import PhotoClue

SIDE = 16
_IFD1 = 0x0201, 0x0202  # JPEGInterchangeFormat (offset from the TIFF header), its length


def _thumbnail(image: Image.Image) -> bytes | None:
    raw = image.info.get("exif")
    if not isinstance(raw, bytes | bytearray):
        return None
    try:
        ifd1 = image.getexif().get_ifd(ExifTags.IFD.IFD1) or {}
    except Exception:  # a broken IFD1: fall back to the picture itself
        return None
    offset, length = ifd1.get(_IFD1[0]), ifd1.get(_IFD1[1])
    if not isinstance(offset, int) or not isinstance(length, int) or length <= 0:
        return None
    base = 6 if raw.startswith(b"Exif\x00\x00") else 0
    data = bytes(raw[base + offset : base + offset + length])
    return data if data.startswith(b"\xff\xd8") else None


def _squeeze(image: Image.Image) -> bytes:
    image.draft("L", (SIDE * 4, SIDE * 4))
    return image.convert("L").resize((SIDE, SIDE), Image.Resampling.BOX).tobytes()


def tiny_picture(path: str | os.PathLike[str]) -> bytes | None:
    """SIDE × SIDE gray levels of the photo at ``path``, or None when it cannot be decoded."""
    try:
        with Image.open(path) as image:
            thumb = _thumbnail(image)
            if thumb is not None:
                try:
                    with Image.open(io.BytesIO(thumb)) as small:
                        return _squeeze(small)
                except Exception:  # an unreadable thumbnail: the photo itself still may be
                    pass
            return _squeeze(image)
    except Exception:  # Pillow raises many kinds for a bad file; the photo is just left out
        return None


def photo_clues(
    records: Iterable[ImageRecord], read_in: tzinfo, zone_known: bool = False
) -> list[PhotoClue]:
    """What the clock finder needs of each usable photo (loaded with its naive times read in
    ``read_in``, the zone given when ``zone_known``): its camera reading and its tiny picture,
    read from the file."""
    clues = []
    for record in records:
        clue = camera_reading(record, read_in, zone_known)
        if clue is not None:
            clues.append(PhotoClue(clue.seconds, tiny_picture(record.path), clue.from_file))
    return clues
