"""Read and write the EXIF metadata we need, with piexif, touching only the metadata.

Reading walks the JPEG's marker segments up to the start of the image data, so a 10 MB photo
costs a few kilobytes of I/O (plus one small read at the end to see the end-of-image marker).
Writing splices a new APP1 segment into the original byte stream, so every other segment and
the compressed image data stay byte-for-byte, and replaces the file atomically (temp file in
the same folder, fsync, rename, fsync of the folder).

Errors: anything wrong with the file itself (empty, not a JPEG, cut off, corrupt EXIF, bad date,
unreadable) is a :class:`MediaError` whose text is a one-line reason. Failing to write the
result (read-only folder, full disk) is an ``OSError``, since the photo is not at fault; the
original is then left as it was.
"""

from __future__ import annotations

import contextlib
import enum
import io
import os
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, BinaryIO

import piexif

from daemon.core.durable import fsync_dir

SOI = b"\xff\xd8"
EOI = b"\xff\xd9"
EXIF_HEADER = b"Exif\x00\x00"
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_NO_LENGTH = {0x01, *range(0xD0, 0xD8)}  # TEM and RSTn stand alone
_TAIL = 4096  # bytes read at a time from the end, looking for EOI past zero padding
_MAX_PADDING = 1 << 20  # some cameras pad to a block size; more zeros than this is not padding
TEMP_PREFIX = ".mly-"  # temp files beside a photo being rewritten
_FIRST_READ = 64 * 1024  # the header of a camera photo (EXIF, thumbnail, tables) fits in this


class MediaError(Exception):
    """A file we cannot use; str(exc) is the one-line reason (without the file name)."""


class _Truncated(MediaError):
    """The file ends inside the header: cut off (or still being written), not corrupt."""


@dataclass(frozen=True)
class ExifInfo:
    """What we read from one JPEG. Times are as the camera wrote them.

    ``capture_time`` is naive unless the file says its zone (OffsetTimeOriginal → aware) or the time
    came from the GPS stamp (always aware UTC). ``time_source`` is "exif" (DateTimeOriginal),
    "gps" (GPSDateStamp/GPSTimeStamp) or "digitized" (DateTimeDigitized / DateTime).
    ``gps_time`` is the GPS stamp (aware UTC) whatever the capture time came from.
    """

    capture_time: datetime | None
    time_source: str | None
    lat: float | None
    lon: float | None
    altitude: float | None
    direction: float | None
    orientation: int
    make: str | None
    model: str | None
    description: str | None  # ImageDescription as text (Mapillary JSON when tagged)
    width: int | None = None
    height: int | None = None
    gps_time: datetime | None = None


@dataclass(frozen=True)
class _Head:
    """Where things are in a JPEG's header: the Exif APP1 segment (if any) and the frame size."""

    exif_span: tuple[int, int] | None  # [start, end) of the whole APP1 segment, marker included
    exif: bytes | None  # the segment's payload, starting with EXIF_HEADER
    insert_at: int  # where a new APP1 goes when there is none (after SOI and a JFIF APP0)
    width: int | None
    height: int | None
    data_start: int = 0  # where the image data begins (just past the first SOS segment)


# -- the JPEG container ---------------------------------------------------------------------------


