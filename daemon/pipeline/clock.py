"""The camera clock, found from the photos: which zone and offset make them agree with the track.

A camera's naive clock reading is true UTC plus its zone plus its error; only their sum, the
*shift*, can be seen, so the finder looks for the shift and then splits it into the zone (a
real UTC offset near it, the track's longitude as a prior) and the rest (the clock's error).

Evidence, strongest first:

- **stops**: consecutive photos that look alike (their tiny pictures, :mod:`daemon.media.tiny`)
  are a camera standing still; the track stands still too (smoothed speed below
  ``STANDING_SPEED`` for ``MIN_TRACK_STOP_S``). Each pair of a photo stop and a track stop of
  about the same length votes for the shift that lines up their middles; the shift most stops
  agree on wins, and its estimate is the mean over the matched stops (the middles do not
  depend on how sharply either side sees a stop begin, since both see its end as sharply).
- **contradictions**: a photo stop landing where the track moves, or the track standing while
  the photos there all differ, counts against a shift;
- **span**: the share of photos that land inside the track at all;
- **location**: the zone of the track's longitude (within a few hours: zones follow borders).

The answer always says how sure it is (0..1) and, when it cannot tell, why: never a guess.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from itertools import repeat
from operator import sub
from typing import Any

from daemon.core.config import AUTO
from daemon.media.gpx import Track
from daemon.pipeline.dates import format_offset, parse_zone, resolve_capture_time, zone_label
from daemon.pipeline.records import ImageRecord

CONFIDENT = 0.8  # `--tz auto`/`--time-offset auto` use an answer this sure, or none at all
STANDING_SPEED = 0.5  # m/s: the track stands still below this (smoothed over a few seconds)
MOVING_SPEED = 1.5  # m/s: and surely moves above it
EDGE_SPEED = 1.0  # m/s: where a stop begins and ends
BLIP_S = 4.0  # a standing receiver's drift can look like motion for this long
MIN_TRACK_STOP_S = 10.0
MIN_PHOTO_STOP_S = 6.0  # a run of alike photos this long (at least 3) is a stop
ALIKE = 6.0  # mean gray-level difference (of 255) below which two tiny pictures are alike
MATCH_TOLERANCE_S = 4.0  # stop middles this close agree
BREAK_TOLERANCE_S = 15.0  # a logger and a camera switched off together, give or take
NULL_SHIFTS = 50  # the shifts no stop votes for, each as likely as a shift of score 0
ZONE_STEP_S = 900  # zones come in quarter hours
SHIFT_RANGE_S = (-13 * 3600, 15 * 3600)  # zones -12:00..+14:00, give or take a clock hour
# UTC offsets some zone uses (summer times included); other quarter hours are possible but rare.
REAL_ZONES_MIN = frozenset(
    m * 60 if isinstance(m, int) else int(m * 60)
    for m in (
        *range(-12, 15),
        -9.5,
        -3.5,
        -2.5,
        3.5,
        4.5,
        5.5,
        5.75,
        6.5,
        8.75,
        9.5,
        10.5,
        12.75,
        13.75,
    )
)


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


@dataclass(frozen=True)
class Candidate:
    shift: float
    matched: int  # photo stops (both edges seen) whose middle lines up with a track stop
    contradictions: int
    inside: float  # share of photos inside the track
    spread: float  # standard deviation of the matched stops' residuals, s
    breaks: int = 0  # breaks in the photos that line up with gaps in the track

    @property
    def weight(self) -> float:
        """The matched evidence: a break seen by both (to BREAK_TOLERANCE_S) is half a stop."""
        return self.matched + 0.5 * self.breaks

    @property
    def score(self) -> float:
        return self.weight - self.contradictions + 2.0 * self.inside


@dataclass(frozen=True)
class ClockAnswer:
    """The finder's answer. ``tz``/``time_offset`` mean what the ``--tz``/``--time-offset``
    flags mean (true time = camera time read in tz, minus time_offset); both None when it cannot
    tell, with ``reason`` saying why (``best`` then holds the candidate it did not trust)."""

    tz: str | None
    time_offset: float | None
    confidence: float
    photos: int
    reason: str = ""
    evidence: str = ""
    shift: float | None = None
    stops_matched: int = 0
    photo_stops: int = 0
    track_stops: int = 0
    inside: float = 0.0
    zone_from_file: bool = False
    best: dict[str, Any] | None = None
    runner_up: dict[str, Any] | None = None

    @property
    def found(self) -> bool:
        return self.tz is not None or (self.zone_from_file and self.time_offset is not None)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tz": self.tz,
            "time_offset": self.time_offset,
            "confidence": round(self.confidence, 3),
            "photos": self.photos,
            "stops_matched": self.stops_matched,
            "photo_stops": self.photo_stops,
            "track_stops": self.track_stops,
            "inside_track": round(self.inside, 3),
            "zone_from_file": self.zone_from_file,
            "evidence": self.evidence,
            "reason": self.reason or None,
        }
        if self.best is not None:
            out["best_candidate"] = self.best
        if self.runner_up is not None:
            out["runner_up"] = self.runner_up
        return out


# -- photos ---------------------------------------------------------------------------------


def is_auto(value: object) -> bool:
    """Whether a --tz or --time-offset value asks for the finder.

    >>> is_auto("auto"), is_auto(" AUTO "), is_auto("+02:00"), is_auto(3.0)
    (True, True, False, False)
    """
    return isinstance(value, str) and value.strip().lower() == AUTO


def reading_zone(tz: str | None) -> tzinfo:
    """The zone to read the photos in first: UTC while the zone is yet to be found (ValueError
    for a zone that is no zone)."""
    return UTC if is_auto(tz) else parse_zone(tz)[0]


def _from_file(record: ImageRecord) -> bool:
    return bool(record.zone and record.zone.endswith("(from file)"))


def camera_reading(record: ImageRecord, read_in: tzinfo) -> PhotoClue | None:
    """The clue of a usable photo loaded with its naive times read in ``read_in`` (picture still
    to come), or None: no time, or a time from the GPS stamp (true already, nothing to find)."""
    if not record.ok or record.capture_time is None or record.time_source == "gps":
        return None
    if _from_file(record):
        return PhotoClue(record.capture_time.timestamp(), None, from_file=True)
    naive = record.capture_time.astimezone(read_in).replace(tzinfo=UTC)
    return PhotoClue(naive.timestamp(), None)


def read_again(records: Sequence[ImageRecord], read_in: tzinfo, tz: tzinfo) -> list[ImageRecord]:
    """The records with their naive camera times read in ``tz`` instead of ``read_in``; times
    that carried a zone, or came from the GPS stamp, stay as they are."""
    label = zone_label(tz)
    out = []
    for r in records:
        if r.capture_time is None or _from_file(r) or r.time_source == "gps":
            out.append(r)
            continue
        naive = r.capture_time.astimezone(read_in).replace(tzinfo=None)
        moment, zone = resolve_capture_time(naive, tz, label)
        out.append(r.replace(capture_time=moment, zone=zone))
    return out


def zone_seconds(tz: tzinfo, clues: Sequence[PhotoClue]) -> float:
    """A zone's offset east of UTC at the photos' (middle) time, for a named zone too."""
    when = datetime.fromtimestamp(clues[len(clues) // 2].seconds, UTC) if clues else None
    moment = when.replace(tzinfo=None) if when else datetime(2000, 1, 1)
    offset = tz.utcoffset(moment)
    return offset.total_seconds() if offset is not None else 0.0


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


def _smooth(values: list[float], half: int) -> list[float]:
    """Moving average over 2*half+1 samples (fewer at the ends)."""
    n = len(values)
    prefix = [0.0]
    for v in values:
        prefix.append(prefix[-1] + v)
    out = []
    for k in range(n):
        lo, hi = max(0, k - half), min(n, k + half + 1)
        out.append((prefix[hi] - prefix[lo]) / (hi - lo))
    return out


def _speeds(xs: list[float], ys: list[float], half: int = 2) -> list[float]:
    """Speed at each grid second from the smoothed positions ``half`` seconds either side."""
    sx, sy = _smooth(xs, half), _smooth(ys, half)
    n = len(xs)
    out = []
    for k in range(n):
        lo, hi = max(0, k - half), min(n - 1, k + half)
        out.append(math.hypot(sx[hi] - sx[lo], sy[hi] - sy[lo]) / (hi - lo) if hi > lo else 0.0)
    return out


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
        vs = _speeds(xs, ys)
        grid += ts
        speed += vs
        stops += _standing(ts, vs)
    lon = sum(track.lons) / len(track.lons) if len(track.lons) else 0.0
    return TrackMotion(segments, grid, speed, stops, lon)


# -- the search -------------------------------------------------------------------------------


def _votes(photos: list[Stop], track: list[Stop], low: float, high: float) -> list[tuple]:
    """(shift, photo stop) for each photo and track stop of about the same length."""
    votes = []
    for k, p in enumerate(photos):
        if not p.closed:
            continue
        for q in track:
            if q.closed and abs(p.length - q.length) <= 8.0 + 0.2 * max(p.length, q.length):
                shift = p.middle - q.middle
                if low <= shift <= high:
                    votes.append((shift, k))
    votes.sort()
    return votes


def _peaks(votes: list[tuple], most: int = 12) -> list[float]:
    """The shifts the most distinct photo stops vote for (within MATCH_TOLERANCE_S), best
    first, at least 20 s apart."""
    scored = []
    counts: Counter[int] = Counter()
    lo = 0
    for hi, (shift, k) in enumerate(votes):
        counts[k] += 1
        while votes[lo][0] < shift - 2 * MATCH_TOLERANCE_S:
            counts[votes[lo][1]] -= 1
            if not counts[votes[lo][1]]:
                del counts[votes[lo][1]]
            lo += 1
        scored.append((len(counts), votes[(lo + hi) // 2][0]))
    scored.sort(key=lambda s: -s[0])
    peaks: list[float] = []
    for _n, shift in scored:
        if all(abs(shift - p) > 20.0 for p in peaks):
            peaks.append(shift)
            if len(peaks) >= most:
                break
    return peaks


def _matches(shift: float, photos: list[Stop], motion: TrackMotion) -> list[float]:
    """Residuals (photo middle - shift - track middle) of the closed photo stops that line up
    with a closed track stop at ``shift``."""
    starts = [q.start for q in motion.stops]
    out = []
    for p in photos:
        if not p.closed:
            continue
        want = p.middle - shift
        i = bisect_left(starts, want - 3600)
        best = None
        for q in motion.stops[i : bisect_right(starts, want + 1)]:
            r = want - q.middle
            if q.closed and abs(r) <= MATCH_TOLERANCE_S and (best is None or abs(r) < abs(best)):
                best = r
        if best is not None:
            out.append(best)
    return out


def _contradictions(
    shift: float,
    clues: Sequence[PhotoClue],
    alike: Sequence[bool | None],
    photos: list[Stop],
    motion: TrackMotion,
) -> int:
    """Photo stops where the track surely moves, and track stops where the photos all move."""
    n = 0
    for p in photos:
        if p.length >= 8.0:
            share = motion.moving_share(p.start - shift + 2, p.end - shift - 2)
            if share is not None and share > 0.5:
                n += 1
    times = [c.seconds - shift for c in clues]
    for q in motion.stops:
        if q.length < 12.0:
            continue
        i, j = bisect_left(times, q.start + 2), bisect_right(times, q.end - 2)
        pairs = [alike[k] for k in range(i, j - 1) if alike[k] is not None]
        if len(pairs) >= 2 and pairs.count(False) > len(pairs) / 2:
            n += 1
    return n


def _inside(shift: float, clues: Sequence[PhotoClue], motion: TrackMotion) -> float:
    times = [c.seconds - shift for c in clues]
    inside = 0
    for a, b in motion.segments:
        inside += bisect_right(times, b + 1) - bisect_left(times, a - 1)
    return inside / len(times) if times else 0.0


def photo_breaks(clues: Sequence[PhotoClue]) -> list[tuple[float, float]]:
    """(last photo before, first photo after) of every break in the photos."""
    times = [c.seconds for c in clues]
    pause = _break_gap(times)
    return [(a, b) for a, b in zip(times, times[1:], strict=False) if b - a > pause]


def _breaks(shift: float, breaks: list[tuple[float, float]], motion: TrackMotion) -> int:
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


def _evaluate(
    shift: float,
    clues: Sequence[PhotoClue],
    alike: Sequence[bool | None],
    photos: list[Stop],
    motion: TrackMotion,
) -> Candidate:
    """A candidate shift refined to the mean of its matched stops, and scored there."""
    for _ in range(3):
        residuals = _matches(shift, photos, motion)
        if not residuals:
            break
        shift += sorted(residuals)[len(residuals) // 2]
    residuals = _matches(shift, photos, motion)
    if residuals:
        mean = sum(residuals) / len(residuals)
        shift += mean
        spread = math.sqrt(sum((r - mean) ** 2 for r in residuals) / len(residuals))
    else:
        spread = 0.0
    return Candidate(
        shift,
        len(residuals),
        _contradictions(shift, clues, alike, photos, motion),
        _inside(shift, clues, motion),
        spread,
        _breaks(shift, photo_breaks(clues), motion),
    )


# -- zone and offset --------------------------------------------------------------------------


def split_shift(
    shift: float, lon: float, zone_s: float | None = None, offset_s: float | None = None
) -> tuple[int, float]:
    """The zone (seconds east of UTC) and clock offset whose sum is ``shift``: the real zone
    nearest to it, the track's longitude breaking ties; a given zone or offset is kept.

    >>> split_shift(7200 - 3, 13.4)
    (7200, -3.0)
    >>> split_shift(3600 + 7, 13.4)
    (3600, 7.0)
    >>> split_shift(19800 + 5, 77.0)
    (19800, 5.0)
    >>> split_shift(7200 + 60, 13.4, zone_s=3600)
    (3600, 3660.0)
    """
    if zone_s is not None:
        return int(zone_s), float(shift - zone_s)
    target = shift - (offset_s or 0.0)
    solar = lon / 15.0 * 3600

    def cost(zone: int) -> float:
        rare = 0.0 if zone // 60 in REAL_ZONES_MIN else 1.0
        far = 0.0 if abs(zone - solar) <= 3.5 * 3600 else 0.5
        return abs(target - zone) / ZONE_STEP_S + rare + far

    zones = range(-12 * 3600, 14 * 3600 + 1, ZONE_STEP_S)
    zone = min(zones, key=cost)
    return zone, float(round(shift - zone, 1))


def _label(zone: int | None, offset: float) -> dict[str, Any]:
    return {
        "tz": None if zone is None else format_offset(timedelta(seconds=zone)),
        "time_offset": offset,
    }


def behind_text(offset: float) -> str:
    """``camera 3 s behind``, ``camera 1 h 0 min 5 s ahead``, ``camera clock right``.

    >>> behind_text(-3.0), behind_text(3605), behind_text(0.2), behind_text(-7.5)
    ('camera 3 s behind', 'camera 1 h 0 min 5 s ahead', 'camera clock right', 'camera 7.5 s behind')
    """
    s = round(abs(offset), 1)
    if s < 0.5:
        return "camera clock right"
    h, rest = divmod(int(s), 3600)
    m, whole = divmod(rest, 60)
    sec = f"{whole + s - int(s):g}"
    text = f"{h} h {m} min {sec} s" if h else f"{m} min {sec} s" if m else f"{sec} s"
    return f"camera {text} {'ahead' if offset > 0 else 'behind'}"


# -- the finder -------------------------------------------------------------------------------


@dataclass
class FinderInput:
    """The photos (any order) and what is already known (a zone or offset the user gave)."""

    clues: list[PhotoClue]
    zone_s: float | None = None  # the zone given, seconds east of UTC
    offset_s: float | None = None  # the clock offset given
    max_gap: float = 60.0
    notes: list[str] = field(default_factory=list)


def _kind(clues: Sequence[PhotoClue]) -> tuple[list[PhotoClue], bool]:
    """The photos of the usual kind (naive times, or times with their own zone): a shift is the
    same for all of one kind only."""
    own = [c for c in clues if c.from_file]
    naive = [c for c in clues if not c.from_file]
    chosen, from_file = (own, True) if len(own) > len(naive) else (naive, False)
    return sorted(chosen, key=lambda c: c.seconds), from_file


def _cannot(photos: int, reason: str, **more: Any) -> ClockAnswer:
    return ClockAnswer(None, None, more.pop("confidence", 0.0), photos, reason=reason, **more)


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _shift_range(job: FinderInput) -> tuple[float, float]:
    if job.zone_s is not None:  # only the clock's error is left: any size within a day
        return job.zone_s - 26 * 3600, job.zone_s + 26 * 3600
    extra = job.offset_s or 0.0
    return SHIFT_RANGE_S[0] + extra, SHIFT_RANGE_S[1] + extra


def find_clock(job: FinderInput, track: Track | None) -> ClockAnswer:
    """The zone and offset at which the photos agree with the track, or why it cannot tell."""
    clues, from_file = _kind(job.clues)
    n = len(clues)
    if n < 3:
        return _cannot(n, f"{n} photo(s) with a camera time: too few to compare with a track")
    if track is None or len(track) < 2:
        return _cannot(n, "no GPX track to compare the photos with")
    with_picture = sum(1 for c in clues if c.picture is not None)
    if with_picture < 3:
        return _cannot(n, "no picture could be read from the photos, so no stop can be seen")
    motion = track_motion(track, job.max_gap)
    alike = neighbours_alike(clues)
    stops = photo_stops(clues, alike)
    counts = {"photo_stops": len(stops), "track_stops": len(motion.stops)}
    span = f"photos {_when(clues[0].seconds)} to {_when(clues[-1].seconds)} camera time"
    if not any(s.closed for s in stops):
        edges = f"; {len(stops)} only next to a break, whose edge is not seen" if stops else ""
        return _cannot(
            n,
            "no stop in the photos: no run of alike photos lasting "
            f"{MIN_PHOTO_STOP_S:g} s between moving ones{edges}, so nothing fixes the clock "
            f"({span})",
            **counts,
        )
    if not motion.stops:
        return _cannot(
            n, f"the track never stands still for {MIN_TRACK_STOP_S:g} s or more", **counts
        )
    low, high = _shift_range(job)
    peaks = _peaks(_votes(stops, motion.stops, low, high))
    candidates = sorted(
        (_evaluate(s, clues, alike, stops, motion) for s in peaks), key=lambda c: -c.score
    )
    candidates = [c for c in candidates if low <= c.shift <= high]
    zone_given = None if from_file else job.zone_s
    if not candidates or candidates[0].matched == 0:
        return _cannot(
            n,
            "the photos' stops line up with none of the track's at any zone and offset "
            f"({span}; track {_when(track.start)} to {_when(track.end)} UTC)",
            **counts,
        )
    best = candidates[0]
    runner = next((c for c in candidates[1:] if abs(c.shift - best.shift) > 10.0), None)
    describe = _describer(motion.lon, zone_given, job.offset_s, from_file)
    if best.inside < 0.2:
        return _cannot(
            n,
            f"the photos fall outside the track for every candidate ({span}; track "
            f"{_when(track.start)} to {_when(track.end)} UTC)",
            best=describe(best),
            **counts,
        )
    others = [c for c in candidates[1:] if abs(c.shift - best.shift) > 10.0]
    confidence = _confidence(best, others)
    zone, offset = split_shift(best.shift, motion.lon, zone_given, job.offset_s)
    offset = round(offset, 1)
    breaks = f", {best.breaks} break(s) in both" if best.breaks else ""
    evidence = (
        f"{best.matched} of {len(stops)} photo stops line up with the track's "
        f"{len(motion.stops)} (spread {best.spread:.1f} s){breaks}, {best.contradictions} "
        f"contradiction(s), {best.inside:.0%} of the photos inside the track"
    )
    answer: dict[str, Any] = {
        "photos": n,
        "shift": best.shift,
        "stops_matched": best.matched,
        "inside": best.inside,
        "zone_from_file": from_file,
        "evidence": evidence,
        "runner_up": describe(runner) if runner is not None else None,
        **counts,
    }
    if runner is not None and runner.score >= best.score - 0.5:
        return _cannot(
            n,
            f"two candidates fit equally well: {_say(describe(best))} and {_say(describe(runner))}",
            confidence=confidence,
            best=describe(best),
            **{k: v for k, v in answer.items() if k != "photos"},
        )
    if confidence < CONFIDENT:
        weak = "only one stop lines up" if best.weight < 2 else "the evidence is weak"
        return _cannot(
            n,
            f"{weak} (confidence {confidence:.2f} < {CONFIDENT}): {evidence}",
            confidence=confidence,
            best=describe(best),
            **{k: v for k, v in answer.items() if k != "photos"},
        )
    tz = None if from_file else format_offset(timedelta(seconds=zone))
    time_offset = round(best.shift, 1) if from_file else offset
    return ClockAnswer(tz, time_offset, confidence, **answer)


def _describer(lon: float, zone_s: float | None, offset_s: float | None, from_file: bool) -> Any:
    def describe(c: Candidate | None) -> dict[str, Any] | None:
        if c is None:
            return None
        if from_file:
            out = _label(None, round(c.shift, 1))
        else:
            zone, offset = split_shift(c.shift, lon, zone_s, offset_s)
            out = _label(zone, round(offset, 1))
        out.update(stops_matched=c.matched, contradictions=c.contradictions)
        return out

    return describe


def _say(c: dict[str, Any] | None) -> str:
    if c is None:
        return "none"
    zone = f"zone {c['tz']}, " if c.get("tz") else ""
    return f"{zone}{behind_text(c['time_offset'])}"


def _confidence(best: Candidate, others: Sequence[Candidate]) -> float:
    """How sure: the best shift's share of the weight of all shifts tried (each weighs
    exp(2·score), and NULL_SHIFTS more stand for the shifts no stop votes for), times what it
    rests on: more matched stops, no contradictions, a tight fit, photos inside the track."""
    weights = sum(math.exp(2.0 * (c.score - best.score)) for c in others)
    share = 1.0 / (1.0 + weights + NULL_SHIFTS * math.exp(-2.0 * best.score))
    evidence = 1.0 - 0.2**best.weight
    consistency = best.weight / (best.weight + best.contradictions)
    tight = 1.0 if best.spread <= 1.5 else 1.5 / best.spread
    inside = min(1.0, best.inside / 0.5)
    return max(0.0, min(1.0, share * evidence * consistency * tight * inside))
