"""Where the camera was and how it moved: a fixed-interval (Rauch-Tung-Striebel) smoother.

A GPS fix is off by a metre or more in each axis, so the bearing between two fixes, or the speed
over two of them, is mostly noise at low speed. The smoother runs a constant-velocity Kalman
filter forward over the fixes (the GPX track, usually 1 Hz and denser than the photos, or the
photos' own positions when there is no track) and back again, so that every photo gets a
position, a velocity and a speed estimated from all the fixes around it. Duplicates (standing
or moving), headings and, unless turned off, positions come from these estimates.

It runs twice: first with one process noise loose enough for any manoeuvre, then with each
step's own, from the acceleration the first pass saw there (:func:`manoeuvre_q`), so that the
straights average many fixes and turns and stops are still followed; the GPS error is judged
from the spread of the fixes themselves (:func:`local_noise`).

Where the fixes are too sparse (median step above ``MAX_STEP_S``) the smoother says nothing and
the stages fall back to their older rules.
"""

from __future__ import annotations

import math
import statistics
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from daemon.core.geo import EARTH_RADIUS_M, normalize_deg
from daemon.pipeline.records import ImageRecord

NOISE_M = 1.0  # GPS error per axis assumed, metres (tuned on bench_accuracy)
ACCEL_Q = 1.0  # white-acceleration density of the first pass, m²/s³: any manoeuvre fits
QUIET_Q = 0.005  # the second pass's density where the first saw no acceleration
Q_PER_ACCEL = 0.5  # s: density added per (m/s²)² of acceleration seen (tuned on bench_accuracy)
ACCEL_SPAN_S = 2.0  # seconds either side over which the acceleration is seen
EDGE_S = 6.0  # seconds from the ends of a run of fixes where a manoeuvre is assumed
EDGE_ACCEL = 3.0  # m/s²: the manoeuvre assumed there (braking, pulling away)
NOISE_WINDOW = 30  # fixes over which the GPS error is judged
NOISE_STEP = 5  # fixes that share one judgement of it
MIN_NOISE_M = 0.05
STILL_V = 0.05  # m/s: how sure a zero-velocity update is
STILL_FIXES = 5  # consecutive fixes slower than STILL_SPEED make a stop for the second pass
STILL_SPEED = 0.5
STILL_GROW = 0  # fixes each side to add: 1 pins a fix taken at 1.5 m/s when photos fall on fixes
MAX_BULGE_M = 0.4  # the sagitta of an 11 m chord on a 40 m radius is 0.36 m
MAX_STEP_S = 5.0
DRIFT_S = 5.0  # sparser fixes than this: no smoothing
MIN_SMOOTHED_S = 30.0  # photos alone (no track) must span this long to be judged by the smoother
MARGIN_S = 30.0  # fixes this far beyond a piece's photos still inform its ends
_K = math.pi * EARTH_RADIUS_M / 180.0


@dataclass(frozen=True)
class State:
    """The smoothed camera at one photo: local metres east/north, metres per second."""

    x: float
    y: float
    vx: float
    vy: float
    drift: float = math.inf  # m/s covered over DRIFT_S seconds either side

    @property
    def slowness(self) -> float:
        """The speed that judges standing: the lower of the momentary and the drift speed."""
        return min(self.speed, self.drift)

    @property
    def speed(self) -> float:
        return math.hypot(self.vx, self.vy)

    @property
    def heading(self) -> float:
        return normalize_deg(math.degrees(math.atan2(self.vx, self.vy)))


@dataclass(frozen=True)
class Motion:
    """Smoothed states of a piece's photos, and the projection to turn them back into degrees."""

    states: list[State | None]
    lat0: float
    lon0: float
    from_track: bool  # smoothed over the track's fixes (denser than the photos), not the photos'
    step: float = 1.0  # median seconds between the fixes smoothed

    def latlon(self, s: State) -> tuple[float, float]:
        scale = math.cos(math.radians(self.lat0))
        return self.lat0 + s.y / _K, self.lon0 + s.x / (_K * scale)


