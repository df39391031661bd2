"""Thumbnails as the graph API offers them: 256, 1024 and 2048 pixels wide, or the original."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from PIL import Image, ImageOps

from daemon.core.durable import put_in_place

SIZES = {"256": 256, "1024": 1024, "2048": 2048}
ORIGINAL = "original"
QUALITY = 85
ORIENTATION_TAG = 0x0112


def make_thumbnail(source: Path, dest: Path, width: int) -> Path:
    """``source`` upright and ``width`` pixels wide (never enlarged) as a JPEG at ``dest``.

    Made once: an existing ``dest`` is returned as is. Blocking; the file appears atomically,
    so a concurrent request sees either no thumbnail or a whole one.
    """
    if dest.exists():
        return dest
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        with Image.open(source) as image:
            # Decoding a big JPEG at a reduced scale is much cheaper than resizing it afterwards.
            turned = image.getexif().get(ORIENTATION_TAG, 1) in (5, 6, 7, 8)
            image.draft("RGB", (1, width) if turned else (width, 1))
            upright = ImageOps.exif_transpose(image).convert("RGB")
        if upright.width > width:
            height = max(1, round(upright.height * width / upright.width))
            upright = upright.resize((width, height), Image.Resampling.BICUBIC)
        upright.save(tmp, "JPEG", quality=QUALITY)
        put_in_place(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
