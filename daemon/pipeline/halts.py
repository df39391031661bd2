"""When the camera halted at a stop and set off again, from the raw fixes around it.

The smoother (:mod:`daemon.pipeline.smooth`) rounds a halt off over a few seconds: at walking
pace it reads a walker's last steps before a wait as a crawl, slow enough to be standing. The
raw fixes say more once a stop is known to be there: the camera stood at one place (the mean of
the stop's fixes, a few tenths of a metre sure) and came to it along a line, so the time the
line reaches that place, fitted over all the fixes around, tells when the camera halted. A
photo taken before that time (or after the matching time when it set off) was moving.

For a halt with constant deceleration from speed v that time is the moment the camera was at
v/2: a walker's last photo at 0.6 m/s is moving, at 0.4 m/s standing.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence

# Seconds of fixes before (after) a stop's core the approach (departure) line may use: the
# longest that a line still fits (no corner in it) is taken (tuned on bench_accuracy's walk).
LOOKS_S = (12.0, 18.0, 24.0, 30.0, 36.0)
BENT = 1.5  # a longer line fitting worse than this times the shortest one's is bent
SEARCH_S = 6.0  # how far before (after) the core's start (end) the halt (setting off) may lie
GRID_S = 0.1
MIN_FIXES = 3  # on the line, and at the stop
MIN_LINE_SPEED = 0.5  # m/s: a line slower than this is no way in or out of the stop


class _Sums:
    """Running sums over the fixes (time from an origin near the stop, offset from its place)
    so that any stretch's line fit costs a handful of subtractions."""

    def __init__(self, ts: Sequence[float], dx: Sequence[float], dy: Sequence[float]) -> None:
        self.t, self.tt, self.x, self.xt, self.y, self.yt, self.rr = ([0.0] for _ in range(7))
        for t, x, y in zip(ts, dx, dy, strict=True):
            for acc, v in (
                (self.t, t),
                (self.tt, t * t),
                (self.x, x),
                (self.xt, x * t),
                (self.y, y),
                (self.yt, y * t),
                (self.rr, x * x + y * y),
            ):
                acc.append(acc[-1] + v)

    def gain(self, tau: float, a: int, b: int) -> tuple[float, float]:
        """How much of the fixes a..b-1 a line through the stop's place at ``tau`` explains
        (squared metres), and that line's speed."""
        n = b - a
        st, stt = self.t[b] - self.t[a], self.tt[b] - self.tt[a]
        sx = self.xt[b] - self.xt[a] - tau * (self.x[b] - self.x[a])
        sy = self.yt[b] - self.yt[a] - tau * (self.y[b] - self.y[a])
        s2 = stt - 2 * tau * st + n * tau * tau
        if s2 <= 0:
            return 0.0, 0.0
        return (sx * sx + sy * sy) / s2, math.hypot(sx, sy) / s2

    def residual(self, a: int, b: int) -> float:
        return self.rr[b] - self.rr[a]


def halt_span(
    ts: Sequence[float],
    xs: Sequence[float],
    ys: Sequence[float],
    core_start: float,
    core_end: float,
) -> tuple[float, float] | None:
    """(halted, set off): the times the lines before and after the stop reach its place.

    ``ts``, ``xs``, ``ys``: the fixes (seconds, local metres), in time order; ``core_start``,
    ``core_end``: the first and last photo the smoother found surely standing. None when there
    are too few fixes at the stop to tell; -inf (inf) when nothing came (went) that way."""
    lo = bisect_left(ts, core_start - LOOKS_S[-1])
    hi = bisect_right(ts, core_end + LOOKS_S[-1])
    t, x, y = ts[lo:hi], xs[lo:hi], ys[lo:hi]
    return _span(t, x, y, core_start, core_end)


def _span(
    ts: Sequence[float],
    xs: Sequence[float],
    ys: Sequence[float],
    core_start: float,
    core_end: float,
) -> tuple[float, float] | None:
    """:func:`halt_span` over the fixes around the stop only."""
    a, b = bisect_left(ts, core_start), bisect_right(ts, core_end)
    if b - a < MIN_FIXES:
        return None
    px = sum(xs[a:b]) / (b - a)
    py = sum(ys[a:b]) / (b - a)
    # Times from the core's start: squared epoch seconds would lose every digit that matters.
    sums = _Sums([t - core_start for t in ts], [x - px for x in xs], [y - py for y in ys])
    mid = (core_start + core_end) / 2
    m = bisect_right(ts, mid)
    fits = []
    for look in LOOKS_S:
        lo = bisect_left(ts, core_start - look)
        fits.append(
            _best(
                ts,
                sums,
                core_start,
                core_start - SEARCH_S,
                min(mid, core_start + SEARCH_S),
                lo,
                m,
                before=True,
            )
        )
    halted = _straightest(fits)
    fits = []
    for look in LOOKS_S:
        hi = bisect_right(ts, core_end + look)
        fits.append(
            _best(
                ts,
                sums,
                core_start,
                max(mid, core_end - SEARCH_S),
                core_end + SEARCH_S,
                m,
                hi,
                before=False,
            )
        )
    set_off = _straightest(fits)
    return (-math.inf if halted is None else halted, math.inf if set_off is None else set_off)


def _straightest(fits: list[tuple[float, float, float] | None]) -> float | None:
    """Of the (time, speed, mean squared residual) fits over longer and longer stretches, the
    time of the longest one still as good as the shortest; None when the camera did not come
    (go) that way at MIN_LINE_SPEED."""
    first = fits[0]
    if first is None or first[1] < MIN_LINE_SPEED:
        return None
    chosen = first
    for fit in fits[1:]:
        if fit is None or fit[2] > BENT * first[2]:
            break
        chosen = fit
    return chosen[0]


def _best(
    ts: Sequence[float],
    sums: _Sums,
    origin: float,
    start: float,
    end: float,
    lo: int,
    hi: int,
    *,
    before: bool,
) -> tuple[float, float, float] | None:
    """The time in [start, end] at which a line through the moving fixes (those before it when
    ``before``, else after it, within lo..hi-1) reaching the stop's place fits them best, the
    line's speed and the mean squared residual of all the fixes lo..hi-1; None when too few."""
    best, best_gain, best_speed = None, -1.0, 0.0
    steps = int((end - start) / GRID_S) + 1
    for n in range(steps):
        tau = start + n * GRID_S
        cut = bisect_left(ts, tau, lo, hi)
        a, b = (lo, cut) if before else (cut, hi)
        if b - a < MIN_FIXES:
            continue
        gain, speed = sums.gain(tau - origin, a, b)
        if gain > best_gain:
            best, best_gain, best_speed = tau, gain, speed
    if best is None:
        return None
    return best, best_speed, (sums.residual(lo, hi) - best_gain) / (hi - lo)
