"""Duplicates (the camera did not move) and impossible jumps (a position that cannot be right).

Where the fixes are dense enough (a GPX track, or photos with their own GPS spanning 30 s or
more) :func:`mark_stops` judges each photo by the smoothed speed (:mod:`daemon.pipeline.smooth`);
elsewhere the window rule below (README text) does:

    A photo is a duplicate when the camera was standing still. Two noisy GPS fixes cannot tell
    standing from creeping: at a red light the fixes wander by several metres, while a walker
    taking a photo every 2 s moves only 2 m between photos. So the daemon judges motion over a
    window of time instead: for every photo it fits a straight line through the positions of
    the photos taken in the `window` seconds (30 by default) before it, and another through
    those taken in the `window` seconds after it. If either line moves slower than
    `standing_speed` (0.5 m/s), the camera was standing at that photo: GPS noise averages out
    over fifteen photos, a walk at 1 m/s does not. A run of standing photos is one stop, and of
    a stop only the photo nearest to where the camera stood (the median of the fixes) is kept;
    more only when a camera compass says the camera turned by more than `angle` degrees, or when
    a photo is more than `stop_radius` metres (15) from every photo kept at that stop (a slow
    crawl, pulling away). Photos taken while braking for a stop or pulling away from it may go
    with the stop. Moving photos are always kept, so a walk and a sharp corner keep every photo.
    Where photos are too sparse to judge motion (fewer than 4 in a window), the classic rule
    applies: a duplicate is within `distance` metres (4) and `angle` degrees (20) of the last
    kept photo; `window` 0 gives the classic rule everywhere. Headings taken from the GPX track
    are ignored while standing, since the bearing between two noisy fixes is random.

A photo whose position implies a speed above `max_speed_kmh` (200 km/h) from the previous kept
photo and to the next photo (a spike out and back) is set aside as an impossible position.
"""

from __future__ import annotations

import math
import statistics
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from daemon.core.geo import EARTH_RADIUS_M, angle_diff_deg, distance_m
from daemon.pipeline.records import DUPLICATE, IMPOSSIBLE_SPEED, ImageRecord

MIN_SPEED_DT_S = 1.0  # EXIF times often have whole-second resolution
MIN_WINDOW_PHOTOS = 4
MIN_STOP_SPREAD_M = 1.5  # how far two raw fixes of one stop may lie apart, per side


def _dist(a: ImageRecord, b: ImageRecord) -> float:
    return distance_m(*a.position, *b.position)


def implied_speed_kmh(a: ImageRecord, b: ImageRecord) -> float:
    """Speed needed to get from ``a`` to ``b``, with time steps below one second counted as one.

    >>> from datetime import UTC, datetime, timedelta
    >>> from pathlib import Path
    >>> t = datetime(2024, 1, 1, tzinfo=UTC)
    >>> a = ImageRecord(Path("a"), t, lat=0.0, lon=0.0)
    >>> b = ImageRecord(Path("b"), t + timedelta(seconds=10), lat=0.001, lon=0.0)
    >>> round(implied_speed_kmh(a, b), 1)
    40.0
    """
    dt = abs((b.time - a.time).total_seconds())
    return _dist(a, b) / max(dt, MIN_SPEED_DT_S) * 3.6


def mark_impossible_speeds(
    records: Sequence[ImageRecord], max_speed_kmh: float = 200.0
) -> list[ImageRecord]:
    """Set aside positions that jump out and back faster than ``max_speed_kmh``.

    An image is set aside when reaching it from the previous kept image, and leaving it for the
    next image, both need more than the limit (a first image: when it is out of reach of the next
    one, which agrees with its own successor). A jump that stays is not one photo's fault and is
    left to the sequence split.
    """
    out = list(records)
    idx = [i for i, r in enumerate(out) if r.ok and r.has_position and r.capture_time is not None]
    prev: int | None = None
    for n, i in enumerate(idx):
        nxt = out[idx[n + 1]] if n + 1 < len(idx) else None
        cur = out[i]
        if prev is None:
            after = out[idx[n + 2]] if n + 2 < len(idx) else None
            bad = (
                nxt is not None
                and after is not None
                and implied_speed_kmh(cur, nxt) > max_speed_kmh
                and implied_speed_kmh(nxt, after) <= max_speed_kmh
            )
            reference = nxt
        else:
            reference = out[prev]
            bad = implied_speed_kmh(out[prev], cur) > max_speed_kmh and (
                nxt is None or implied_speed_kmh(cur, nxt) > max_speed_kmh
            )
        if bad and reference is not None:
            speed = implied_speed_kmh(reference, cur)
            out[i] = cur.set_aside(
                IMPOSSIBLE_SPEED,
                f"position implies {speed:.0f} km/h from {reference.filename} "
                f"({_dist(reference, cur):.0f} m), above the {max_speed_kmh:.0f} km/h limit",
            )
        else:
            prev = i
    return out