def rts(
    ts: Sequence[float],
    xs: Sequence[float],
    ys: Sequence[float],
    noise_m: float | None = None,
    q: float | None = None,
    still: Sequence[bool] | None = None,
    noise: Sequence[float] | None = None,
    qs: Sequence[float] | None = None,
) -> tuple[list[float], list[float], list[float], list[float]]:
    """Smoothed (x, y, vx, vy) at each fix; the two axes share one covariance, hence one gain.

    At fixes flagged ``still`` the filter is also told the velocity is zero (a zero-velocity
    update): the fixes of a stop then average out instead of wandering with the noise. ``noise``
    gives each fix its own error (metres per axis) instead of ``noise_m``; ``qs`` each step
    (from the fix before to this one) its own acceleration density instead of ``q``."""
    n = len(ts)
    noise_m = NOISE_M if noise_m is None else noise_m
    q = ACCEL_Q if q is None else q
    r = noise_m * noise_m
    # Filtered means per axis, the shared filtered and predicted covariances (symmetric 2x2).
    fx, fvx, fy, fvy = [0.0] * n, [0.0] * n, [0.0] * n, [0.0] * n
    px, pvx, py, pvy = [0.0] * n, [0.0] * n, [0.0] * n, [0.0] * n
    fa, fb, fc = [0.0] * n, [0.0] * n, [0.0] * n
    pa, pb, pc = [0.0] * n, [0.0] * n, [0.0] * n
    x, vx, y, vy = xs[0], 0.0, ys[0], 0.0
    a, b, c = r, 0.0, 100.0  # position known to the noise, speed unknown (~10 m/s)
    for k in range(n):
        if k:
            dt = ts[k] - ts[k - 1]
            if qs is not None:
                q = qs[k]
            x, y = x + vx * dt, y + vy * dt
            a, b, c = (
                a + 2 * b * dt + c * dt * dt + q * dt**3 / 3,
                b + c * dt + q * dt * dt / 2,
                c + q * dt,
            )
        px[k], pvx[k], py[k], pvy[k] = x, vx, y, vy
        pa[k], pb[k], pc[k] = a, b, c
        s = a + (r if noise is None else noise[k] * noise[k])
        k0, k1 = a / s, b / s
        ex, ey = xs[k] - x, ys[k] - y
        x, vx, y, vy = x + k0 * ex, vx + k1 * ex, y + k0 * ey, vy + k1 * ey
        a, b, c = (1 - k0) * a, (1 - k0) * b, c - k1 * b
        if still is not None and still[k]:
            s = c + STILL_V * STILL_V
            k0, k1 = b / s, c / s
            x, vx, y, vy = x - k0 * vx, vx - k1 * vx, y - k0 * vy, vy - k1 * vy
            a, b, c = a - k0 * b, b - k0 * c, c - k1 * c
        fx[k], fvx[k], fy[k], fvy[k] = x, vx, y, vy
        fa[k], fb[k], fc[k] = a, b, c
    for k in range(n - 2, -1, -1):
        dt = ts[k + 1] - ts[k]
        a, b, c = fa[k], fb[k], fc[k]
        d, e, f = pa[k + 1], pb[k + 1], pc[k + 1]
        det = d * f - e * e
        # C = P_filtered · Fᵀ · P_predicted⁻¹
        m00, m01, m10, m11 = a + b * dt, b, b + c * dt, c
        c00, c01 = (m00 * f - m01 * e) / det, (m01 * d - m00 * e) / det
        c10, c11 = (m10 * f - m11 * e) / det, (m11 * d - m10 * e) / det
        dx, dvx = fx[k + 1] - px[k + 1], fvx[k + 1] - pvx[k + 1]
        dy, dvy = fy[k + 1] - py[k + 1], fvy[k + 1] - pvy[k + 1]
        fx[k] += c00 * dx + c01 * dvx
        fvx[k] += c10 * dx + c11 * dvx
        fy[k] += c00 * dy + c01 * dvy
        fvy[k] += c10 * dy + c11 * dvy
    return fx, fy, fvx, fvy


def _fixes(
    records: Sequence[ImageRecord], track: Any, max_gap: float
) -> tuple[list[float], list[float], list[float], bool] | None:
    """(times, lats, lons) to smooth: the track's fixes around the photos when every photo was
    placed on the track, else the photos' own positions."""
    t_first, t_last = records[0].time.timestamp(), records[-1].time.timestamp()
    times = getattr(track, "times", None)
    if times is not None and all(r.position_source == "gpx" for r in records):
        lo = bisect_left(times, t_first - MARGIN_S)
        hi = bisect_right(times, t_last + MARGIN_S)
        return list(times[lo:hi]), list(track.lats[lo:hi]), list(track.lons[lo:hi]), True
    ts = [r.time.timestamp() for r in records]
    return ts, [r.position[0] for r in records], [r.position[1] for r in records], False


