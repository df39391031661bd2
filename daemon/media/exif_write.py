"""Writing EXIF into a photo, losslessly: the update is applied to a piexif-style view of the
file's entries, and only the entries it changed are written (see :mod:`daemon.media.exif_edit`);
the new APP1 segment replaces the old one, every other byte of the file stays as it was, and the
file is replaced atomically (temp file beside it, fsync, rename, fsync of the folder).

Errors: a photo we cannot use is a :class:`MediaError`, and so is a change that cannot be made
safely (the segment would exceed 64 KiB, an IFD to rewrite is cut short, a value of the wrong
kind): the file is then left byte for byte as it was. Failing to write the result (read-only
folder, full disk) is an ``OSError``, and the original is then left as it was too.
"""

from __future__ import annotations

import os
import struct
from datetime import datetime
from pathlib import Path
from typing import Any

from daemon.core.durable import write_atomically, write_temp
from daemon.core.files import open_regular
from daemon.media import jpeg
from daemon.media.errors import MediaError
from daemon.media.exif_edit import Changes, Value, edit, encode
from daemon.media.exif_tags import (
    ExifUpdate,
    capture_time_update,
    description_patch,
    gps_update,
)
from daemon.media.tiff import (
    BYTE,
    LONG,
    POINTER_TAGS,
    RATIONAL,
    SHORT,
    UNDEFINED,
    Ifd,
    Tiff,
)

_IFDS = ("0th", "Exif", "GPS", "Interop", "1st")


def _view(tiff: Tiff | None, ifds: dict[str, Ifd]) -> dict[str, Any]:
    """The entries as piexif's dict of IFDs holds them (pointers left out: they are ours to
    keep right); an entry whose value cannot be read is left out, and so kept as it is."""
    view: dict[str, Any] = {name: {} for name in _IFDS}
    if tiff is None:
        return view
    for name, ifd in ifds.items():
        pointers = POINTER_TAGS.get(name, set())
        tags = view[name]
        for entry in ifd.entries:
            if entry.tag in pointers or entry.tag in tags:
                continue
            value = tiff.value(entry)
            if value is not None:
                tags[entry.tag] = value
    return view


def _applied(view: dict[str, Any], update: ExifUpdate) -> list[tuple[str, int, Any]]:
    """Apply ``update`` to the view; the (ifd, tag, new value or None) it changed."""
    before = {name: dict(view[name]) for name in _IFDS}
    if callable(update):
        update(view)
    else:
        for name, tags in update.items():
            view.setdefault(name, {}).update(tags)
    changed = []
    for name in _IFDS:
        old, new = before[name], view.get(name) or {}
        changed += [(name, tag, value) for tag, value in new.items() if old.get(tag, ...) != value]
        changed += [(name, tag, None) for tag in old if tag not in new]
    for name, tag, _ in changed:
        if tag in POINTER_TAGS.get(name, ()):
            raise MediaError(f"cannot write EXIF (tag {tag} of {name} is a pointer)")
    return changed


def _required(head: jpeg.JpegHead, order: str) -> Any:
    """The entries an IFD made from nothing gets, so that the block is valid EXIF: resolution
    and YCbCr positioning in IFD0, the versions, colour space and pixel size in the Exif IFD,
    GPSVersionID in the GPS IFD."""

    def number(value: int) -> Value:
        kind, fmt = (SHORT, "H") if value <= 0xFFFF else (LONG, "I")
        return Value(kind, 1, struct.pack(order + fmt, value))

    def created(name: str) -> dict[int, Value]:
        if name == "0th":
            dpi = Value(RATIONAL, 1, struct.pack(order + "II", 72, 1))
            return {0x011A: dpi, 0x011B: dpi, 0x0128: number(2), 0x0213: number(1)}
        if name == "Exif":
            tags = {
                0x9000: Value(UNDEFINED, 4, b"0232"),
                0x9101: Value(UNDEFINED, 4, b"\x01\x02\x03\x00"),
                0xA000: Value(UNDEFINED, 4, b"0100"),
                0xA001: number(0xFFFF if head.icc else 1),  # uncalibrated when a profile says
            }
            if head.width and head.height:
                tags[0xA002], tags[0xA003] = number(head.width), number(head.height)
            return tags
        if name == "GPS":
            return {0x0000: Value(BYTE, 4, bytes((2, 3, 0, 0)))}
        return {}

    return created


