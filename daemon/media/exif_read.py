"""Reading the EXIF values we use: capture time, GPS position and stamp, orientation, make,
model and description, from the Exif APP1 segment the container walk found.

Only the header is read (see :mod:`daemon.media.jpeg`) and only the entries we use are decoded
(see :mod:`daemon.media.tiff`). A value that is there but cannot be understood is a
:class:`MediaError` with a one-line reason, a value that is missing is None, and an entry we do
not use cannot stop a photo however damaged it is. Nothing else is ever raised.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from daemon.media.errors import MediaError
from daemon.media.jpeg import EXIF_HEADER, JpegHead, parse_head, read_head
from daemon.media.tiff import Entry, Ifd, Tiff
from daemon.media.xmp import XmpInfo, xmp_info

# Tags we read (EXIF 2.32 numbers).
MAKE, MODEL, ORIENTATION, DESCRIPTION, DATETIME = 0x010F, 0x0110, 0x0112, 0x010E, 0x0132
ORIGINAL, DIGITIZED = 0x9003, 0x9004
SUBSEC, SUBSEC_ORIGINAL, SUBSEC_DIGITIZED = 0x9290, 0x9291, 0x9292
OFFSET, OFFSET_ORIGINAL, OFFSET_DIGITIZED = 0x9010, 0x9011, 0x9012
LAT_REF, LAT, LON_REF, LON, ALT_REF, ALT = 1, 2, 3, 4, 5, 6
GPS_TIME, TRACK, IMG_DIRECTION, GPS_DATE = 7, 15, 17, 29
_GPS_EPOCH = datetime(1980, 1, 6, tzinfo=UTC)  # a GPS stamp before this is a clock never set
_OFFSET = re.compile(r"([+-])(\d\d)(?::?(\d\d))?", re.ASCII)
_MIN_YEAR = 1900  # a camera time before this cannot be a photo's (and year 1 + a zone overflows)


@dataclass(frozen=True)
class ExifInfo:
    """What we read from one JPEG. Times are as the camera wrote them.

    ``capture_time`` is naive unless the file says its zone (OffsetTime* → aware) or the time came
    from the GPS stamp (always aware UTC). ``time_source`` is "gps" (GPSDateStamp/GPSTimeStamp,
    taken first as the official uploader does), "exif" (DateTimeOriginal), "digitized"
    (DateTimeDigitized), "datetime" (IFD0's DateTime, often the time of the last edit) or "xmp". ``gps_time`` is the GPS stamp (aware UTC) whatever
    the capture time came from.
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
    direction_source: str | None = None  # "GPSImgDirection", "GPSTrack", "XMP GPSImgDirection", ...
    position_source: str | None = None  # "exif", or "xmp" (Adobe-edited files)


class _Ifds:
    """The IFDs of one block with strict readers for the entries we use: a value that runs
    outside the block is a MediaError, one of a type that cannot hold it counts as missing."""

    def __init__(self, payload: bytes | None) -> None:
        self.tiff: Tiff | None = None
        self.ifd0: Ifd | None = None
        self.exif: Ifd | None = None
        self.gps: Ifd | None = None
        if payload is None:
            return
        tiff = self.tiff = Tiff(payload[len(EXIF_HEADER) :])
        self.ifd0 = tiff.ifd0()
        self.exif, bad_exif = tiff.sub_ifd(self.ifd0, "Exif")
        self.gps, bad_gps = tiff.sub_ifd(self.ifd0, "GPS")
        if bad_exif or bad_gps:
            raise MediaError(bad_exif or bad_gps or "")

    def _entry(self, ifd: Ifd | None, tag: int) -> Entry | None:
        if ifd is None or self.tiff is None:
            return None
        entry = ifd.get(tag)
        if entry is not None and entry.size is not None and self.tiff.raw(entry) is None:
            raise MediaError(f"corrupt EXIF (tag {tag} claims {entry.size:,} bytes)")
        return entry

    def text(self, ifd: Ifd | None, tag: int, strip: bool = True) -> str | None:
        entry = self._entry(ifd, tag)
        raw = None if entry is None or self.tiff is None else self.tiff.text_bytes(entry)
        if raw is None:
            return None
        value = raw.decode("utf-8", errors="replace")
        return (value.strip() if strip else value) or None

    def int_value(self, ifd: Ifd | None, tag: int) -> int | None:
        entry = self._entry(ifd, tag)
        values = None if entry is None or self.tiff is None else self.tiff.ints(entry)
        return values[0] if values else None

    def ratios(self, ifd: Ifd | None, tag: int) -> tuple[tuple[int, int], ...] | None:
        entry = self._entry(ifd, tag)
        if entry is None or self.tiff is None:
            return None
        pairs = self.tiff.rationals(entry)
        if pairs is None:
            floats = self.tiff.floats(entry)
            pairs = None if floats is None else tuple(_float_pair(f) for f in floats)
        return pairs or None


def _float_pair(value: float) -> tuple[int, int]:
    if value != value or value in (float("inf"), float("-inf")):
        return (0, 0)
    return (round(value * 1_000_000), 1_000_000)


def _ratio(pair: tuple[int, int]) -> float:
    num, den = pair
    if den == 0:
        raise ZeroDivisionError
    return num / den


def _dms(pairs: tuple[tuple[int, int], ...]) -> float:
    """Degrees, minutes, seconds (any of them may be missing); 0/0 counts as zero."""
    total = 0.0
    for pair, scale in zip(pairs[:3], (1, 60, 3600), strict=False):
        if pair != (0, 0):
            total += _ratio(pair) / scale
    return total


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = str(value).replace("\x00", "").strip()
    return text or None


def _unset(text: str) -> bool:
    """Cameras without a clock write zeros or blanks ("0000:00:00 00:00:00", "    :  :  ")."""
    return not text.strip(" :0-")


def _parse_datetime(text: str | None, tag: str) -> datetime | None:
    """None when the tag is missing or blank; MediaError when it holds something else. A
    fraction written after the seconds ("12:00:01.250") is kept."""
    if not text or _unset(text):
        return None
    moment = _exif_datetime(text)
    if moment is None:
        for fmt in (
            "%Y:%m:%d %H:%M:%S",
            "%Y-%m-%d %H:%M:%S",
            "%Y:%m:%d %H:%M",
            "%Y-%m-%dT%H:%M:%S",
        ):
            try:
                moment = datetime.strptime(text[:19], fmt)
                break
            except ValueError:
                continue
        else:
            raise MediaError(f"bad {tag} date {text[:40]!r}")
    if moment.year < _MIN_YEAR:
        raise MediaError(f"bad {tag} date {text[:40]!r} (year {moment.year})")
    if text[19:20] == ".":
        moment = _with_subsec(moment, text[20:26])
    return moment


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


def _with_subsec(moment: datetime, subsec: str | None) -> datetime:
    """The decimal fraction of a second (its leading ASCII digits; blanks read as zeros, as
    some cameras pad it) added to ``moment``."""
    digits = ""
    for char in (subsec or "").rstrip(" ").replace(" ", "0"):
        if not ("0" <= char <= "9"):
            break
        digits += char
    if not digits:
        return moment
    return moment.replace(microsecond=int((digits + "000000")[:6]))


def parse_offset(value: Any, tag: str = "OffsetTimeOriginal") -> timezone | None:
    """ "+02:00" (or "+0200", "+02", "Z") → a zone; None when missing or blank; MediaError for
    anything else."""
    text = _text(value)
    if not text or _unset(text):
        return None
    if text == "Z":
        return UTC
    match = _OFFSET.fullmatch(text)
    if match is None or int(match[2]) > 23 or int(match[3] or 0) > 59:
        raise MediaError(f"bad {tag} {text[:20]!r}")
    delta = timedelta(hours=int(match[2]), minutes=int(match[3] or 0))
    return timezone(-delta if match[1] == "-" else delta)


def _zoned(moment: datetime, zone: timezone | None, tag: str) -> datetime:
    if zone is None:
        return moment
    aware = moment.replace(tzinfo=zone)
    try:
        aware.astimezone(UTC)
    except OverflowError:
        raise MediaError(f"bad {tag} date {moment.isoformat()} (out of range)") from None
    return aware


def _gps_time(ifds: _Ifds) -> datetime | None:
    """The GPS stamp as an aware UTC time; None when missing, unset or unreadable (the camera
    time is then used instead)."""
    date = ifds.text(ifds.gps, GPS_DATE)
    stamp = ifds.ratios(ifds.gps, GPS_TIME)
    if not date or not stamp or len(stamp) < 3 or _unset(date):
        return None
    try:
        day = datetime.strptime(date[:10].replace("-", ":"), "%Y:%m:%d").replace(tzinfo=UTC)
        h, m, s = (_ratio(v) for v in stamp[:3])
        if not (0 <= h < 24 and 0 <= m < 60 and 0 <= s < 61):
            raise ValueError
        moment = day + timedelta(hours=h, minutes=m, seconds=s)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return moment if moment >= _GPS_EPOCH else None


_TIME_TAGS = (
    (ORIGINAL, SUBSEC_ORIGINAL, OFFSET_ORIGINAL, "DateTimeOriginal", "exif"),
    (DIGITIZED, SUBSEC_DIGITIZED, OFFSET_DIGITIZED, "DateTimeDigitized", "digitized"),
    (DATETIME, SUBSEC, OFFSET, "DateTime", "datetime"),
)


def _camera_time(ifds: _Ifds) -> tuple[datetime | None, str | None]:
    """The camera's clock: DateTimeOriginal, then DateTimeDigitized, then DateTime, each with
    its own sub-second and offset tags."""
    for tag, subsec_tag, offset_tag, name, source in _TIME_TAGS:
        where = ifds.ifd0 if tag == DATETIME else ifds.exif
        moment = _parse_datetime(ifds.text(where, tag), name)
        if moment is None:
            continue
        moment = _with_subsec(moment, ifds.text(ifds.exif, subsec_tag, strip=False))
        offset_name = "OffsetTime" + name.removeprefix("DateTime")
        zone = parse_offset(ifds.text(ifds.exif, offset_tag), offset_name)
        return _zoned(moment, zone, name), source
    return None, None


def _capture_time(
    ifds: _Ifds, gps_time: datetime | None, xmp: XmpInfo
) -> tuple[datetime | None, str | None]:
    """The best capture time, as the official uploader takes it: the GPS stamp (the satellites'
    clock, always UTC), else the camera's (see :func:`_camera_time`), else XMP's
    DateTimeOriginal. A GPS stamp of whole seconds takes the camera's fraction when the
    camera's clock agrees with it to the second (modulo the quarter hours of a zone)."""
    try:
        camera, source = _camera_time(ifds)
    except MediaError:
        if gps_time is None:
            raise
        camera = None  # a damaged camera time does not matter beside a GPS stamp
    if gps_time is not None:
        if camera is not None and camera.microsecond and not gps_time.microsecond:
            cam_s, gps_s = (
                camera.minute * 60 + camera.second,
                gps_time.minute * 60 + gps_time.second,
            )
            if cam_s % 900 == gps_s % 900:
                return gps_time.replace(microsecond=camera.microsecond), "gps"
        return gps_time, "gps"
    if camera is not None:
        return camera, source
    if xmp.capture_time is not None:
        return xmp.capture_time, "xmp"
    return None, None


def _position(ifds: _Ifds) -> tuple[float | None, float | None, float | None]:
    lat = lon = alt = None
    lat_dms, lon_dms = ifds.ratios(ifds.gps, LAT), ifds.ratios(ifds.gps, LON)
    if lat_dms and lon_dms:
        try:
            lat, lon = _dms(lat_dms), _dms(lon_dms)
        except ZeroDivisionError:
            raise MediaError("corrupt GPS data in EXIF") from None
        if (ifds.text(ifds.gps, LAT_REF) or "").upper().startswith("S"):
            lat = -lat
        if (ifds.text(ifds.gps, LON_REF) or "").upper().startswith("W"):
            lon = -lon
        if not -90.0 <= lat <= 90.0:
            raise MediaError(f"GPS latitude {lat:.6f} is out of range")
        if not -180.0 <= lon <= 180.0:
            raise MediaError(f"GPS longitude {lon:.6f} is out of range")
    height = ifds.ratios(ifds.gps, ALT)
    if height:
        try:
            alt = _ratio(height[0])
        except ZeroDivisionError:
            alt = None  # an unreadable altitude does not stop the photo
        if alt is not None and ifds.int_value(ifds.gps, ALT_REF) == 1:
            alt = -alt
    return lat, lon, alt


def _direction(ifds: _Ifds) -> tuple[float | None, str | None]:
    """GPSImgDirection, else GPSTrack (the direction of travel), in degrees [0, 360)."""
    for tag, name in ((IMG_DIRECTION, "GPSImgDirection"), (TRACK, "GPSTrack")):
        value = ifds.ratios(ifds.gps, tag)
        if not value:
            continue
        try:
            return _ratio(value[0]) % 360.0, name
        except ZeroDivisionError:
            continue
    return None, None


def exif_info(head: JpegHead) -> ExifInfo:
    """The metadata in a parsed header; MediaError when it cannot be used. XMP fills in the
    position, altitude, heading and time that EXIF lacks (Adobe's tools keep them there)."""
    ifds = _Ifds(head.exif)
    xmp = xmp_info(head.xmp)
    gps_time = _gps_time(ifds)
    capture_time, source = _capture_time(ifds, gps_time, xmp)
    lat, lon, alt = _position(ifds)
    position_source = "exif" if lat is not None else None
    if lat is None and xmp.lat is not None:
        lat, lon, position_source = xmp.lat, xmp.lon, "xmp"
    if alt is None and position_source == "xmp":
        alt = xmp.altitude
    direction, direction_source = _direction(ifds)
    if direction is None and xmp.direction is not None:
        direction, direction_source = xmp.direction, xmp.direction_source
    orientation = ifds.int_value(ifds.ifd0, ORIENTATION)
    return ExifInfo(
        capture_time=capture_time,
        time_source=source,
        lat=lat,
        lon=lon,
        altitude=alt,
        direction=direction,
        orientation=orientation if orientation is not None else 1,
        make=ifds.text(ifds.ifd0, MAKE),
        model=ifds.text(ifds.ifd0, MODEL),
        description=ifds.text(ifds.ifd0, DESCRIPTION),
        width=head.width,
        height=head.height,
        gps_time=gps_time,
        direction_source=direction_source,
        position_source=position_source,
    )


def read_exif(path: str | os.PathLike[str]) -> ExifInfo:
    """The metadata of one JPEG; MediaError with a one-line reason when it cannot be used."""
    return exif_info(read_head(path))


def exif_info_of(data: bytes) -> ExifInfo:
    """:func:`read_exif` for a whole JPEG held in memory."""
    return exif_info(parse_head(data))
