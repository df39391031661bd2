"""When a stop began and ended, told from noisy raw fixes around it."""

from __future__ import annotations

import math
import random
import statistics

from daemon.pipeline.halts import halt_span


def _walk(seed: int, step: float = 1.0) -> tuple[list[float], list[float], list[float]]:
    """Fixes (1 m of noise per axis) of a walk east at 1 m/s that brakes at 1 m/s² to stand
    from t=40 to t=60 and then pulls away north at 1 m/s²: at 1 m/s² the camera is at half
    its pace at t=39.5 and at t=60.5."""
    rng = random.Random(seed)
    ts, xs, ys = [], [], []
    t = 0.0
    while t <= 100.0:
        if t < 39.0:
            x, y = t - 39.5, 0.0
        elif t < 40.0:
            x, y = -((40.0 - t) ** 2) / 2, 0.0
        elif t < 60.0:
            x, y = 0.0, 0.0
        elif t < 61.0:
            x, y = 0.0, (t - 60.0) ** 2 / 2
        else:
            x, y = 0.0, t - 60.5
        ts.append(t)
        xs.append(x + rng.gauss(0, 1.0))
        ys.append(y + rng.gauss(0, 1.0))
        t += step
    return ts, xs, ys


def test_a_walker_halts_and_sets_off_at_half_pace_to_half_a_second() -> None:
    for step, p90_s in ((1.0, 1.0), (2.0, 1.5)):  # a 1 Hz GPX; the photos' own GPS every 2 s
        halted, set_off = [], []
        for seed in range(40):
            span = halt_span(*_walk(seed, step), 43.0, 57.0)
            assert span is not None
            halted.append(abs(span[0] - 39.5))
            set_off.append(abs(span[1] - 60.5))
        for errors in (halted, set_off):
            # Now and then a line too slow to trust: that side is left to the smoother.
            told = sorted(e for e in errors if math.isfinite(e))
            assert len(told) >= 39, (step, errors)
            assert statistics.median(told) <= 0.5, (step, told)
            assert told[int(0.9 * len(told))] <= p90_s, (step, told)


def test_a_stop_at_the_start_of_the_fixes_has_no_halt() -> None:
    ts, xs, ys = _walk(3)
    keep = [k for k, t in enumerate(ts) if t >= 42.0]
    span = halt_span([ts[k] for k in keep], [xs[k] for k in keep], [ys[k] for k in keep], 45, 57)
    assert span is not None and span[0] == -math.inf
    assert abs(span[1] - 60.5) <= 1.5


def test_too_few_fixes_at_the_stop_tell_nothing() -> None:
    ts, xs, ys = _walk(4, step=5.0)
    assert halt_span(ts, xs, ys, 44.0, 46.0) is None