def edited_bytes(original: bytes, update: ExifUpdate, photo_only: bool = False) -> bytes:
    """``original`` (a whole JPEG) with ``update`` applied to its EXIF, every other byte kept
    (``photo_only``: data after the photo's end-of-image marker left out). MediaError when
    the photo or the change cannot be used; nothing is written."""
    head = jpeg.parse_head(original)
    segment = _exif_segment(head, update)
    if photo_only:
        original = original[: jpeg.photo_end(original, head)]
    return original if segment is None else jpeg.with_exif_segment(original, head, segment)


def _exif_segment(head: jpeg.JpegHead, update: ExifUpdate) -> bytes | None:
    """The new Exif APP1 of a photo whose header is ``head`` with ``update`` applied; None
    when nothing changes. MediaError when the change cannot be made safely."""
    tiff = Tiff(head.exif[len(jpeg.EXIF_HEADER) :]) if head.exif is not None else None
    ifds = tiff.structure() if tiff is not None else {}
    changed = _applied(_view(tiff, ifds), update)
    order = tiff.order if tiff is not None else "<"
    changes: Changes = {}
    for name, tag, value in changed:
        old = ifds[name].get(tag) if name in ifds else None
        changes.setdefault(name, {})[tag] = (
            None if value is None else encode(order, name, tag, value, old)
        )
    if tiff is None and not any(v is not None for tags in changes.values() for v in tags.values()):
        return None  # nothing to write into a photo without EXIF
    block = edit(tiff, changes, _required(head, order))
    if tiff is not None and block == tiff.data:
        return None
    return jpeg.app1_segment(jpeg.EXIF_HEADER + block)


def updated_bytes(path: str | os.PathLike[str], update: ExifUpdate) -> bytes:
    """The file's bytes with the EXIF update applied, in memory (the file is not touched)."""
    return edited_bytes(jpeg.read_all(path), update)


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
    file says exactly the time written; so is a GPS time stamp, which would win over it (see
    :func:`capture_time_update`).
    """
    write_exif(path, capture_time_update(dt, subsec, offset))


def write_description(path: str | os.PathLike[str], text: str) -> None:
    """Write ImageDescription (UTF-8)."""
    write_exif(path, description_patch(text))


def tagged_bytes(path: str | os.PathLike[str], description: str) -> bytes:
    """The bytes to upload: the photo with ``description`` as ImageDescription (file untouched).

    Only the photo goes up: what follows its end-of-image marker (a Motion Photo's video, a
    stray byte) is left out."""
    return edited_bytes(jpeg.read_all(path), description_patch(description), photo_only=True)


def tagged_head(path: str | os.PathLike[str], description: str) -> tuple[bytes, int, int]:
    """:func:`tagged_bytes` without holding the photo in memory: ``(head, start, end)`` such
    that ``head + file[start:end]`` is the tagged bytes, byte for byte. Only the header is
    read (plus the image data's markers when the file does not end with its EOI); the caller
    streams the rest, so a photo of any size costs kilobytes."""
    head = jpeg.read_head(path)
    segment = _exif_segment(head, description_patch(description))
    try:
        with open_regular(path) as fh:
            end = jpeg.photo_end_of_file(fh, head)
            if segment is None:
                return b"", 0, end
            start, stop = head.exif_span or (head.insert_at, head.insert_at)
            fh.seek(0)  # photo_end_of_file looked at the end
            before = fh.read(start)
    except OSError as exc:
        raise MediaError(f"cannot read: {exc.strerror or exc}") from exc
    if len(before) != start or end < stop:
        raise MediaError("changed while being read")
    return before + segment, stop, end
