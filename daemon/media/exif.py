"""Read and write the EXIF metadata we need, with piexif, touching only the metadata.

Reading walks the JPEG's marker segments up to the start of the image data, so a 10 MB photo
costs a few kilobytes of I/O. Writing splices a new APP1 segment into the original byte stream,
so every other segment and the compressed image data stay byte-for-byte, and replaces the file
atomically (temp file in the same folder, fsync, rename, fsync of the folder).
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import piexif

SOI = b"\xff\xd8"
EOI = b"\xff\xd9"
EXIF_HEADER = b"Exif\x00\x00"
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_NO_LENGTH = {0x01, *range(0xD0, 0xD8)}
_TAIL = 4096  # bytes read from the end to find the EOI marker past any zero padding


class MediaError(Exception):
    """A file we cannot use; str(exc) is the one-line reason (without the file name)."""


@dataclass(frozen=True)
class ExifInfo:
    """What we read from one JPEG. Times are as the camera wrote them.

    ``capture_time`` is naive unless the file says its zone (OffsetTimeOriginal → aware) or the time
    came from the GPS stamp (always aware UTC). ``time_source`` is "exif" (DateTimeOriginal),
    "gps" (GPSDateStamp/GPSTimeStamp) or "digitized" (DateTimeDigitized / DateTime).
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


@dataclass(frozen=True)
class _Head:
    """Where things are in a JPEG's header: the Exif APP1 segment (if any) and the frame size."""

    exif_span: tuple[int, int] | None  # [start, end) of the whole APP1 segment, marker included
    exif: bytes | None  # the segment's payload, starting with EXIF_HEADER
    insert_at: int  # where a new APP1 goes when there is none (after SOI and a JFIF APP0)
    width: int | None
    height: int | None


# -- the JPEG container ---------------------------------------------------------------------------


