"""Read and write the EXIF metadata we need, with piexif, touching only the metadata."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


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
