"""The EXIF entries we write, built from plain values: GPS position, capture time, description.

An :data:`ExifUpdate` is either a patch ``{"0th": {tag: value}, "GPS": {...}}`` merged into the
existing IFDs, or a function that edits piexif's dict in place (to delete tags). Building one
touches no file: :mod:`daemon.media.exif_write` applies it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import piexif

from daemon.media.errors import MediaError
from daemon.media.exif_read import parse_offset

ExifUpdate = Callable[[dict[str, Any]], None] | dict[str, dict[int, Any]]


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


def gps_update(
    lat: float,
    lon: float,
    altitude: float | None = None,
    direction: float | None = None,
    utc_time: datetime | None = None,
) -> Callable[[dict[str, Any]], None]:
    """The EXIF update writing :func:`gps_tags`: the GPS IFD replaced, so that entries left
    from before and not given now (an old altitude, heading or stamp) are removed."""
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
        parse_offset(offset)  # refuse to write what we could not read back
        tags[e.OffsetTimeOriginal] = offset.encode()
    return tags


def capture_time_update(
    dt: datetime, subsec: str | None = None, offset: str | None = None
) -> Callable[[dict[str, Any]], None]:
    """The EXIF update writing :func:`capture_time_tags`: a sub-second or offset not given is
    removed rather than left from the old time, so the file says exactly the time written.

    A GPS time stamp is removed too: it would win over the time written (ours, exiftool and
    mapillary_tools read it first), and after a new capture time it is stale (often one that
    geotag wrote from the old, wrong time). The position is kept."""
    tags = capture_time_tags(dt, subsec, offset)
    e, g = piexif.ExifIFD, piexif.GPSIFD

    def update(data: dict[str, Any]) -> None:
        ifd = data.setdefault("Exif", {})
        for stale in (e.SubSecTimeOriginal, e.OffsetTimeOriginal):
            ifd.pop(stale, None)
        ifd.update(tags)
        for stale in (g.GPSDateStamp, g.GPSTimeStamp):
            data.get("GPS", {}).pop(stale, None)

    return update


def description_patch(text: str) -> dict[str, dict[int, Any]]:
    """The EXIF update writing ImageDescription (UTF-8)."""
    return {"0th": {piexif.ImageIFD.ImageDescription: text.encode("utf-8")}}