def _read_exact(fh: Any, n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise MediaError("truncated JPEG header")
    return data


def _walk_head(fh: Any) -> _Head:
    """Walk segments from SOI to SOS reading only what we need; ``fh`` is at offset 0."""
    start = fh.read(2)
    if start != SOI:
        raise MediaError(f"not a JPEG (starts with {start[:8]!r})" if start else "empty file")
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
        (length,) = struct.unpack(">H", _read_exact(fh, 2))
        if length < 2:
            raise MediaError(f"corrupt JPEG segment length at byte {pos}")
        end = pos + 2 + length
        if kind == 0xDA or kind == 0xD9:  # start of scan / end of image: the header is over
            return _Head(exif_span, exif, insert_at, width, height)
        if kind == 0xE1 and exif is None:
            payload = _read_exact(fh, length - 2)
            if payload.startswith(EXIF_HEADER):
                exif_span, exif = (pos, end), payload
        elif kind in _SOF:
            sof = _read_exact(fh, 5)
            height, width = struct.unpack(">HH", sof[1:5])
        if kind == 0xE0 and insert_at == pos:
            insert_at = end  # keep JFIF's APP0 first, as the standard wants
        fh.seek(end)
        pos = end


def _has_eoi(fh: Any, size: int) -> bool:
    fh.seek(max(0, size - _TAIL))
    tail = fh.read(_TAIL).rstrip(b"\x00")
    return tail.endswith(EOI)


def is_complete_jpeg(path: str | os.PathLike[str]) -> bool:
    """True when the file starts with SOI and ends with EOI (a finished write, cheap to check)."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            return size >= 4 and fh.read(2) == SOI and _has_eoi(fh, size)
    except OSError:
        return False


def _open_head(path: str | os.PathLike[str]) -> tuple[_Head, int]:
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise MediaError("empty file (0 bytes)")
        head = _walk_head(fh)
        if not _has_eoi(fh, size):
            raise MediaError("truncated JPEG (no end-of-image marker)")
    return head, size


# -- reading --------------------------------------------------------------------------------------


def _load(payload: bytes | None) -> dict[str, Any]:
    if payload is None:
        return {"0th": {}, "Exif": {}, "GPS": {}, "1st": {}, "thumbnail": None}
    try:
        return piexif.load(payload)
    except Exception as exc:  # piexif raises many kinds on corrupt data
        raise MediaError(f"corrupt EXIF ({type(exc).__name__}: {exc})") from None


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


def _parse_datetime(value: Any) -> datetime | None:
    text = _text(value)
    if not text or text.startswith("0000"):
        return None
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d %H:%M"):
        try:
            return datetime.strptime(text[:19], fmt)
        except ValueError:
            continue
    return None


def _with_subsec(moment: datetime, subsec: Any) -> datetime:
    digits = "".join(c for c in (_text(subsec) or "") if c.isdigit())
    if not digits:
        return moment
    return moment.replace(microsecond=int((digits + "000000")[:6]))


def _parse_offset(value: Any) -> timezone | None:
    text = _text(value)
    if not text or len(text) < 6 or text[0] not in "+-":
        return None
    try:
        hours, minutes = int(text[1:3]), int(text[4:6])
    except ValueError:
        return None
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if text[0] == "-" else delta)


def _gps_time(gps: dict[int, Any]) -> datetime | None:
    date = _text(gps.get(piexif.GPSIFD.GPSDateStamp))
    stamp = gps.get(piexif.GPSIFD.GPSTimeStamp)
    if not date or not stamp:
        return None
    try:
        day = datetime.strptime(date[:10].replace("-", ":"), "%Y:%m:%d")
        h, m, s = (_ratio(v) for v in stamp)
    except (ValueError, ZeroDivisionError, TypeError):
        return None
    return day.replace(tzinfo=UTC) + timedelta(hours=h, minutes=m, seconds=s)


def _capture_time(data: dict[str, Any]) -> tuple[datetime | None, str | None]:
    ex, gps, zeroth = data.get("Exif", {}), data.get("GPS", {}), data.get("0th", {})
    original = _parse_datetime(ex.get(piexif.ExifIFD.DateTimeOriginal))
    if original:
        moment = _with_subsec(original, ex.get(piexif.ExifIFD.SubSecTimeOriginal))
        zone = _parse_offset(ex.get(piexif.ExifIFD.OffsetTimeOriginal))
        return (moment.replace(tzinfo=zone) if zone else moment), "exif"
    from_gps = _gps_time(gps)
    if from_gps:
        return from_gps, "gps"
    digitized = _parse_datetime(ex.get(piexif.ExifIFD.DateTimeDigitized))
    if digitized:
        return _with_subsec(digitized, ex.get(piexif.ExifIFD.SubSecTimeDigitized)), "digitized"
    plain = _parse_datetime(zeroth.get(piexif.ImageIFD.DateTime))
    return (plain, "digitized") if plain else (None, None)


def _position(gps: dict[int, Any]) -> tuple[float | None, float | None, float | None, float | None]:
    lat = lon = alt = direction = None
    try:
        if piexif.GPSIFD.GPSLatitude in gps and piexif.GPSIFD.GPSLongitude in gps:
            lat = _dms(gps[piexif.GPSIFD.GPSLatitude])
            lon = _dms(gps[piexif.GPSIFD.GPSLongitude])
            if _text(gps.get(piexif.GPSIFD.GPSLatitudeRef)) == "S":
                lat = -lat
            if _text(gps.get(piexif.GPSIFD.GPSLongitudeRef)) == "W":
                lon = -lon
        if piexif.GPSIFD.GPSAltitude in gps:
            alt = _ratio(gps[piexif.GPSIFD.GPSAltitude])
            if gps.get(piexif.GPSIFD.GPSAltitudeRef) in (1, b"\x01"):
                alt = -alt
        if piexif.GPSIFD.GPSImgDirection in gps:
            direction = _ratio(gps[piexif.GPSIFD.GPSImgDirection]) % 360.0
    except (ZeroDivisionError, TypeError, ValueError):
        raise MediaError("corrupt GPS data in EXIF") from None
    if lat is not None and not -90.0 <= lat <= 90.0:
        raise MediaError(f"GPS latitude {lat:.6f} is out of range")
    if lon is not None and not -180.0 <= lon <= 180.0:
        raise MediaError(f"GPS longitude {lon:.6f} is out of range")
    return lat, lon, alt, direction


def read_exif(path: str | os.PathLike[str]) -> ExifInfo:
    """The metadata of one JPEG; MediaError with a one-line reason when it cannot be used."""
    head, _ = _open_head(path)
    data = _load(head.exif)
    zeroth = data.get("0th", {})
    capture_time, source = _capture_time(data)
    lat, lon, alt, direction = _position(data.get("GPS", {}))
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
    )


# -- writing --------------------------------------------------------------------------------------

ExifUpdate = Callable[[dict[str, Any]], None] | dict[str, dict[int, Any]]


def _apply(data: dict[str, Any], update: ExifUpdate) -> None:
    if callable(update):
        update(data)
        return
    for ifd, tags in update.items():
        data.setdefault(ifd, {}).update(tags)


def _spliced(original: bytes, head: _Head, update: ExifUpdate) -> bytes:
    data = _load(head.exif)
    _apply(data, update)
    try:
        payload = piexif.dump(data)
    except Exception as exc:
        raise MediaError(f"cannot write EXIF ({type(exc).__name__}: {exc})") from None
    if len(payload) + 2 > 0xFFFF:
        raise MediaError("EXIF block would exceed the 64 KB a JPEG segment can hold")
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    if head.exif_span:
        start, end = head.exif_span
        return original[:start] + segment + original[end:]
    return original[: head.insert_at] + segment + original[head.insert_at :]


def _head_of_bytes(original: bytes) -> _Head:
    import io

    return _walk_head(io.BytesIO(original))


def updated_bytes(path: str | os.PathLike[str], update: ExifUpdate) -> bytes:
    """The file's bytes with the EXIF update applied, in memory (the file is not touched)."""
    with open(path, "rb") as fh:
        original = fh.read()
    if not original:
        raise MediaError("empty file (0 bytes)")
    if not original.rstrip(b"\x00").endswith(EOI):
        raise MediaError("truncated JPEG (no end-of-image marker)")
    return _spliced(original, _head_of_bytes(original), update)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace_atomically(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` over ``path``: temp file beside it, fsync, rename, fsync the folder."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".mly-", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp, os.stat(target).st_mode & 0o7777)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def write_exif(path: str | os.PathLike[str], update: ExifUpdate) -> None:
    """Apply ``update`` (a piexif dict patch or a function editing the dict) to the file."""
    replace_atomically(path, updated_bytes(path, update))


def _rational(value: float, den: int) -> tuple[int, int]:
    return (round(abs(value) * den), den)


def _dms_rational(value: float) -> tuple[tuple[int, int], ...]:
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = (value - degrees - minutes / 60) * 3600
    return ((degrees, 1), (minutes, 1), _rational(seconds, 100000))


def gps_tags(
    lat: float,
    lon: float,
    altitude: float | None = None,
    direction: float | None = None,
    utc_time: datetime | None = None,
) -> dict[int, Any]:
    """The GPS IFD entries for a position (1e-7 degree precision or better)."""
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
        t = utc_time.astimezone(UTC)
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
    """Write a position (and optionally altitude, true heading and UTC time) into the file."""
    write_exif(path, {"GPS": gps_tags(lat, lon, altitude, direction, utc_time)})


def capture_time_tags(dt: datetime, subsec: str | None, offset: str | None) -> dict[int, Any]:
    e = piexif.ExifIFD
    tags: dict[int, Any] = {e.DateTimeOriginal: dt.strftime("%Y:%m:%d %H:%M:%S").encode()}
    if subsec is not None:
        tags[e.SubSecTimeOriginal] = subsec.encode()
    if offset is not None:
        tags[e.OffsetTimeOriginal] = offset.encode()
    return tags


def write_capture_time(
    path: str | os.PathLike[str], dt: datetime, subsec: str | None = None, offset: str | None = None
) -> None:
    """Write DateTimeOriginal (+ SubSecTimeOriginal, + OffsetTimeOriginal) as given."""
    write_exif(path, {"Exif": capture_time_tags(dt, subsec, offset)})


def write_description(path: str | os.PathLike[str], text: str) -> None:
    """Write ImageDescription (UTF-8)."""
    write_exif(path, {"0th": {piexif.ImageIFD.ImageDescription: text.encode("utf-8")}})


def tagged_bytes(path: str | os.PathLike[str], description: str) -> bytes:
    """The bytes to upload: the photo with ``description`` as ImageDescription (file untouched)."""
    return updated_bytes(
        path, {"0th": {piexif.ImageIFD.ImageDescription: description.encode("utf-8")}}
    )
