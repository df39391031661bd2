"""GPX tracks as sorted arrays, and positions interpolated by time.

Every track, segment and route point of one or more files goes into four parallel arrays (time
as POSIX seconds UTC, lat, lon, elevation), sorted by time: 32 bytes a point, searched with
bisect. Interpolation never bridges a gap longer than ``max_gap`` seconds and never extrapolates
more than ``max_extrapolation`` seconds past either end: a photo there has no position, not a
guess.

Files are read with a streaming XML parser rather than gpxpy's object model: a day's 1 Hz log
loads several times faster in a fraction of the memory (which matters on a Raspberry Pi), and a
log cut off by a power loss keeps every point written before the cut.
"""

from __future__ import annotations

import contextlib
import math
import os
import xml.etree.ElementTree as ET
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from daemon.core.files import open_regular
from daemon.core.geo import bearing_deg, distance_m

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
    truncated: bool = False  # the file ended mid-write; the points are those before the cut

    @classmethod
    def from_points(
        cls, points: Iterable[tuple[float | datetime, float, float, float | None]]
    ) -> Track:
        """A track from (time, lat, lon, ele) tuples in any order; equal times keep the first.

        Times are POSIX seconds or datetimes (naive ones are UTC); ele may be None.
        """
        track = cls()
        for t, lat, lon, ele in points:
            track.append(_seconds(t), lat, lon, math.nan if ele is None else ele)
        return _sorted(track)

    def append(self, t: float, lat: float, lon: float, ele: float) -> None:
        """One point at the end (``ele`` NaN for none); the caller keeps the order."""
        self.times.append(t)
        self.lats.append(lat)
        self.lons.append(lon)
        self.eles.append(ele)

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
        dlon = self.lons[b] - self.lons[a]
        if abs(dlon) > 180.0:  # the short way across the antimeridian, not round the globe
            dlon -= math.copysign(360.0, dlon)
        lon = self.lons[a] + dlon * f
        if not -180.0 <= lon <= 180.0:
            lon -= math.copysign(360.0, lon)
        ea, eb = self.eles[a], self.eles[b]
        ele = None if math.isnan(ea) or math.isnan(eb) else ea + (eb - ea) * f
        return TrackPosition(lat, lon, ele, self._bearing(a, b, max_gap))

    def _at_index(self, i: int, max_gap: float) -> TrackPosition:
        ele = None if math.isnan(self.eles[i]) else self.eles[i]
        return TrackPosition(self.lats[i], self.lons[i], ele, self._bearing_at(i, max_gap))

    def _bearing_at(self, i: int, max_gap: float) -> float | None:
        """Bearing at fix i: towards the next fix, or from the previous one, never over a gap."""
        n = len(self.times)
        if i + 1 < n and self.times[i + 1] - self.times[i] <= max_gap:
            return self._bearing(i, i + 1, max_gap)
        if i > 0 and self.times[i] - self.times[i - 1] <= max_gap:
            return self._bearing(i - 1, i, max_gap)
        return None

    def _bearing(self, a: int, b: int, max_gap: float) -> float | None:
        """Bearing of travel between fixes a < b (no gap between them), widening the base outward
        while they are too close to give a direction, but never over a gap or beyond 2*max_gap."""
        n = len(self.times)
        while (
            distance_m(self.lats[a], self.lons[a], self.lats[b], self.lons[b]) < MIN_BEARING_BASE_M
        ):
            moved = False
            if a > 0 and self.times[a] - self.times[a - 1] <= max_gap:
                a -= 1
                moved = True
            if b + 1 < n and self.times[b + 1] - self.times[b] <= max_gap:
                b += 1
                moved = True
            if not moved or self.times[b] - self.times[a] > 2 * max_gap:
                return None
        return bearing_deg(self.lats[a], self.lons[a], self.lats[b], self.lons[b])


def _seconds(t: float | datetime) -> float:
    if isinstance(t, datetime):
        return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()
    return float(t)