@dataclass(frozen=True)
class Motion:
    """What a time window says about one photo: standing or not, and its smoothed place."""

    standing: bool | None  # None: too few photos around to judge
    speed: float | None  # m/s, the slower usable side
    x: float  # smoothed position, local metres
    y: float


def _fit(
    ts: list[float], xs: list[float], ys: list[float], lo: int, hi: int, t: float
) -> tuple[float, float, float]:
    """Least-squares line through points lo..hi-1: (speed m/s, x at t, y at t)."""
    n = hi - lo
    tw, xw, yw = ts[lo:hi], xs[lo:hi], ys[lo:hi]
    tm, xm, ym = sum(tw) / n, sum(xw) / n, sum(yw) / n
    dt = [a - tm for a in tw]  # list comprehensions: this runs twice for every photo
    stt = sum([d * d for d in dt])
    bx = sum([d * (x - xm) for d, x in zip(dt, xw, strict=True)]) / stt
    by = sum([d * (y - ym) for d, y in zip(dt, yw, strict=True)]) / stt
    return math.hypot(bx, by), xm + bx * (t - tm), ym + by * (t - tm)


def estimate_motion(
    records: Sequence[ImageRecord], window_s: float = 30.0, standing_speed: float = 0.5
) -> list[Motion]:
    """Motion at each record (all must be timed and positioned, in capture order)."""
    if not records:
        return []
    lat0, lon0 = records[0].position
    k = math.pi * EARTH_RADIUS_M / 180.0
    scale = math.cos(math.radians(lat0))
    t0 = records[0].time
    ts = [(r.time - t0).total_seconds() for r in records]
    xs = [(r.position[1] - lon0) * k * scale for r in records]
    ys = [(r.position[0] - lat0) * k for r in records]
    out = []
    for i, t in enumerate(ts):
        sides = []
        if window_s > 0:
            for lo, hi in (
                (bisect_left(ts, t - window_s), i + 1),
                (i, bisect_right(ts, t + window_s)),
            ):
                if hi - lo >= MIN_WINDOW_PHOTOS and ts[hi - 1] - ts[lo] >= window_s / 2:
                    sides.append(_fit(ts, xs, ys, lo, hi, t))
        if not sides:
            out.append(Motion(None, None, xs[i], ys[i]))
            continue
        still = [s for s in sides if s[0] < standing_speed]
        if still:
            x = sum(s[1] for s in still) / len(still)
            y = sum(s[2] for s in still) / len(still)
            out.append(Motion(True, min(s[0] for s in still), x, y))
        else:
            out.append(Motion(False, min(s[0] for s in sides), xs[i], ys[i]))
    return out


def _trusted_heading(r: ImageRecord) -> float | None:
    # A heading from the GPX track is the bearing between two fixes: noise while standing.
    return r.heading if r.position_source != "gpx" else None