def _read_exact(fh: BinaryIO, n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise _Truncated("truncated JPEG header")
    return data


def _walk_head(fh: BinaryIO) -> _Head:
    """Walk segments from SOI to SOS reading only what we need; ``fh`` is at offset 0."""
    start = fh.read(2)
    if not start:
        raise MediaError("empty file (0 bytes)")
    if start != SOI:
        raise MediaError(f"not a JPEG (starts with {(start + fh.read(6))!r})")
    pos = 2
    exif_span = exif = None
    insert_at = 2
    width = height = None
    while True:
        marker = _read_exact(fh, 2)
        if marker[0] != 0xFF:
            raise MediaError(f"corrupt JPEG header at byte {pos}")
        kind = marker[1]
        if kind == 0xFF:  # fill byte before a marker
            fh.seek(pos + 1)
            pos += 1
            continue
        if kind in _NO_LENGTH:
            pos += 2
            continue
        if kind in (0xD8, 0xD9):
            raise MediaError(f"corrupt JPEG header (marker FF{kind:02X} at byte {pos})")
        (length,) = struct.unpack(">H", _read_exact(fh, 2))
        if length < 2:
            raise MediaError(f"corrupt JPEG segment length at byte {pos}")
        end = pos + 2 + length
        if kind == 0xDA:  # start of scan: the header is over
            if width is None:
                raise MediaError("corrupt JPEG header (no frame header before the image data)")
            return _Head(exif_span, exif, insert_at, width, height, end)
        if kind == 0xE1 and exif is None:
            payload = _read_exact(fh, length - 2)
            if payload.startswith(EXIF_HEADER):
                exif_span, exif = (pos, end), payload
        elif kind in _SOF:
            if length < 7:
                raise MediaError(f"corrupt JPEG frame header at byte {pos}")
            height, width = struct.unpack(">HH", _read_exact(fh, 5)[1:5])
        if kind == 0xE0 and insert_at == pos:
            insert_at = end  # keep JFIF's APP0 first, as the standard wants
        fh.seek(end)
        pos = end


def _has_eoi(fh: BinaryIO, size: int, after: int = 0) -> bool:
    """Whether the file ends with an EOI starting at or past ``after``, allowing trailing zero
    padding (read backwards in chunks)."""
    end = size
    while end > after and size - end <= _MAX_PADDING:
        start = max(0, end - _TAIL)
        fh.seek(start)
        chunk = fh.read(end - start).rstrip(b"\x00")
        if chunk:
            if len(chunk) == 1 and start > 0:  # the marker straddles two chunks
                fh.seek(start - 1)
                return fh.read(2) == EOI and start - 1 >= after
            return chunk.endswith(EOI) and start + len(chunk) - 2 >= after
        end = start
    return False


class JpegState(enum.Enum):
    """How finished a JPEG file is; the value is the one-line reason when it is not."""

    COMPLETE = "complete"
    EMPTY = "empty file"
    NOT_JPEG = "not a JPEG: no start-of-image marker"  # no writer can make it one
    CORRUPT = "corrupt JPEG header"  # or preallocated zeros not yet written over
    CUT_OFF = "cut off: no end-of-image marker"


def jpeg_state(path: str | os.PathLike[str]) -> JpegState:
    """SOI, header segments up to the start of scan, and an EOI after the image data at the
    end (zero padding allowed). OSError when the file cannot be read.

    Walking the segments matters: an EXIF thumbnail ends with its own EOI, so a file cut right
    after it would pass a plain "ends with FFD9" test.
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        start = fh.read(2)
        if not start:
            return JpegState.EMPTY
        if not SOI.startswith(start):
            return JpegState.NOT_JPEG
        if len(start) < 2:
            return JpegState.CUT_OFF
        fh.seek(0)
        try:
            head = _walk_head(fh)
        except _Truncated:
            return JpegState.CUT_OFF
        except MediaError:
            return JpegState.CORRUPT
        if _has_eoi(fh, size, after=head.data_start):
            return JpegState.COMPLETE
        return JpegState.CUT_OFF


def is_complete_jpeg(path: str | os.PathLike[str]) -> bool:
    """Whether the file is a whole JPEG (see :func:`jpeg_state`); False when unreadable."""
    try:
        return jpeg_state(path) is JpegState.COMPLETE
    except OSError:
        return False


def _one_line(exc: BaseException) -> str:
    """A library's message as one short line (piexif's span several)."""
    text = " ".join(str(exc).split())[:160]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _cannot_read(exc: OSError) -> MediaError:
    return MediaError(f"cannot read: {exc.strerror or exc}")


def _open_head(path: str | os.PathLike[str]) -> _Head:
    try:
        with open(path, "rb", buffering=0) as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                raise MediaError("empty file (0 bytes)")
            # One read holds the whole header of almost any photo (and all of a small one):
            # walking it in memory costs no system calls per segment.
            first = fh.read(_FIRST_READ)
            whole = len(first) >= size
            try:
                head = _walk_head(io.BytesIO(first))
            except MediaError:
                if whole:
                    raise
                fh.seek(0)  # a header longer than the first read: walk the file itself
                head = _walk_head(io.BufferedReader(fh))
            if not _has_eoi(io.BytesIO(first) if whole else fh, size):
                raise MediaError("truncated JPEG (no end-of-image marker)")
    except OSError as exc:
        raise _cannot_read(exc) from exc
    return head


# -- reading --------------------------------------------------------------------------------------


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


def _load(payload: bytes | None) -> dict[str, Any]:
    if payload is None:
        return {"0th": {}, "Exif": {}, "GPS": {}, "Interop": {}, "1st": {}, "thumbnail": None}
    _check_tiff(payload[len(EXIF_HEADER) :])
    try:
        return piexif.load(payload)
    except Exception as exc:  # piexif raises many kinds on corrupt data
        raise MediaError(f"corrupt EXIF ({_one_line(exc)})") from None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = str(value).replace("\x00", "").strip()
    return text or None


def _ratio(value: Any) -> float:
    num, den = value
    if den == 0:
        raise ZeroDivisionError
    return num / den


def _dms(value: Any) -> float:
    d, m, s = (_ratio(v) for v in value)
    return d + m / 60 + s / 3600


def _unset(text: str) -> bool:
    """Cameras without a clock write zeros or blanks ("0000:00:00 00:00:00", "    :  :  ")."""
    return not text.strip(" :0-")


def _parse_datetime(value: Any, tag: str) -> datetime | None:
    """None when the tag is missing or blank; MediaError when it holds something else."""
    text = _text(value)
    if not text or _unset(text):
        return None
    fast = _exif_datetime(text)
    if fast is not None:
        return fast
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d %H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(text[:19], fmt)
        except ValueError:
            continue
    raise MediaError(f"bad {tag} date {text[:40]!r}")


def _exif_datetime(text: str) -> datetime | None:
    """ "YYYY:MM:DD HH:MM:SS", as nearly every camera writes it, without strptime (whose
    locale checks cost more than the rest of reading a photo); None for anything else."""
    if len(text) < 19 or text[4] != ":" or text[7] != ":" or text[10] != " ":
        return None
    if text[13] != ":" or text[16] != ":":
        return None
    fields = (text[0:4], text[5:7], text[8:10], text[11:13], text[14:16], text[17:19])
    if not all(f.isascii() and f.isdigit() for f in fields):
        return None
    try:
        return datetime(*(int(f) for f in fields))  # type: ignore[misc]
    except ValueError:
        return None  # strptime then says what is wrong with it


def _with_subsec(moment: datetime, subsec: Any) -> datetime:
    digits = "".join(c for c in (_text(subsec) or "") if c.isdigit())
    if not digits:
        return moment
    return moment.replace(microsecond=int((digits + "000000")[:6]))


def _parse_offset(value: Any) -> timezone | None:
    """ "+02:00" → a zone; None when missing or blank; MediaError for anything else."""
    text = _text(value)
    if not text or _unset(text):
        return None
    try:
        if len(text) != 6 or text[0] not in "+-" or text[3] != ":":
            raise ValueError
        delta = timedelta(hours=int(text[1:3]), minutes=int(text[4:6]))
        return timezone(-delta if text[0] == "-" else delta)
    except ValueError:
        raise MediaError(f"bad OffsetTimeOriginal {text[:20]!r}") from None


def _gps_time(gps: dict[int, Any]) -> datetime | None:
    date = _text(gps.get(piexif.GPSIFD.GPSDateStamp))
    stamp = gps.get(piexif.GPSIFD.GPSTimeStamp)
    if not date or not stamp or _unset(date):
        return None
    try:
        day = datetime.strptime(date[:10].replace("-", ":"), "%Y:%m:%d")
        h, m, s = (_ratio(v) for v in stamp)
        if not (0 <= h < 24 and 0 <= m < 60 and 0 <= s < 61):
            raise ValueError
    except (ValueError, ZeroDivisionError, TypeError):
        raise MediaError(f"bad GPS date/time stamp {date[:20]!r} {stamp!r}"[:120]) from None
    return day.replace(tzinfo=UTC) + timedelta(hours=h, minutes=m, seconds=s)


def _capture_time(
    data: dict[str, Any], gps_time: datetime | None
) -> tuple[datetime | None, str | None]:
    """The best capture time in order: DateTimeOriginal, GPS stamp, DateTimeDigitized, DateTime."""
    ex, zeroth = data.get("Exif", {}), data.get("0th", {})
    e = piexif.ExifIFD
    original = _parse_datetime(ex.get(e.DateTimeOriginal), "DateTimeOriginal")
    if original:
        moment = _with_subsec(original, ex.get(e.SubSecTimeOriginal))
        zone = _parse_offset(ex.get(e.OffsetTimeOriginal))
        return (moment.replace(tzinfo=zone) if zone else moment), "exif"
    if gps_time:
        return gps_time, "gps"
    digitized = _parse_datetime(ex.get(e.DateTimeDigitized), "DateTimeDigitized")
    if digitized:
        return _with_subsec(digitized, ex.get(e.SubSecTimeDigitized)), "digitized"
    plain = _parse_datetime(zeroth.get(piexif.ImageIFD.DateTime), "DateTime")
    if plain:
        return _with_subsec(plain, ex.get(e.SubSecTime)), "digitized"
    return None, None


def _position(gps: dict[int, Any]) -> tuple[float | None, float | None, float | None, float | None]:
    g = piexif.GPSIFD
    lat = lon = alt = direction = None
    try:
        if g.GPSLatitude in gps and g.GPSLongitude in gps:
            lat = _dms(gps[g.GPSLatitude])
            lon = _dms(gps[g.GPSLongitude])
            if _text(gps.get(g.GPSLatitudeRef)) == "S":
                lat = -lat
            if _text(gps.get(g.GPSLongitudeRef)) == "W":
                lon = -lon
        if g.GPSAltitude in gps:
            alt = _ratio(gps[g.GPSAltitude])
            if gps.get(g.GPSAltitudeRef) in (1, b"\x01"):
                alt = -alt
        if g.GPSImgDirection in gps:
            direction = _ratio(gps[g.GPSImgDirection]) % 360.0
    except (ZeroDivisionError, TypeError, ValueError):
        raise MediaError("corrupt GPS data in EXIF") from None
    if lat is not None and not -90.0 <= lat <= 90.0:
        raise MediaError(f"GPS latitude {lat:.6f} is out of range")
    if lon is not None and not -180.0 <= lon <= 180.0:
        raise MediaError(f"GPS longitude {lon:.6f} is out of range")
    return lat, lon, alt, direction


def read_exif(path: str | os.PathLike[str]) -> ExifInfo:
    """The metadata of one JPEG; MediaError with a one-line reason when it cannot be used."""
    head = _open_head(path)
    data = _load(head.exif)
    zeroth, gps = data.get("0th", {}), data.get("GPS", {})
    gps_time = _gps_time(gps)
    capture_time, source = _capture_time(data, gps_time)
    lat, lon, alt, direction = _position(gps)
    orientation = zeroth.get(piexif.ImageIFD.Orientation, 1)
    return ExifInfo(
        capture_time=capture_time,
        time_source=source,
        lat=lat,
        lon=lon,
        altitude=alt,
        direction=direction,
        orientation=orientation if isinstance(orientation, int) else 1,
        make=_text(zeroth.get(piexif.ImageIFD.Make)),
        model=_text(zeroth.get(piexif.ImageIFD.Model)),
        description=_text(zeroth.get(piexif.ImageIFD.ImageDescription)),
        width=head.width,
        height=head.height,
        gps_time=gps_time,
    )


# -- writing --------------------------------------------------------------------------------------

ExifUpdate = Callable[[dict[str, Any]], None] | dict[str, dict[int, Any]]


_IFDS = ("0th", "Exif", "GPS", "Interop", "1st")
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
                raise MediaError(f"cannot write EXIF ({_one_line(first)})")
            else:
                del tags[tag]
    try:
        return piexif.dump(data)
    except Exception as exc:  # piexif refuses values of the wrong type in many ways
        raise MediaError(f"cannot write EXIF ({_one_line(exc)})") from None


def _segment(head: _Head, update: ExifUpdate) -> bytes:
    """The new APP1 segment: the file's EXIF with ``update`` applied."""
    data = _load(head.exif)
    payload = _dump(data, _apply(data, update))
    if len(payload) + 2 > 0xFFFF:
        raise MediaError("EXIF block would exceed the 64 KB a JPEG segment can hold")
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def _spliced(original: bytes, update: ExifUpdate) -> bytes:
    """``original`` with its Exif APP1 replaced (or inserted); every other byte kept as it was."""
    if not original:
        raise MediaError("empty file (0 bytes)")
    head = _walk_head(io.BytesIO(original))
    if not _has_eoi(io.BytesIO(original), len(original)):
        raise MediaError("truncated JPEG (no end-of-image marker)")
    segment = _segment(head, update)
    start, end = head.exif_span or (head.insert_at, head.insert_at)
    view = memoryview(original)  # slices without copying; join copies once
    return b"".join((view[:start], segment, view[end:]))


