"""The records the pipeline stages pass along: plain dataclasses, no I/O.

A stage takes a list of ImageRecord and returns a new list; an image that cannot go on gets an
``error`` (a reason that travels to the summary) instead of raising.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

# Error types, named as mapillary_tools names them in its description file where one exists.
DUPLICATE = "MapillaryDuplicationError"
NO_TIME = "MapillaryGeoTaggingError"  # same family as mapillary_tools: no usable capture time
NO_POSITION = "MapillaryGPXEmptyError"
OUTSIDE_TRACK = "MapillaryOutsideGPXTrackError"
BAD_METADATA = "MapillaryMetadataValidationError"
BAD_FILE = "MapillaryInvalidFileError"
IMPOSSIBLE_SPEED = "MapillaryCaptureSpeedTooFastError"


@dataclass(frozen=True)
class ImageError:
    """Why an image was set aside. ``type`` is machine-readable, ``message`` for humans."""

    type: str
    message: str


@dataclass
class ImageRecord:
    """One photo as the pipeline sees it.

    ``capture_time`` is always timezone-aware (UTC after the dates stage); positions are WGS84
    degrees; ``heading`` is degrees clockwise from true north.
    """

    path: Path
    capture_time: datetime | None = None
    lat: float | None = None
    lon: float | None = None
    altitude: float | None = None
    heading: float | None = None
    orientation: int = 1
    make: str | None = None
    model: str | None = None
    time_source: str | None = None  # "exif", "gps", "digitized", "datetime", "fix-dates", ...
    zone: str | None = None  # the zone assumed for a naive EXIF time, e.g. "+02:00"
    position_source: str | None = None  # "exif", "xmp" (Adobe-edited files) or "gpx"
    heading_source: str | None = None  # "GPSImgDirection", "GPSTrack", "gpx", "interpolated"
    sequence: str | None = None  # sequence UUID once split
    content_hash: str | None = None
    error: ImageError | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def filename(self) -> str:
        return self.path.name

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def has_position(self) -> bool:
        return self.lat is not None and self.lon is not None

    @property
    def position(self) -> tuple[float, float]:
        """(lat, lon), for stages that run only on positioned records."""
        if self.lat is None or self.lon is None:
            raise ValueError(f"{self.filename} has no position")
        return self.lat, self.lon

    @property
    def reason(self) -> str:
        """Why the record was set aside ('' if it was not)."""
        return self.error.message if self.error else ""

    @property
    def time(self) -> datetime:
        """The capture time, for stages that run only on timed records."""
        if self.capture_time is None:
            raise ValueError(f"{self.filename} has no capture time")
        return self.capture_time

    def replace(self, **changes: object) -> ImageRecord:
        """A copy with ``changes`` (like dataclasses.replace, which is several times slower:
        the stages copy every record a few times, 20,000 photos a run)."""
        unknown = changes.keys() - _FIELDS
        if unknown:
            raise TypeError(f"ImageRecord has no field {', '.join(sorted(unknown))}")
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__, **changes)
        return new

    def set_aside(self, type_: str, message: str) -> ImageRecord:
        return self.replace(error=ImageError(type_, message))


_FIELDS = frozenset(f.name for f in dataclasses.fields(ImageRecord))