def _stop_duplicates(
    run: list[int],
    recs: list[ImageRecord],
    motion: list[Motion],
    angle: float,
    stop_radius: float,
) -> dict[int, str]:
    """Within one run of standing photos: which are duplicates, with their message."""
    # Keep the photo nearest to where the camera stood: the median of the raw fixes.
    mid_lat = statistics.median(recs[i].position[0] for i in run)
    mid_lon = statistics.median(recs[i].position[1] for i in run)
    rep = min(run, key=lambda i: distance_m(*recs[i].position, mid_lat, mid_lon))
    kept = [rep]
    dups: dict[int, str] = {}
    for i in run:
        if i == rep:
            continue
        r = recs[i]
        nearest = min(kept, key=lambda j: _dist(recs[j], r))
        if _dist(recs[nearest], r) > stop_radius:
            kept.append(i)  # crawled away from the stop, or pulling away from it
            continue
        heading = _trusted_heading(r)
        if heading is not None and all(
            (other := _trusted_heading(recs[j])) is not None
            and angle_diff_deg(heading, other) > angle
            for j in kept
        ):
            kept.append(i)  # a compass says the camera turned
            continue
        dups[i] = (
            f"duplicate of {recs[nearest].filename}: camera standing still "
            f"(moving {motion[i].speed:.2f} m/s over the window), "
            f"{_dist(recs[nearest], r):.1f} m from it"
        )
    return dups


def mark_duplicates(
    records: Sequence[ImageRecord],
    distance: float = 4.0,
    angle: float = 20.0,
    *,
    window_s: float = 30.0,
    standing_speed: float = 0.5,
    stop_radius: float = 15.0,
    max_speed_kmh: float | None = 200.0,
) -> list[ImageRecord]:
    """Set aside duplicates (type DUPLICATE) and, first, impossible positions (see module doc).

    ``records`` in capture order, ideally one sequence (a stop is never judged across a break).
    ``window_s=0`` gives the classic rule only. Returns the records in the same order.
    """
    out = list(records)
    if max_speed_kmh is not None:
        out = mark_impossible_speeds(out, max_speed_kmh)
    idx = [i for i, r in enumerate(out) if r.ok and r.has_position]
    timed = all(out[i].capture_time is not None for i in idx)
    recs = [out[i] for i in idx]
    if timed and window_s > 0:
        motion = estimate_motion(recs, window_s, standing_speed)
    else:
        motion = [Motion(None, None, 0.0, 0.0) for _ in recs]
    dups: dict[int, str] = {}
    run: list[int] = []
    for n, m in enumerate(motion + [Motion(False, None, 0.0, 0.0)]):
        if m.standing:
            run.append(n)
        elif run:
            dups.update(_stop_duplicates(run, recs, motion, angle, stop_radius))
            run = []
    last_kept: ImageRecord | None = None
    for n, r in enumerate(recs):
        if n not in dups and motion[n].standing is None and last_kept is not None:
            d = _dist(last_kept, r)
            turn = (
                angle_diff_deg(r.heading, last_kept.heading)
                if r.heading is not None and last_kept.heading is not None
                else 0.0
            )
            if d <= distance and turn <= angle:
                dups[n] = (
                    f"duplicate of {last_kept.filename}: {d:.1f} m (limit {distance:g} m) and "
                    f"{turn:.0f}° (limit {angle:g}°) from it"
                )
        if n not in dups:
            last_kept = r
    for n, message in dups.items():
        out[idx[n]] = out[idx[n]].set_aside(DUPLICATE, message)
    return out


STOP_CORE_PHOTOS = 3  # consecutive photos below standing speed: a walk's never dips so long
EDGE_SLACK = 0.2  # m/s per second between fixes (tuned on bench_accuracy, 1 Hz GPX and 2 s EXIF)


def _has_core(run: list[int], speeds: Sequence[float], standing_speed: float) -> bool:
    longest = streak = 0
    for j in run:
        streak = streak + 1 if speeds[j] < standing_speed else 0
        longest = max(longest, streak)
    return longest >= STOP_CORE_PHOTOS


PACE_PHOTOS = 5  # photos beyond a stop that tell how fast the camera went before or after it
PACE_SHARE = 0.4  # of that pace, below which a photo next to a stop goes with it (bench_accuracy)


def _pace(speeds: Sequence[float], end: int, side: int) -> float:
    """How much of ``moving_speed`` the camera's pace beyond a stop's end allows: 1 for a car
    or a bicycle; for a walker at 1 m/s, who reads below 1 m/s half the time while walking and
    down to 0.7 m/s in the last steps the smoother rounds off, 0.4 (only photos slower than
    ``standing_speed`` are standing then).
    ``end`` is the first photo beyond the stop, before it (``side`` 0) or after it (1)."""
    beyond = (
        speeds[max(0, end - PACE_PHOTOS + 1) : end + 1]
        if side == 0
        else speeds[end : end + PACE_PHOTOS]
    )
    return min(1.0, PACE_SHARE * statistics.median(beyond)) if beyond else 1.0