def estimate(
    records: Sequence[ImageRecord], track: Any = None, max_gap: float = 60.0
) -> Motion | None:
    """Smoothed states at each record (timed, positioned, capture order), or None when the fixes
    are too sparse to smooth."""
    if len(records) < 3 or any(r.capture_time is None or not r.has_position for r in records):
        return None
    fixes = _fixes(records, track, max_gap)
    if fixes is None or len(fixes[0]) < 3:
        return None
    ts, lats, lons, from_track = fixes
    steps = [b - a for a, b in zip(ts, ts[1:], strict=False) if b > a]
    step = statistics.median(steps) if steps else math.inf
    if step > MAX_STEP_S:
        return None
    lat0, lon0 = lats[0], lons[0]
    scale = math.cos(math.radians(lat0))
    xs = [(lon - lon0) * _K * scale for lon in lons]
    ys = [(lat - lat0) * _K for lat in lats]
    # Runs without a gap longer than max_gap (or equal times) are smoothed each on its own.
    sx, sy, svx, svy = [0.0] * len(ts), [0.0] * len(ts), [0.0] * len(ts), [0.0] * len(ts)
    start = 0
    for k in range(1, len(ts) + 1):
        if k == len(ts) or not 0 < ts[k] - ts[k - 1] <= max_gap:
            part = _two_pass(ts[start:k], xs[start:k], ys[start:k])
            sx[start:k], sy[start:k], svx[start:k], svy[start:k] = part
            start = k
    states: list[State | None] = []

    def at(t: float) -> State | None:
        i = bisect_left(ts, t)
        if i < len(ts) and ts[i] == t:
            return State(sx[i], sy[i], svx[i], svy[i])
        if i == 0 or i == len(ts):
            j = 0 if i == 0 else len(ts) - 1
            if abs(ts[j] - t) > 1.0:
                return None
            h = t - ts[j]
            return State(sx[j] + svx[j] * h, sy[j] + svy[j] * h, svx[j], svy[j])
        if ts[i] - ts[i - 1] > max_gap:
            return None
        return _hermite(ts, sx, sy, svx, svy, i - 1, t)

    for r in records:
        t = r.time.timestamp()
        here = at(t)
        if here is None:
            states.append(None)
            continue
        # Speed over DRIFT_S either side: a GPS that wanders slowly at a stop (multipath) fools
        # the momentary velocity, not the distance covered over ten seconds.
        before = at(max(t - DRIFT_S, ts[0])) or here
        after = at(min(t + DRIFT_S, ts[-1])) or here
        span = min(DRIFT_S, t - ts[0]) + min(DRIFT_S, ts[-1] - t)
        drift = math.hypot(after.x - before.x, after.y - before.y) / span if span > 0 else math.inf
        states.append(State(here.x, here.y, here.vx, here.vy, drift))
    return Motion(states, lat0, lon0, from_track, step)


