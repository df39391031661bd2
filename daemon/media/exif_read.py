"""Reading the EXIF values we use: capture time, GPS position and stamp, orientation, make,
model and description, from the Exif APP1 segment the container walk found.

Only the header is read (see :mod:`daemon.media.jpeg`); a value that is there but cannot be
understood is a :class:`MediaError` with a one-line reason, a value that is missing is None.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import piexif

from daemon.media.errors import MediaError, one_line
from daemon.media.jpeg import EXIF_HEADER, read_head


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
    _check_tiff(payload[len(EXIF_HEADER) :])
    try:
        return piexif.load(payload)
    except Exception as exc:  # piexif raises many kinds on corrupt data
        raise MediaError(f"corrupt EXIF ({one_line(exc)})") from None


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
    year, month, day, hour, minute, second = (int(f) for f in fields)
    try:
        return datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None  # strptime then says what is wrong with it


def _with_subsec(moment: datetime, subsec: Any) -> datetime:
    digits = "".join(c for c in (_text(subsec) or "") if c.isdigit())
    if not digits:
        return moment
    return moment.replace(microsecond=int((digits + "000000")[:6]))


def parse_offset(value: Any) -> timezone | None:
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
        zone = parse_offset(ex.get(e.OffsetTimeOriginal))
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
    head = read_head(path)
    data = load_exif(head.exif)
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