def _trimmed(
    run: list[int], speeds: Sequence[float], standing_speed: float, moving_speed: float
) -> list[int]:
    """The run less the photos at its ends that are not slow for the pace beyond them."""
    lo, hi = 0, len(run)
    left = _pace(speeds, run[0] - 1, 0) if run[0] > 0 else 1.0
    right = _pace(speeds, run[-1] + 1, 1) if run[-1] + 1 < len(speeds) else 1.0
    while lo < hi and speeds[run[lo]] >= standing_speed and speeds[run[lo]] >= moving_speed * left:
        lo += 1
    while (
        hi > lo
        and speeds[run[hi - 1]] >= standing_speed
        and speeds[run[hi - 1]] >= moving_speed * right
    ):
        hi -= 1
    return run[lo:hi]


def mark_stops(
    records: Sequence[ImageRecord],
    speeds: Sequence[float],
    angle: float = 20.0,
    *,
    standing_speed: float = 0.5,
    moving_speed: float = 1.0,
    fix_step: float = 1.0,
    momentary: Sequence[float] | None = None,
) -> list[ImageRecord]:
    """Set aside all but one photo of each stop, judged by the smoothed speed at each photo
    (``speeds``, m/s, one per record: see :mod:`daemon.pipeline.smooth`).

    A stop is a run of photos slower than ``moving_speed`` with at least three in a row slower
    than ``standing_speed`` (the estimate wavers by a few tenths of a m/s while standing, and
    never stays below it that long on a walk at 1 m/s), less the photos at its ends that are
    not slow for the pace the camera went at beyond them (see :func:`_pace`; judged by the
    ``momentary`` speeds when given), and the photo just before and just after it when slower
    than ``moving_speed`` plus EDGE_SLACK per second of ``fix_step`` (the median time between
    the fixes smoothed: the smoother rounds the corner of a stop by more the sparser they are,
    so a photo taken as the car halts reads a few tenths of a m/s too fast). A run whose ends
    are farther apart than standing allows is not a stop (a slow walk). Of a stop, the middle
    photo is kept, and any photo a camera compass says looks more than ``angle`` degrees away
    from every photo kept there. Photos faster than that are never set aside.
    """
    edge_speed = moving_speed + EDGE_SLACK * fix_step
    # A stop's ends are judged by the momentary speed when given: the drift over seconds
    # either side takes in the standing too, and reads a walker's last steps as standing.
    ends = speeds if momentary is None else momentary
    out = list(records)
    runs: list[list[int]] = []
    run: list[int] = []
    for i, v in enumerate([*speeds, math.inf]):
        if v < moving_speed:
            run.append(i)
        elif run:
            if _has_core(run, speeds, standing_speed):
                runs.append(run)
            run = []
    for run in runs:
        run = _trimmed(run, ends, standing_speed, moving_speed)
        # The smoother rounds the corner where a stop begins and ends, by a few tenths of a m/s.
        before, after = run[0] - 1, run[-1] + 1
        if before >= 0 and ends[before] < edge_speed * _pace(ends, before, 0):
            run.insert(0, before)
        if after < len(ends) and ends[after] < edge_speed * _pace(ends, after, 1):
            run.append(after)
        if len(run) < 2:
            continue
        first, last = out[run[0]], out[run[-1]]
        span = (last.time - first.time).total_seconds()
        if _dist(first, last) > standing_speed * span + 2 * MIN_STOP_SPREAD_M:
            continue
        rep = run[len(run) // 2]
        kept = [rep]
        for i in run:
            if i == rep:
                continue
            heading = _trusted_heading(out[i])
            if heading is not None and all(
                (other := _trusted_heading(out[j])) is not None
                and angle_diff_deg(heading, other) > angle
                for j in kept
            ):
                kept.append(i)
                continue
            out[i] = out[i].set_aside(
                DUPLICATE,
                f"duplicate of {out[rep].filename}: camera standing still "
                f"({speeds[i]:.2f} m/s on the smoothed track), {_dist(out[rep], out[i]):.1f} m "
                "from it",
            )
    return out