def local_noise(ts: Sequence[float], xs: Sequence[float], ys: Sequence[float]) -> list[float]:
    """Each fix's GPS error (metres per axis), from the track itself: how far fixes lie off the
    line through their two neighbours, a robust median over the NOISE_WINDOW fixes around.
    Acceleration hardly enters (3 m/s² bends a 1 Hz line by 0.75 m once, at a corner), so a
    clean track gets (almost) no smoothing and a noisy one as much as its noise asks."""
    n = len(ts)
    if n < 3:
        return [NOISE_M] * n
    off: list[float] = []
    for k in range(1, n - 1):
        w = (ts[k] - ts[k - 1]) / (ts[k + 1] - ts[k - 1])
        ex = xs[k] - xs[k - 1] - (xs[k + 1] - xs[k - 1]) * w
        ey = ys[k] - ys[k - 1] - (ys[k + 1] - ys[k - 1]) * w
        gain = math.sqrt(1 + w * w + (1 - w) * (1 - w))
        off += [abs(ex) / gain, abs(ey) / gain]
    # One median per block of NOISE_STEP fixes, over the window centred on the block: a
    # median per fix costs a third of the whole pipeline and tells nothing more.
    step = NOISE_STEP
    centres = n - 2
    out: list[float] = []
    for start in range(0, n, step):
        mid = start + step // 2
        lo = max(0, min(mid - 1 - NOISE_WINDOW // 2, centres - NOISE_WINDOW))
        window = off[2 * lo : 2 * (lo + NOISE_WINDOW)]
        out += [max(MIN_NOISE_M, statistics.median(window) / 0.6745)] * min(step, n - start)
    return out


def _two_pass(
    ts: list[float], xs: list[float], ys: list[float]
) -> tuple[list[float], list[float], list[float], list[float]]:
    """Smooth once with room for any manoeuvre, then again with the process noise each stretch
    asks for (see :func:`manoeuvre_q`) and, where the first pass finds a stop (STILL_FIXES slow
    fixes in a row), knowing the camera stood there."""
    noise = local_noise(ts, xs, ys)
    part = rts(ts, xs, ys, noise=noise)
    qs = manoeuvre_q(ts, part[2], part[3])
    slow = [math.hypot(vx, vy) < STILL_SPEED for vx, vy in zip(part[2], part[3], strict=True)]
    still = [False] * len(ts)
    k = 0
    while k < len(ts):
        if not slow[k]:
            k += 1
            continue
        end = k
        while end < len(ts) and slow[end]:
            end += 1
        if end - k >= STILL_FIXES:
            lo, hi = max(0, k - STILL_GROW), min(len(ts), end + STILL_GROW)
            still[lo:hi] = [True] * (hi - lo)
        k = end
    return rts(ts, xs, ys, still=still if any(still) else None, noise=noise, qs=qs)


def manoeuvre_q(ts: Sequence[float], vxs: Sequence[float], vys: Sequence[float]) -> list[float]:
    """Each step's white-acceleration density, from the acceleration a first pass saw there.

    One density for a whole drive is wrong twice: high enough for braking at 3 m/s², it lets
    the noise through on the straights; low enough to average the straights, it lags a metre
    or two behind every turn and stop. The acceleration over ACCEL_SPAN_S either side (the
    highest within one fix, as a manoeuvre starts before its middle), squared and scaled by
    Q_PER_ACCEL, is what the step may change, on top of QUIET_Q."""
    n = len(ts)
    acc = [0.0] * n
    lo = hi = 0
    for k in range(n):
        while ts[lo] < ts[k] - ACCEL_SPAN_S:
            lo += 1
        while hi + 1 < n and ts[hi + 1] <= ts[k] + ACCEL_SPAN_S:
            hi += 1
        if ts[hi] > ts[lo]:
            acc[k] = math.hypot(vxs[hi] - vxs[lo], vys[hi] - vys[lo]) / (ts[hi] - ts[lo])
    qs = [0.0] * n
    for k in range(n):
        a = max(acc[max(0, k - 1) : k + 2])
        qs[k] = QUIET_Q + Q_PER_ACCEL * a * a
        # Near an end the first pass had fixes on one side only and saw too little (a camera
        # pulling away as its first photos are taken): a manoeuvre is assumed there.
        if min(ts[k] - ts[0], ts[-1] - ts[k]) < EDGE_S:
            qs[k] = max(qs[k], QUIET_Q + Q_PER_ACCEL * EDGE_ACCEL**2)
    return qs


def _hermite(
    ts: Sequence[float],
    sx: Sequence[float],
    sy: Sequence[float],
    svx: Sequence[float],
    svy: Sequence[float],
    a: int,
    t: float,
) -> State:
    """Between smoothed fixes a and a+1: cubic in position (their velocities as slopes)."""
    b = a + 1
    h = ts[b] - ts[a]
    u = (t - ts[a]) / h
    h00, h10 = 2 * u**3 - 3 * u**2 + 1, u**3 - 2 * u**2 + u
    h01, h11 = -2 * u**3 + 3 * u**2, u**3 - u**2
    x = h00 * sx[a] + h10 * h * svx[a] + h01 * sx[b] + h11 * h * svx[b]
    y = h00 * sy[a] + h10 * h * svy[a] + h01 * sy[b] + h11 * h * svy[b]
    vx = svx[a] + (svx[b] - svx[a]) * u
    vy = svy[a] + (svy[b] - svy[a]) * u
    # The cubic follows a curve between fixes better than the chord, but bulges out at a kink
    # the velocities cannot describe (an instant turn): never more than MAX_BULGE_M off the chord.
    lx, ly = sx[a] + (sx[b] - sx[a]) * u, sy[a] + (sy[b] - sy[a]) * u
    off = math.hypot(x - lx, y - ly)
    if off > MAX_BULGE_M:
        x, y = lx + (x - lx) * MAX_BULGE_M / off, ly + (y - ly) * MAX_BULGE_M / off
    return State(x, y, vx, vy)
