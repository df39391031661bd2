"""Writing EXIF into a photo, losslessly: the file's EXIF with an update applied, repaired
where cameras wrote odd types, spliced back in place of the old APP1 segment, and the file
replaced atomically (temp file beside it, fsync, rename, fsync of the folder).

Errors: a photo we cannot use is a :class:`MediaError`; failing to write the result (read-only
folder, full disk) is an ``OSError``, and the original is then left as it was.
"""

from __future__ import annotations

import contextlib
import os
import struct
from datetime import datetime
from pathlib import Path
from typing import Any

import piexif

from daemon.core.durable import write_atomically, write_temp
from daemon.media import jpeg
from daemon.media.errors import MediaError, one_line
from daemon.media.exif_tags import (
    ExifUpdate,
    capture_time_update,
    description_patch,
    gps_update,
)

_IFDS = ("0th", "Exif", "GPS", "Interop", "1st")
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}
_SUB_IFDS = {34665: "Exif", 34853: "GPS", 40965: "Interop"}  # pointer tag → IFD it leads to


def _check_tiff(tiff: bytes) -> None:
    """Refuse EXIF whose numeric entries claim more bytes than the segment holds.

    piexif sizes its work by the counts it reads, so one damaged count (four billion bytes)
    makes it build a format string of that length: tens of seconds and gigabytes before a
    MemoryError. Checking the counts first keeps a corrupt photo a cheap, clear error.
    """
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        raise MediaError("corrupt EXIF (no TIFF header)")
    order = "<" if tiff[:2] == b"II" else ">"
    (first,) = struct.unpack_from(order + "I", tiff, 4)
    todo: list[tuple[int, str]] = [(first, "Image")]
    seen: set[int] = set()
    while todo:
        offset, table = todo.pop()
        if offset in seen or offset + 2 > len(tiff):
            continue  # piexif stops on its own at loops and offsets past the end
        seen.add(offset)
        (entries,) = struct.unpack_from(order + "H", tiff, offset)
        known = piexif.TAGS.get(table, {})
        whole = min(entries, (len(tiff) - offset - 2) // 12)  # entries past the end: stop there
        table_bytes = tiff[offset + 2 : offset + 2 + 12 * whole]
        for tag, kind, count, value in struct.iter_unpack(order + "HHII", table_bytes):
            if tag not in known or kind not in _TYPE_SIZES or kind in (2, 7):
                continue  # piexif slices text and raw bytes, which costs no more than is there
            size = count * _TYPE_SIZES[kind]
            if size > 4 and value + size > len(tiff) or size > len(tiff):
                raise MediaError(f"corrupt EXIF (tag {tag} claims {size:,} bytes)")
            if tag in _SUB_IFDS and table in ("Image", "Exif"):
                todo.append((value, _SUB_IFDS[tag]))
        if table == "Image" and offset == first:
            next_at = offset + 2 + 12 * entries
            if next_at + 4 <= len(tiff):
                (next_ifd,) = struct.unpack_from(order + "I", tiff, next_at)
                if next_ifd:  # zero: no thumbnail IFD follows
                    todo.append((next_ifd, "Image"))


def load_exif(payload: bytes | None) -> dict[str, Any]:
    """An APP1 payload (EXIF_HEADER first) as piexif's dict of IFDs; empty IFDs for None."""
    if payload is None:
        return {"0th": {}, "Exif": {}, "GPS": {}, "Interop": {}, "1st": {}, "thumbnail": None}
    _check_tiff(payload[len(jpeg.EXIF_HEADER) :])
    try:
        return piexif.load(payload)
    except Exception as exc:  # piexif raises many kinds on corrupt data
        raise MediaError(f"corrupt EXIF ({one_line(exc)})") from None


_TAG_TABLE = {"0th": "Image", "1st": "Image", "Exif": "Exif", "GPS": "GPS", "Interop": "Interop"}


def _apply(data: dict[str, Any], update: ExifUpdate) -> set[tuple[str, int]]:
    """Apply the update; return the (ifd, tag) entries it set, which must survive the dump."""
    if not callable(update):
        for ifd, tags in update.items():
            data.setdefault(ifd, {}).update(tags)
        return {(ifd, tag) for ifd, tags in update.items() for tag in tags}
    before = {ifd: dict(data.get(ifd) or {}) for ifd in _IFDS}
    update(data)
    return {
        (ifd, tag)
        for ifd in _IFDS
        for tag, value in (data.get(ifd) or {}).items()
        if tag not in before[ifd] or before[ifd][tag] != value
    }


def _encodable(ifd: str, tag: int, value: Any) -> bool:
    probe: dict[str, Any] = {name: {} for name in _IFDS}
    probe[ifd] = {tag: value}
    try:
        piexif.dump(probe)
    except Exception:
        return False
    return True


def _coerced(ifd: str, tag: int, value: Any) -> Any:
    """The value in the type piexif's table wants, when a camera wrote it as another type
    (a one-byte SceneType as BYTE instead of UNDEFINED, a rational as a SHORT), else None."""
    kind = piexif.TAGS[_TAG_TABLE[ifd]].get(tag, {}).get("type")
    ints = isinstance(value, int) or (
        isinstance(value, tuple) and value and all(isinstance(v, int) for v in value)
    )
    if kind == piexif.TYPES.Undefined and ints:
        with contextlib.suppress(ValueError):
            return bytes([value] if isinstance(value, int) else value)
    if kind in (piexif.TYPES.Rational, piexif.TYPES.SRational) and ints:
        if isinstance(value, int):
            return (value, 1)
        return tuple((v, 1) for v in value) if len(value) > 1 else (value[0], 1)
    if kind in (piexif.TYPES.Byte, piexif.TYPES.Short, piexif.TYPES.Long) and isinstance(
        value, bytes
    ):
        return tuple(value)
    if kind == piexif.TYPES.Ascii and isinstance(value, tuple) and ints:
        with contextlib.suppress(ValueError):
            return bytes(value).rstrip(b"\x00")
    return None


def _dump(data: dict[str, Any], ours: set[tuple[str, int]]) -> bytes:
    """piexif.dump, repairing what cameras get wrong: an entry whose type does not match the
    standard is converted when that loses nothing, and dropped otherwise, so that one odd
    maker tag never stops a photo from being tagged. Entries we were asked to write are never
    dropped: a bad value there is a MediaError."""
    try:
        return piexif.dump(data)
    except Exception as exc:
        first = exc
    for ifd in _IFDS:
        tags = data.get(ifd) or {}
        for tag, value in list(tags.items()):
            if _encodable(ifd, tag, value):
                continue
            fixed = _coerced(ifd, tag, value)
            if fixed is not None and _encodable(ifd, tag, fixed):
                tags[tag] = fixed
            elif (ifd, tag) in ours:
                raise MediaError(f"cannot write EXIF ({one_line(first)})")
            else:
                del tags[tag]
    try:
        return piexif.dump(data)
    except Exception as exc:  # piexif refuses values of the wrong type in many ways
        raise MediaError(f"cannot write EXIF ({one_line(exc)})") from None


def _spliced(original: bytes, update: ExifUpdate, photo_only: bool = False) -> bytes:
    """``original`` with ``update`` applied to its EXIF; every other byte kept as it was
    (``photo_only``: data after the photo's end-of-image marker left out)."""
    head = jpeg.parse_head(original)
    data = load_exif(head.exif)
    payload = _dump(data, _apply(data, update))
    if photo_only:
        original = original[: jpeg.photo_end(original, head)]
    return jpeg.with_exif_segment(original, head, jpeg.app1_segment(payload))


def updated_bytes(path: str | os.PathLike[str], update: ExifUpdate) -> bytes:
    """The file's bytes with the EXIF update applied, in memory (the file is not touched)."""
    return _spliced(jpeg.read_all(path), update)


def write_exif(path: str | os.PathLike[str], update: ExifUpdate) -> None:
    """Apply ``update`` (see :data:`daemon.media.exif_tags.ExifUpdate`) to the file's EXIF,
    atomically. The file keeps its permissions."""
    write_atomically(path, updated_bytes(path, update))


def stage_exif(path: str | os.PathLike[str], update: ExifUpdate) -> Path:
    """The photo with ``update`` applied, written beside it as a temp file: not yet flushed,
    not yet in place. For rewriting many photos with one flush instead of two fsyncs each:
    flush the staged files (``daemon.core.durable.sync_files``), then
    ``daemon.core.durable.put_in_place``. ``path`` is not touched; MediaError/OSError as for
    :func:`write_exif`."""
    return write_temp(path, updated_bytes(path, update), fsync=False)


def write_gps(
    path: str | os.PathLike[str],
    lat: float,
    lon: float,
    altitude: float | None = None,
    direction: float | None = None,
    utc_time: datetime | None = None,
) -> None:
    """Write a position (and optionally altitude, true heading and UTC time) into the file.

    GPS entries left from before and not given now (an old altitude, heading or stamp) are
    removed, so the file never mixes two fixes.
    """
    write_exif(path, gps_update(lat, lon, altitude, direction, utc_time))


def write_capture_time(
    path: str | os.PathLike[str], dt: datetime, subsec: str | None = None, offset: str | None = None
) -> None:
    """Write DateTimeOriginal (+ SubSecTimeOriginal, + OffsetTimeOriginal) as given.

    A sub-second or offset not given is removed rather than left from the old time, so the
    file says exactly the time written.
    """
    write_exif(path, capture_time_update(dt, subsec, offset))


def write_description(path: str | os.PathLike[str], text: str) -> None:
    """Write ImageDescription (UTF-8)."""
    write_exif(path, description_patch(text))


def tagged_bytes(path: str | os.PathLike[str], description: str) -> bytes:
    """The bytes to upload: the photo with ``description`` as ImageDescription (file untouched).

    Only the photo goes up: what follows its end-of-image marker (a Motion Photo's video, a
    stray byte) is left out."""
    return _spliced(jpeg.read_all(path), description_patch(description), photo_only=True)
