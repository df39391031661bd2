"""GPX tracks as sorted arrays, and positions interpolated by time.

Every track, segment and point of one or more files goes into four parallel arrays (time as
POSIX seconds UTC, lat, lon, elevation), sorted by time: 32 bytes a point, searched with bisect.
Interpolation never bridges a gap longer than ``max_gap`` seconds and never extrapolates more
than ``max_extrapolation`` seconds past either end: a photo there has no position, not a guess.
"""

from __future__ import annotations

import math
import os
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import gpxpy
import gpxpy.gpx

from daemon.geo import bearing_deg, distance_m

MIN_BEARING_BASE_M = 1.0  # two fixes closer than this give no usable bearing


class GpxError(Exception):
    """A GPX file we cannot use; str(exc) is the one-line reason."""


@dataclass(frozen=True)
class TrackPosition:
    lat: float
    lon: float
    ele: float | None
    bearing: float | None


@dataclass
class Track:
    """Time-sorted points; ``eles`` holds NaN where a point has no elevation."""

    times: array = field(default_factory=lambda: array("d"))
    lats: array = field(default_factory=lambda: array("d"))
    lons: array = field(default_factory=lambda: array("d"))
    eles: array = field(default_factory=lambda: array("d"))

    @classmethod
    def from_points(
        cls, points: Iterable[tuple[float | datetime, float, float, float | None]]
    ) -> Track:
        """A track from (time, lat, lon, ele) tuples in any order; equal times keep the first."""
        rows = sorted(
            (
                (_seconds(t), lat, lon, math.nan if ele is None else ele)
                for t, lat, lon, ele in points
            ),
            key=lambda r: r[0],
        )
        track = cls()
        last = None
        for t, lat, lon, ele in rows:
            if t == last:
                continue
            last = t
            track.times.append(t)
            track.lats.append(lat)
            track.lons.append(lon)
            track.eles.append(ele)
        return track

    def __len__(self) -> int:
        return len(self.times)

    @property
    def start(self) -> float:
        return self.times[0]

    @property
    def end(self) -> float:
        return self.times[-1]

    def position_at(
        self, t: float, max_gap: float = 60.0, max_extrapolation: float = 1.0
    ) -> TrackPosition | None:
        """Where the track was at POSIX time ``t``, or None (outside the track or in a gap)."""
        n = len(self.times)
        if (
            n == 0
            or t < self.times[0] - max_extrapolation
            or t > self.times[-1] + max_extrapolation
        ):
            return None
        i = bisect_left(self.times, t)
        if i < n and self.times[i] == t:
            return self._at_index(i, max_gap)
        if i == 0 or i == n:  # just past an end, within the extrapolation limit
            j = 0 if i == 0 else n - 1
            return self._at_index(j, max_gap)
        a, b = i - 1, i
        if self.times[b] - self.times[a] > max_gap:
            return None
        f = (t - self.times[a]) / (self.times[b] - self.times[a])
        lat = self.lats[a] + (self.lats[b] - self.lats[a]) * f
        lon = self.lons[a] + (self.lons[b] - self.lons[a]) * f
        ea, eb = self.eles[a], self.eles[b]
        ele = None if math.isnan(ea) or math.isnan(eb) else ea + (eb - ea) * f
        return TrackPosition(lat, lon, ele, self._bearing(a, b, max_gap))

    def _at_index(self, i: int, max_gap: float) -> TrackPosition:
        ele = None if math.isnan(self.eles[i]) else self.eles[i]
        a, b = (i, i + 1) if i + 1 < len(self.times) else (i - 1, i)
        bearing = self._bearing(a, b, max_gap) if a >= 0 else None
        return TrackPosition(self.lats[i], self.lons[i], ele, bearing)

    def _bearing(self, a: int, b: int, max_gap: float) -> float | None:
        """Bearing of travel between points a < b, looking outward while they are too close."""
        t0, t1 = self.times[a], self.times[b]
        while (
            distance_m(self.lats[a], self.lons[a], self.lats[b], self.lons[b]) < MIN_BEARING_BASE_M
        ):
            moved = False
            if a > 0 and t0 - self.times[a - 1] <= max_gap:
                a -= 1
                moved = True
            if b + 1 < len(self.times) and self.times[b + 1] - t1 <= max_gap:
                b += 1
                moved = True
            if not moved or self.times[b] - self.times[a] > 2 * max_gap:
                return None
        return bearing_deg(self.lats[a], self.lons[a], self.lats[b], self.lons[b])


def _seconds(t: float | datetime) -> float:
    if isinstance(t, datetime):
        return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()
    return float(t)


def _points(parsed: gpxpy.gpx.GPX) -> Iterable[gpxpy.gpx.GPXTrackPoint]:
    for trk in parsed.tracks:
        for seg in trk.segments:
            yield from seg.points
    for route in parsed.routes:
        yield from route.points


def load_gpx(path: str | os.PathLike[str]) -> Track:
    """One GPX file as a track; GpxError when it is not GPX, has no points, or no times."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            parsed = gpxpy.parse(fh)
    except OSError:
        raise
    except Exception as exc:  # gpxpy raises its own and XML errors
        raise GpxError(
            f"not a GPX/XML file: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    rows = []
    untimed = 0
    for p in _points(parsed):
        if p.time is None:
            untimed += 1
            continue
        rows.append((p.time, p.latitude, p.longitude, p.elevation))
    if not rows:
        raise GpxError("GPX points have no time" if untimed else "GPX has no track points")
    return Track.from_points(rows)


def merge(tracks: Sequence[Track]) -> Track:
    """One track from several (equal timestamps keep the first file's point)."""
    rows = []
    for tr in tracks:
        rows += zip(
            tr.times, tr.lats, tr.lons, (None if math.isnan(e) else e for e in tr.eles), strict=True
        )
    return Track.from_points(rows)


def load_gpx_files(paths: Iterable[str | os.PathLike[str]]) -> Track:
    """Several GPX files merged into one track; the first bad file raises GpxError naming it."""
    tracks = []
    for path in paths:
        try:
            tracks.append(load_gpx(path))
        except GpxError as exc:
            raise GpxError(f"{path}: {exc}") from None
    if not tracks:
        raise GpxError("no GPX files given")
    return tracks[0] if len(tracks) == 1 else merge(tracks)