def _local(tag: str) -> str:
    """Element name without its namespace (GPX 1.0 and 1.1 use different ones)."""
    return tag.rsplit("}", 1)[-1]


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return _seconds(datetime.fromisoformat(text.strip()))
    except ValueError:
        return None  # an unreadable time counts as no time, like a point without one


def _point(elem: ET.Element) -> tuple[float | None, float, float, float]:
    """(time or None, lat, lon, ele or NaN) of a trkpt/rtept element."""
    try:
        lat, lon = float(elem.attrib["lat"]), float(elem.attrib["lon"])
    except (KeyError, ValueError):
        raise GpxError(
            f"bad point coordinates lat={elem.get('lat')!r} lon={elem.get('lon')!r}"
        ) from None
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise GpxError(f"point coordinates out of range: {lat}, {lon}")
    t = None
    ele = math.nan
    for child in elem:
        name = _local(child.tag)
        if name == "time":
            t = _parse_time(child.text)
        elif name == "ele" and child.text:
            with contextlib.suppress(ValueError):  # optional: a bad one is as good as none
                ele = float(child.text)
    return t, lat, lon, ele


def _read_points(path: str | os.PathLike[str]) -> tuple[Track, int, bool]:
    """The timed points of a file (unsorted), how many had no time, and whether it was cut off."""
    track = Track()
    untimed = 0
    root_seen = False
    parent: ET.Element | None = None
    try:
        with open_regular(path) as fh:
            for event, elem in ET.iterparse(fh, events=("start", "end")):
                name = _local(elem.tag)
                if event == "start":
                    if not root_seen:
                        root_seen = True
                        if name != "gpx":
                            raise GpxError(f"not a GPX file (root element <{name}>)")
                    elif name in ("trkseg", "rte"):
                        parent = elem
                    continue
                if name in ("trkpt", "rtept"):
                    t, lat, lon, ele = _point(elem)
                    if t is None:
                        untimed += 1
                    else:
                        track.append(t, lat, lon, ele)
                    if parent is not None:
                        parent.clear()  # drop the finished point, so memory stays flat
                elif name in ("trkseg", "trk", "rte", "wpt"):
                    elem.clear()  # keep memory flat: nothing below a finished segment is needed
    except ET.ParseError as exc:
        if not len(track) and not untimed:
            raise GpxError(f"not a GPX/XML file ({exc})") from None
        return track, untimed, True  # a log cut off mid-write: keep what came before the cut
    except OSError as exc:
        raise GpxError(f"cannot read: {exc.strerror or exc}") from None
    return track, untimed, False


def _sorted(track: Track) -> Track:
    """The track in time order, equal times keeping their first point."""
    times = track.times
    if all(times[i] < times[i + 1] for i in range(len(times) - 1)):
        return track
    order = sorted(range(len(times)), key=times.__getitem__)  # stable: first of equals first
    out = Track()
    last = None
    for i in order:
        if times[i] == last:
            continue
        last = times[i]
        out.append(times[i], track.lats[i], track.lons[i], track.eles[i])
    out.truncated = track.truncated
    return out


def load_gpx(path: str | os.PathLike[str]) -> Track:
    """One GPX file as a track; GpxError when it is not GPX, has no points, or no times.

    A file cut off mid-write (a logger losing power) gives the points before the cut, with
    ``Track.truncated`` set.
    """
    track, untimed, truncated = _read_points(path)
    if not len(track):
        raise GpxError("GPX points have no time" if untimed else "GPX has no track points")
    track.truncated = truncated
    return _sorted(track)


def merge(tracks: Sequence[Track]) -> Track:
    """One track from several (equal timestamps keep the first track's point)."""
    joined = Track(truncated=any(tr.truncated for tr in tracks))
    for tr in tracks:
        joined.times.extend(tr.times)
        joined.lats.extend(tr.lats)
        joined.lons.extend(tr.lons)
        joined.eles.extend(tr.eles)
    return _sorted(joined)


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