def _read_all(path: str | os.PathLike[str]) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise _cannot_read(exc) from exc


def updated_bytes(path: str | os.PathLike[str], update: ExifUpdate) -> bytes:
    """The file's bytes with the EXIF update applied, in memory (the file is not touched)."""
    return _spliced(_read_all(path), update)


def _write_temp(target: Path, data: bytes, fsync: bool) -> Path:
    """``data`` in a new dotfile beside ``target`` (so folder watchers skip it), with the
    target's permissions; removed again if anything fails."""
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp, os.stat(target).st_mode & 0o7777)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return Path(tmp)


def replace_atomically(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` over ``path``: temp file beside it, fsync, rename, fsync the folder.

    A crash at any point leaves either the old file or the new one, never a mix; the temp
    file is a dotfile so folder watchers skip it, and it is removed if anything fails.
    """
    target = Path(path)
    put_in_place(_write_temp(target, data, fsync=True), target)
    fsync_dir(target.parent)


def stage_exif(path: str | os.PathLike[str], update: ExifUpdate) -> Path:
    """The photo with ``update`` applied, written beside it as a temp file: not yet flushed,
    not yet in place. For rewriting many photos with one flush instead of two fsyncs each:
    flush the staged files (``daemon.core.durable.sync_files``), then :func:`put_in_place`.
    ``path`` is not touched; MediaError/OSError as for :func:`write_exif`."""
    target = Path(path)
    return _write_temp(target, updated_bytes(target, update), fsync=False)


def put_in_place(staged: Path, path: str | os.PathLike[str]) -> None:
    """Rename a flushed staged file over ``path`` (atomic); the staged file is gone either way.
    The caller fsyncs the folder (``daemon.core.durable.fsync_dirs``) once after a batch of these."""
    try:
        os.replace(staged, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(staged)
        raise


def write_exif(path: str | os.PathLike[str], update: ExifUpdate) -> None:
    """Apply ``update`` to the file's EXIF, atomically.

    ``update`` is either a patch ``{"0th": {tag: value}, "GPS": {...}}`` merged into the
    existing IFDs, or a function that edits the piexif dict in place (to delete tags).
    """
    replace_atomically(path, updated_bytes(path, update))


def _rational(value: float, den: int) -> tuple[int, int]:
    return (round(abs(value) * den), den)


_DMS_DEN = 100_000  # seconds to 1e-5": about 3e-9 degrees, well under the 1e-7 we promise


def _dms_rational(value: float) -> tuple[tuple[int, int], ...]:
    # Integer arithmetic so rounding can never produce 60 seconds or 60 minutes.
    ticks = round(abs(value) * 3600 * _DMS_DEN)
    degrees, rest = divmod(ticks, 3600 * _DMS_DEN)
    minutes, seconds = divmod(rest, 60 * _DMS_DEN)
    return ((degrees, 1), (minutes, 1), (seconds, _DMS_DEN))


def _as_utc(t: datetime) -> datetime:
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)


def gps_tags(
    lat: float,
    lon: float,
    altitude: float | None = None,
    direction: float | None = None,
    utc_time: datetime | None = None,
) -> dict[int, Any]:
    """The GPS IFD entries for a position (1e-7 degree precision or better).

    A naive ``utc_time`` is taken as UTC. MediaError for a position outside the globe.
    """
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise MediaError(f"cannot write GPS position {lat}, {lon}: out of range")
    g = piexif.GPSIFD
    tags: dict[int, Any] = {
        g.GPSVersionID: (2, 2, 0, 0),
        g.GPSLatitudeRef: b"N" if lat >= 0 else b"S",
        g.GPSLatitude: _dms_rational(lat),
        g.GPSLongitudeRef: b"E" if lon >= 0 else b"W",
        g.GPSLongitude: _dms_rational(lon),
    }
    if altitude is not None:
        tags[g.GPSAltitudeRef] = 0 if altitude >= 0 else 1
        tags[g.GPSAltitude] = _rational(altitude, 1000)
    if direction is not None:
        tags[g.GPSImgDirectionRef] = b"T"
        tags[g.GPSImgDirection] = _rational(direction % 360.0, 1000)
    if utc_time is not None:
        t = _as_utc(utc_time)
        tags[g.GPSDateStamp] = t.strftime("%Y:%m:%d").encode()
        tags[g.GPSTimeStamp] = (
            (t.hour, 1),
            (t.minute, 1),
            _rational(t.second + t.microsecond / 1e6, 1000),
        )
    return tags


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


def gps_update(
    lat: float,
    lon: float,
    altitude: float | None = None,
    direction: float | None = None,
    utc_time: datetime | None = None,
) -> Callable[[dict[str, Any]], None]:
    """The EXIF update of :func:`write_gps` (for :func:`stage_exif`): the GPS IFD replaced."""
    tags = gps_tags(lat, lon, altitude, direction, utc_time)

    def update(data: dict[str, Any]) -> None:
        data["GPS"] = tags

    return update


def capture_time_tags(
    dt: datetime, subsec: str | None = None, offset: str | None = None
) -> dict[int, Any]:
    """DateTimeOriginal (+ SubSecTimeOriginal, + OffsetTimeOriginal) entries.

    An aware ``dt`` with no ``offset`` writes its own UTC offset.
    """
    e = piexif.ExifIFD
    tags: dict[int, Any] = {e.DateTimeOriginal: dt.strftime("%Y:%m:%d %H:%M:%S").encode()}
    if subsec is not None:
        if not subsec.isdigit():
            raise MediaError(f"cannot write SubSecTimeOriginal {subsec!r}: digits only")
        tags[e.SubSecTimeOriginal] = subsec.encode()
    own = dt.utcoffset()
    if offset is None and own is not None:
        minutes = round(own.total_seconds() / 60)
        sign = "-" if minutes < 0 else "+"
        offset = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    if offset is not None:
        _parse_offset(offset)  # refuse to write what we could not read back
        tags[e.OffsetTimeOriginal] = offset.encode()
    return tags


def write_capture_time(
    path: str | os.PathLike[str], dt: datetime, subsec: str | None = None, offset: str | None = None
) -> None:
    """Write DateTimeOriginal (+ SubSecTimeOriginal, + OffsetTimeOriginal) as given.

    A sub-second or offset not given is removed rather than left from the old time, so the
    file says exactly the time written.
    """
    tags = capture_time_tags(dt, subsec, offset)
    e = piexif.ExifIFD

    def update(data: dict[str, Any]) -> None:
        ifd = data.setdefault("Exif", {})
        for stale in (e.SubSecTimeOriginal, e.OffsetTimeOriginal):
            ifd.pop(stale, None)
        ifd.update(tags)

    write_exif(path, update)


def _description_patch(text: str) -> dict[str, dict[int, Any]]:
    return {"0th": {piexif.ImageIFD.ImageDescription: text.encode("utf-8")}}


def write_description(path: str | os.PathLike[str], text: str) -> None:
    """Write ImageDescription (UTF-8)."""
    write_exif(path, _description_patch(text))


def tagged_bytes(path: str | os.PathLike[str], description: str) -> bytes:
    """The bytes to upload: the photo with ``description`` as ImageDescription (file untouched)."""
    return updated_bytes(path, _description_patch(description))
