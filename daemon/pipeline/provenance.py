"""Where each photo's capture time, position and heading came from, counted for the summaries.

A photo can be timed by its GPS stamp, by DateTimeOriginal with its own offset, or by the
camera's clock read in a zone we assumed; placed by its EXIF GPS, by XMP or by a track; pointed
by GPSImgDirection, GPSTrack, the track or interpolation. When the map looks wrong, this line
says which of them to doubt.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from daemon.pipeline.dates import FROM_FILE
from daemon.pipeline.records import ImageRecord

_TIME = {
    "gps": "GPS time",
    "exif": "DateTimeOriginal",
    "digitized": "DateTimeDigitized",
    "datetime": "DateTime (IFD0)",  # its own name: software rewrites it on every edit
    "xmp": "XMP DateTimeOriginal",
    "fix-dates": "fix-dates",
}
_OWN_OFFSET = {
    "exif": "DateTimeOriginal+OffsetTimeOriginal",
    "digitized": "DateTimeDigitized+OffsetTimeDigitized",
    "datetime": "DateTime (IFD0)+OffsetTime",
    "xmp": "XMP DateTimeOriginal with its offset",
}
_POSITION = {"exif": "EXIF GPS", "xmp": "XMP", "gpx": "GPX track"}
_HEADING = {"gpx": "GPX track", "interpolated": "interpolated"}


def time_source(record: ImageRecord) -> str:
    """How a photo's capture time was found, in the tags' own names.

    >>> from pathlib import Path
    >>> r = ImageRecord(Path("a.jpg"), time_source="exif", zone="+02:00")
    >>> time_source(r), time_source(r.replace(zone="+02:00 (from file)"))
    ('DateTimeOriginal in the camera zone', 'DateTimeOriginal+OffsetTimeOriginal')
    """
    source = record.time_source or "unknown"
    if source in ("gps", "fix-dates") or source not in _TIME:
        return _TIME.get(source, source)
    if record.zone and record.zone.endswith(FROM_FILE):
        return _OWN_OFFSET[source]
    return f"{_TIME[source]} in the camera zone"


def position_source(record: ImageRecord) -> str:
    return _POSITION.get(record.position_source or "", record.position_source or "none")


def heading_source(record: ImageRecord) -> str:
    if record.heading is None:
        return "none"
    source = record.heading_source or "unknown"
    return _HEADING.get(source, source)


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{what} {n}" for what, n in counter.most_common())


@dataclass
class Provenance:
    """Photos counted by the source of each value, and by the zone label their time got (a
    long-running daemon keeps these counts, never a photo's own entry)."""

    time: Counter[str] = field(default_factory=Counter)
    position: Counter[str] = field(default_factory=Counter)
    heading: Counter[str] = field(default_factory=Counter)
    zones: Counter[str] = field(default_factory=Counter)

    @classmethod
    def of(cls, records: Iterable[ImageRecord]) -> Provenance:
        counted = cls()
        for record in records:
            counted.add(record)
        return counted

    def add(self, record: ImageRecord) -> None:
        if record.capture_time is not None:
            self.time[time_source(record)] += 1
        if record.zone:
            self.zones[record.zone] += 1
        if record.has_position:
            self.position[position_source(record)] += 1
            self.heading[heading_source(record)] += 1

    def merge(self, other: Provenance) -> None:
        self.time.update(other.time)
        self.position.update(other.position)
        self.heading.update(other.heading)
        self.zones.update(other.zones)

    def line(self) -> str | None:
        """``capture time: GPS time 40, ...; position: EXIF GPS 50, ...; heading: ...``, or None
        when nothing was counted.

        >>> from pathlib import Path
        >>> from datetime import UTC, datetime
        >>> r = ImageRecord(Path("a.jpg"), datetime(2024, 6, 1, tzinfo=UTC), 52.5, 13.4,
        ...                 time_source="gps", position_source="gpx", heading=90.0,
        ...                 heading_source="gpx")
        >>> Provenance.of([r, r.replace(heading_source="GPSTrack")]).line()
        'capture time: GPS time 2; position: GPX track 2; heading: GPX track 1, GPSTrack 1'
        """
        parts = [
            f"{name}: {_counts(counter)}"
            for name, counter in (
                ("capture time", self.time),
                ("position", self.position),
                ("heading", self.heading),
            )
            if counter
        ]
        return "; ".join(parts) or None

    def as_dict(self) -> dict[str, dict[str, int]]:
        """For the logs: ``{"capture_time": {...}, "position": {...}, "heading": {...}}``."""
        return {
            "capture_time": dict(self.time),
            "position": dict(self.position),
            "heading": dict(self.heading),
        }
