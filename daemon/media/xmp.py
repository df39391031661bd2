"""The few XMP values we use when a photo's EXIF lacks them: the position, altitude and heading
Adobe's tools (Lightroom, Photoshop, Camera Raw) and GIMP keep only in XMP, and the capture time.

Only the exif namespace (http://ns.adobe.com/exif/1.0/) is read, as attributes or as simple
elements, with plain text matching: a packet is at most one 64 KiB segment, so this is
bounded, and nothing it holds can make it raise. A value that cannot be read is left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

_EXIF_NS = re.compile(rb'xmlns:([A-Za-z_][\w.-]*)\s*=\s*["\']http://ns\.adobe\.com/exif/1\.0/["\']')
# XMP writes GPS coordinates as "DDD,MM,SSk" or "DDD,MM.mmk" (k: N, S, E or W), some tools as
# plain signed degrees.
_COORDINATE = re.compile(
    r"(\d{1,3})(?:,(\d{1,2}(?:\.\d+)?))?(?:,(\d{1,2}(?:\.\d+)?))?([NSEW])", re.ASCII
)
_DATE = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,6})\d*)?)?(Z|[+-]\d\d:\d\d)?",
    re.ASCII,
)


_NAMES = (
    "GPSLatitude",
    "GPSLongitude",
    "GPSAltitude",
    "GPSAltitudeRef",
    "GPSImgDirection",
    "GPSTrack",
    "DateTimeOriginal",
)


@dataclass(frozen=True)
class XmpInfo:
    lat: float | None = None
    lon: float | None = None
    altitude: float | None = None
    direction: float | None = None
    direction_source: str | None = None
    capture_time: datetime | None = None


def _values(packet: bytes, names: tuple[str, ...]) -> dict[str, str]:
    found = _EXIF_NS.search(packet)
    if found is None:
        return {}
    prefix = re.escape(found[1].decode("ascii"))
    text = packet.decode("utf-8", errors="replace")
    out = {}
    for name in names:
        match = re.search(rf'{prefix}:{name}\s*=\s*"([^"]{{0,100}})"', text) or re.search(
            rf"<{prefix}:{name}>([^<]{{0,100}})</{prefix}:{name}>", text
        )
        if match:
            out[name] = match[1].strip()
    return out


def _number(text: str | None) -> float | None:
    if not text:
        return None
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            return float(num) / float(den) if float(den) else None
        value = float(text)
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


def _coordinate(text: str | None, limit: float) -> float | None:
    if not text:
        return None
    match = _COORDINATE.fullmatch(text.replace(" ", ""))
    if match is None:
        value = _number(text)
    else:
        degrees, minutes, seconds, ref = match.groups()
        value = int(degrees) + float(minutes or 0) / 60 + float(seconds or 0) / 3600
        if ref in "SW":
            value = -value
    return value if value is not None and -limit <= value <= limit else None


def _time(text: str | None) -> datetime | None:
    match = _DATE.fullmatch(text or "")
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0))
    except ValueError:
        return None
    if fraction:
        moment = moment.replace(microsecond=int(fraction.ljust(6, "0")))
    if zone == "Z":
        return moment.replace(tzinfo=UTC)
    if zone:
        delta = timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        if delta >= timedelta(hours=24):
            return None
        return moment.replace(tzinfo=timezone(-delta if zone[0] == "-" else delta))
    return moment if moment.year >= 1900 else None


def xmp_info(packet: bytes | None) -> XmpInfo:
    """What the packet says; every field None when it says nothing we can read."""
    if not packet:
        return XmpInfo()
    values = _values(packet, _NAMES)
    if not values:
        return XmpInfo()
    lat = _coordinate(values.get("GPSLatitude"), 90.0)
    lon = _coordinate(values.get("GPSLongitude"), 180.0)
    if lat is None or lon is None:
        lat = lon = None
    altitude = _number(values.get("GPSAltitude"))
    if altitude is not None and values.get("GPSAltitudeRef") == "1":
        altitude = -altitude
    direction, source = None, None
    for name in ("GPSImgDirection", "GPSTrack"):
        value = _number(values.get(name))
        if value is not None:
            direction, source = value % 360.0, f"XMP {name}"
            break
    moment = _time(values.get("DateTimeOriginal"))
    return XmpInfo(lat, lon, altitude, direction, source, moment)
