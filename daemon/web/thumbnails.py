"""Small pictures of the journal's photos for the page, by file id (the content hash).

The file is found through the journal (our spool copy, else where the photo was seen), never
from a path in the URL, so the page can show no file the journal does not know. The camera's
own EXIF thumbnail is served when there is one (no decode at all); else the photo is decoded
at a reduced scale (JPEG draft mode: 1/8 of the pixels' work) and shrunk. Answers are kept in a
small LRU bounded in bytes, so a phone scrolling a sequence twice costs the Pi nothing more.
"""

from __future__ import annotations

import io
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import piexif
from PIL import Image, ImageOps

from daemon.core.files import open_regular
from daemon.journal.store import Journal

WIDTH = 240  # CSS pixels of a thumbnail on the page; a camera's own is 160 wide
QUALITY = 75
CACHE_BYTES = 4 * 2**20  # about 400 thumbnails
ORIENTATION = 0x0112
_T = Image.Transpose
_TURNS = {
    2: _T.FLIP_LEFT_RIGHT,
    3: _T.ROTATE_180,
    4: _T.FLIP_TOP_BOTTOM,
    5: _T.TRANSPOSE,
    6: _T.ROTATE_270,
    7: _T.TRANSVERSE,
    8: _T.ROTATE_90,
}  # Orientation → the turn it asks
FILE_ID = re.compile(r"[0-9a-f]{64}")  # a content hash, as the journal keys files


class NoThumbnail(Exception):
    """The photo cannot be shown: unknown, no readable copy, or not a picture."""


class AnotherPhoto(FileNotFoundError):
    """The path now holds another photo than the one journaled: as good as gone."""


@dataclass(frozen=True)
class Thumbnail:
    data: bytes
    content_type: str
    source: str  # "exif" (the camera's own) or "decoded"


def make_thumbnail(path: str, size: int | None = None) -> Thumbnail:
    """A thumbnail of the photo at ``path``: its EXIF one when it has one, else a decode.
    ``size``: the photo's as journaled; a file of another size there is another photo."""
    with open_regular(path) as fh:
        if size is not None and os.fstat(fh.fileno()).st_size != size:
            raise AnotherPhoto(path)
        return _thumbnail_of(fh)


def _thumbnail_of(fh: BinaryIO) -> Thumbnail:
    with Image.open(fh) as img:
        if img.format != "JPEG":
            raise NoThumbnail(f"a {img.format or 'non-image'} file has no thumbnail here")
        exif = img.info.get("exif")
        embedded = _exif_thumbnail(exif) if isinstance(exif, bytes) else None
        turn = img.getexif().get(ORIENTATION, 1)
        if embedded is not None:
            return _upright(embedded, turn)
        img.draft("RGB", (WIDTH, WIDTH))  # decode at 1/2, 1/4 or 1/8 scale
        small = ImageOps.exif_transpose(img).convert("RGB")
    small.thumbnail((WIDTH, WIDTH * 2))
    return Thumbnail(_jpeg(small), "image/jpeg", "decoded")


def _exif_thumbnail(exif: bytes) -> Thumbnail | None:
    try:
        data = piexif.load(exif).get("thumbnail")
    except Exception:  # noqa: BLE001 - a damaged EXIF block: decode the photo instead
        return None
    if not data or not data.startswith(b"\xff\xd8"):
        return None  # none, or an uncompressed (TIFF strip) one: rare, decoded instead
    return Thumbnail(bytes(data), "image/jpeg", "exif")


def _upright(thumb: Thumbnail, turn: int) -> Thumbnail:
    """The camera's thumbnail turned as the photo's Orientation says (it carries no tag)."""
    move = _TURNS.get(turn)
    if move is None:
        return thumb
    with Image.open(io.BytesIO(thumb.data)) as img:
        upright = img.convert("RGB").transpose(move)
    return Thumbnail(_jpeg(upright), "image/jpeg", thumb.source)


def _jpeg(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


def known_copies(journal_path: Path, file_id: str) -> tuple[list[str], int]:
    """Where the journal says the photo can be read: our spool copy first, then where it was
    seen (a card still in, a watched folder); and its size, for a path that now holds another
    photo (a card formatted and filled again names its photos as before)."""
    if not FILE_ID.fullmatch(file_id):
        return [], 0
    journal = Journal.open_readonly(journal_path)
    try:
        row = journal.get_file(file_id)
    finally:
        journal.close()
    if row is None:
        return [], 0
    return ([row.spool_path] if row.spool_path else []) + list(row.paths), row.size


class Thumbnails:
    """Thumbnails by file id, the latest ``limit`` bytes of them kept."""

    def __init__(self, journal_path: Path, limit: int = CACHE_BYTES) -> None:
        self.journal_path = journal_path
        self.limit = limit
        self.held = 0
        self._cache: OrderedDict[str, Thumbnail] = OrderedDict()
        self._lock = threading.Lock()  # filled from worker threads

    def get(self, file_id: str) -> Thumbnail:
        """Blocking (journal and file reads): call it in a thread. NoThumbnail when none."""
        with self._lock:
            hit = self._cache.get(file_id)
            if hit is not None:
                self._cache.move_to_end(file_id)
                return hit
        copies, size = known_copies(self.journal_path, file_id)
        if not copies:
            raise NoThumbnail("no such photo in the journal")
        thumb = self._first_readable(copies, size)
        self._keep(file_id, thumb)
        return thumb

    def _first_readable(self, copies: list[str], size: int) -> Thumbnail:
        why = "no copy of the photo is readable now (card out, spool copy removed)"
        for path in copies:
            try:
                return make_thumbnail(path, size)
            except FileNotFoundError:
                continue
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                # Said without the path: the page may be seen from another machine.
                said = exc.strerror if isinstance(exc, OSError) and exc.strerror else None
                why = f"cannot read the photo: {said or type(exc).__name__}"
        raise NoThumbnail(why)

    def _keep(self, file_id: str, thumb: Thumbnail) -> None:
        if len(thumb.data) > self.limit:
            return
        with self._lock:
            if file_id in self._cache:
                return
            self._cache[file_id] = thumb
            self.held += len(thumb.data)
            while self.held > self.limit:
                _, old = self._cache.popitem(last=False)
                self.held -= len(old.data)

    def __len__(self) -> int:
        return len(self._cache)
