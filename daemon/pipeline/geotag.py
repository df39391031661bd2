"""Positions from a GPX track: interpolate at each photo's true time, never guess outside it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from daemon.core.geo import normalize_deg
from daemon.pipeline.records import NO_TIME, OUTSIDE_TRACK, ImageRecord


class TrackLike(Protocol):
    """What geotagging needs of a track (``daemon.media.gpx.Track`` is one)."""

    def position_at(self, t: float, max_gap: float = 60.0, max_extrapolation: float = 1.0) -> Any:
        """Position (``lat``, ``lon``, ``ele``, ``bearing``) at POSIX time t, or None."""
        ...


def _fmt(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def track_span(track: Any) -> tuple[float, float] | None:
    """First and last POSIX time of the track, if it says."""
    for first, last in (("start", "end"), ("start_time", "end_time")):
        a, b = getattr(track, first, None), getattr(track, last, None)
        if a is not None and b is not None:
            return _seconds(a), _seconds(b)
    times = getattr(track, "times", None)
    if times is not None and len(times):
        return _seconds(times[0]), _seconds(times[-1])
    return None


def _seconds(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def true_time(record: ImageRecord, time_offset_s: float) -> datetime:
    """The photo's true UTC time: camera time minus the offset (positive = camera clock ahead).

    A time read from the GPS stamp is already true and is not shifted.

    >>> from pathlib import Path
    >>> r = ImageRecord(Path("a"), datetime(2024, 1, 1, 12, 0, 10, tzinfo=UTC), time_source="exif")
    >>> true_time(r, 10.0).time(), true_time(r.replace(time_source="gps"), 10.0).time()
    (datetime.time(12, 0), datetime.time(12, 0, 10))
    """
    assert record.capture_time is not None
    if record.time_source == "gps":
        return record.capture_time
    return record.capture_time - timedelta(seconds=time_offset_s)


def correct_times(records: Sequence[ImageRecord], time_offset_s: float) -> list[ImageRecord]:
    """Every usable photo's capture time set to its :func:`true_time`."""
    if not time_offset_s:
        return list(records)
    return [
        r.replace(capture_time=true_time(r, time_offset_s)) if r.ok and r.capture_time else r
        for r in records
    ]


def _no_position(t: float, track: TrackLike, shifted: str, outside: str) -> str:
    """Why a photo at POSIX time ``t`` has no position: past a log still being written (which
    will place it), or ``outside`` what the track covers."""
    growing_past = getattr(track, "growing_past", None)
    last = growing_past(t) if growing_past is not None else None
    if last is None:
        return f"no track position at {_fmt(t)}{shifted}; {outside}"
    return (
        f"no track position at {_fmt(t)}{shifted} yet: the GPS log is still being written, "
        f"its last fix so far at {_fmt(last)}"
    )


def geotag(
    records: Sequence[ImageRecord],
    track: TrackLike,
    time_offset_s: float = 0.0,
    bearing_offset: float = 0.0,
    max_gap: float = 60.0,
    overwrite: bool = True,
) -> list[ImageRecord]:
    """Give each usable photo the track's position, altitude and bearing (plus
    ``bearing_offset``) at its true time (see :func:`true_time`), which also becomes its capture
    time.

    A photo whose time falls outside the track, or in a gap longer than ``max_gap`` seconds, is
    set aside as OUTSIDE_TRACK with the time used and the track's span, unless it already has a
    position from its own EXIF (that one is kept). ``overwrite=False`` leaves EXIF positions
    alone altogether.
    """
    span = track_span(track)
    covers = f"the track covers {_fmt(span[0])} to {_fmt(span[1])}" if span else "no track time"
    shifted = f" (camera time minus {time_offset_s:g} s)" if time_offset_s else ""
    outside = f"{covers}, with gaps of more than {max_gap:g} s left out"
    out = []
    for record in correct_times(records, time_offset_s):
        if not record.ok:
            out.append(record)
            continue
        if record.capture_time is None:
            out.append(record.set_aside(NO_TIME, "no capture time to look up in the track"))
            continue
        if record.has_position and not overwrite:
            out.append(record)
            continue
        pos = track.position_at(record.capture_time.timestamp(), max_gap=max_gap)
        if pos is None:
            if record.has_position and record.position_source in ("exif", "xmp"):
                out.append(record)
                continue
            why = _no_position(record.capture_time.timestamp(), track, shifted, outside)
            out.append(record.set_aside(OUTSIDE_TRACK, why))
            continue
        heading, heading_source = record.heading, record.heading_source
        if pos.bearing is not None:
            heading, heading_source = normalize_deg(pos.bearing + bearing_offset), "gpx"
        out.append(
            record.replace(
                lat=pos.lat,
                lon=pos.lon,
                altitude=pos.ele if pos.ele is not None else record.altitude,
                heading=heading,
                heading_source=heading_source,
                position_source="gpx",
            )
        )
    return out
