"""Where the camera and the track stand still: stops seen in the photos (runs of alike tiny
pictures) and in the track (its speed from the pipeline's own smoother,
:mod:`daemon.pipeline.smooth`), the evidence :mod:`daemon.pipeline.clock` lines up to find the
camera's clock.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import sub

from daemon.media.gpx import Track
from daemon.pipeline.smooth import rts

STANDING_SPEED = 0.5  # m/s: the track stands still below this (its smoothed speed)
MOVING_SPEED = 1.5  # m/s: and surely moves above it
EDGE_SPEED = 1.0  # m/s: where a stop begins and ends
BLIP_S = 4.0  # a standing receiver's drift can look like motion for this long
MIN_TRACK_STOP_S = 10.0
MIN_PHOTO_STOP_S = 6.0  # a run of alike photos this long (at least 3) is a stop
ALIKE = 6.0  # mean gray-level difference (of 255) below which two tiny pictures are alike
BREAK_TOLERANCE_S = 15.0  # a logger and a camera switched off together, give or take


@dataclass(frozen=True)
class PhotoClue:
    """What the finder needs of one photo: its camera time and its tiny picture.

    ``seconds`` is the camera's reading as POSIX seconds, a naive time read as if it were UTC
    (its zone is what is being found); ``from_file`` marks a time that carried its own zone,
    whose seconds are then true UTC ones and only the clock's error is left to find.
    """

    seconds: float
    picture: bytes | None
    from_file: bool = False


@dataclass(frozen=True)
class Stop:
    """A stretch of standing still: [start, end] seconds; an edge not seen is ``open``."""

    start: float
    end: float
    open_start: bool = False
    open_end: bool = False

    @property
    def middle(self) -> float:
        return (self.start + self.end) / 2

    @property
    def length(self) -> float:
        return self.end - self.start

    @property
    def closed(self) -> bool:
        return not (self.open_start or self.open_end)


@dataclass
class TrackMotion:
    """The track on a 1 s grid: where it covers time, its smoothed speed, its stops."""

    segments: list[tuple[float, float]]  # covered spans (no gap longer than max_gap)
    grid: list[float]  # grid times (every segment's, in order)
    speed: list[float]
    stops: list[Stop]
    lon: float  # mean longitude, for the zone prior

    def covered(self, t: float) -> bool:
        i = bisect_right(self.segments, (t, math.inf)) - 1
        return i >= 0 and self.segments[i][0] <= t <= self.segments[i][1]

    def moving_share(self, start: float, end: float) -> float | None:
        """Share of grid seconds in [start, end] faster than MOVING_SPEED (None: none there)."""
        i, j = bisect_left(self.grid, start), bisect_right(self.grid, end)
        if j <= i:
            return None
        return sum(1 for v in self.speed[i:j] if v > MOVING_SPEED) / (j - i)


# -- pictures ---------------------------------------------------------------------------------


def picture_difference(a: bytes, b: bytes) -> float:
    """Mean gray-level difference of two tiny pictures, their brightness evened out first
    (a camera's exposure changes between shots; the scene is what matters).

    >>> picture_difference(bytes([10, 20, 30]), bytes([20, 30, 40]))
    0.0
    >>> picture_difference(bytes([0, 100]), bytes([100, 0]))
    100.0
    """
    if len(a) != len(b) or not a:
        return math.inf
    dm = (sum(a) - sum(b)) / len(a)
    # All in C (map over operator functions): the finder compares every pair of neighbours.
    return sum(map(abs, map(sub, map(sub, a, b), repeat(dm)))) / len(a)


def neighbours_alike(clues: Sequence[PhotoClue]) -> list[bool | None]:
    """For each pair of consecutive photos: alike, not alike, or None when they cannot be
    compared (a break between them, or a picture missing)."""
    pause = _break_gap([c.seconds for c in clues])
    out: list[bool | None] = []
    for a, b in zip(clues, clues[1:], strict=False):
        if b.seconds - a.seconds > pause or a.picture is None or b.picture is None:
            out.append(None)
        else:
            out.append(picture_difference(a.picture, b.picture) <= ALIKE)
    # One photo unlike both neighbours in a stop is something passing in front (a truck, a
    # wiper): its neighbours alike to each other keep the stop whole.
    for i in range(1, len(out)):
        beside = (i >= 2 and out[i - 2]) or (i + 1 < len(out) and out[i + 1])
        if beside and out[i - 1] is False and out[i] is False:
            before, after = clues[i - 1].picture, clues[i + 1].picture
            if before and after and picture_difference(before, after) <= ALIKE:
                out[i - 1] = out[i] = True
    return out


def _break_gap(times: Sequence[float]) -> float:
    """A pause longer than this between photos is a break, not the camera's interval."""
    gaps = sorted(b - a for a, b in zip(times, times[1:], strict=False) if b > a)
    median = gaps[len(gaps) // 2] if gaps else 2.0
    return max(4 * median, 10.0)


def photo_stops(
    clues: Sequence[PhotoClue], alike: Sequence[bool | None] | None = None
) -> list[Stop]:
    """Runs of alike consecutive photos lasting MIN_PHOTO_STOP_S, in camera seconds. An edge is
    halfway between the last moving photo and the first alike one; open next to a break."""
    times = [c.seconds for c in clues]
    pause = _break_gap(times)
    if alike is None:
        alike = neighbours_alike(clues)
    stops = []
    i = 0
    while i < len(alike):
        if not alike[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(alike) and alike[j + 1]:
            j += 1
        first, last = i, j + 1  # photos first..last are alike
        if last - first >= 2 and times[last] - times[first] >= MIN_PHOTO_STOP_S:
            open_start = first == 0 or times[first] - times[first - 1] > pause
            open_end = last == len(times) - 1 or times[last + 1] - times[last] > pause
            start = times[first] if open_start else (times[first - 1] + times[first]) / 2
            end = times[last] if open_end else (times[last] + times[last + 1]) / 2
            stops.append(Stop(start, end, open_start, open_end))
        i = j + 1
    return stops


# -- the track --------------------------------------------------------------------------------


def _segments(track: Track, max_gap: float) -> list[tuple[int, int]]:
    """Index ranges [a, b] of the track with no gap longer than ``max_gap``."""
    out, a = [], 0
    times = track.times
    for i in range(1, len(times)):
        if times[i] - times[i - 1] > max_gap:
            out.append((a, i - 1))
            a = i
    if len(times):
        out.append((a, len(times) - 1))
    return out


def _grid(track: Track, a: int, b: int) -> tuple[list[float], list[float], list[float]]:
    """Times and local metres (east, north) of the track every second from fix a to fix b."""
    times, lats, lons = track.times, track.lats, track.lons
    lat0 = lats[a]
    kx = math.cos(math.radians(lat0)) * 111_320.0
    ky = 110_540.0
    ts, xs, ys = [], [], []
    t, i = times[a], a
    while t <= times[b]:
        while i < b and times[i + 1] < t:
            i += 1
        f = 0.0 if i == b else (t - times[i]) / (times[i + 1] - times[i])
        j = min(i + 1, b)
        lon = lons[i] + (lons[j] - lons[i]) * f
        lat = lats[i] + (lats[j] - lats[i]) * f
        ts.append(t)
        xs.append((lon - lons[a]) * kx)
        ys.append((lat - lat0) * ky)
        t += 1.0
    return ts, xs, ys


def _runs(flags: list[bool]) -> list[tuple[int, int]]:
    """Index ranges [a, b] where ``flags`` holds."""
    out, k = [], 0
    while k < len(flags):
        if not flags[k]:
            k += 1
            continue
        m = k
        while m + 1 < len(flags) and flags[m + 1]:
            m += 1
        out.append((k, m))
        k = m + 1
    return out


def _edge_speed(vs: list[float]) -> float:
    """Where a stop begins and ends: EDGE_SPEED, or half the usual speed of the moving parts
    when that is slower (a walk at 1 m/s would be standing below EDGE_SPEED)."""
    moving = sorted(v for v in vs if v >= STANDING_SPEED)
    if not moving:
        return EDGE_SPEED
    return max(STANDING_SPEED, min(EDGE_SPEED, moving[len(moving) // 2] / 2))


def _standing(ts: list[float], vs: list[float]) -> list[Stop]:
    """Standing periods of one segment: below the edge speed (where both braking and pulling
    away cross it alike), blips of BLIP_S or less merged (a receiver drifting while standing),
    at least MIN_TRACK_STOP_S long and mostly below STANDING_SPEED."""
    edge = _edge_speed(vs)
    runs = _runs([v < edge for v in vs])
    merged: list[tuple[int, int]] = []
    for a, b in runs:
        if merged and ts[a] - ts[merged[-1][1]] <= BLIP_S + 1:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    stops = []
    for a, b in merged:
        slow = sum(1 for v in vs[a : b + 1] if v < STANDING_SPEED)
        if ts[b] - ts[a] >= MIN_TRACK_STOP_S and slow * 2 >= b - a + 1:
            stops.append(Stop(ts[a], ts[b], a == 0, b == len(ts) - 1))
    return stops


def track_motion(track: Track, max_gap: float = 60.0) -> TrackMotion:
    """The track's covered spans, smoothed speed and standing periods (see :func:`_standing`);
    a stop at a segment's end has that edge open."""
    segments, grid, speed, stops = [], [], [], []
    for a, b in _segments(track, max_gap):
        segments.append((track.times[a], track.times[b]))
        ts, xs, ys = _grid(track, a, b)
        _x, _y, vx, vy = rts(ts, xs, ys)
        vs = [math.hypot(a, b) for a, b in zip(vx, vy, strict=True)]
        grid += ts
        speed += vs
        stops += _standing(ts, vs)
    lon = sum(track.lons) / len(track.lons) if len(track.lons) else 0.0
    return TrackMotion(segments, grid, speed, stops, lon)


def photo_breaks(clues: Sequence[PhotoClue]) -> list[tuple[float, float]]:
    """(last photo before, first photo after) of every break in the photos."""
    times = [c.seconds for c in clues]
    pause = _break_gap(times)
    return [(a, b) for a, b in zip(times, times[1:], strict=False) if b - a > pause]


def breaks_in_both(shift: float, breaks: list[tuple[float, float]], motion: TrackMotion) -> int:
    """Breaks in the photos whose both ends line up with a gap in the track."""
    gaps = [(a[1], b[0]) for a, b in zip(motion.segments, motion.segments[1:], strict=False)]
    n = 0
    for last, first in breaks:
        if any(
            abs(last - shift - end) <= BREAK_TOLERANCE_S
            and abs(first - shift - start) <= BREAK_TOLERANCE_S
            for end, start in gaps
        ):
            n += 1
    return n
