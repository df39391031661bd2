"""How right the pipeline is on a drive with known truth: duplicates, headings, positions.

The drive is made here, independently of ``daemon.demo``: a car cruising at 11 m/s, braking at
3 m/s² to a 40 s stop at a red light and pulling away at 2.5 m/s², 6 s turns of 30-90°, a
10-minute break (no photos, the logger still on) every ~900 photos. The GPX track is 1 Hz with
1 m of noise per axis; a photo every 2 s, 0.5 s out of phase with the fixes. The pipeline runs
as ``process --interpolate-directions`` runs it (``run_pipeline`` with the settings' defaults),
once as configured and once with smoothing off (raw interpolation), when it has that option.

Run: .venv/bin/python tests/bench/bench_accuracy.py [photos ...]   (default: 2000 20000)
"""

from __future__ import annotations

import dataclasses
import math
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from daemon.core.config import Settings
from daemon.core.geo import EARTH_RADIUS_M, angle_diff_deg, distance_m
from daemon.media.gpx import Track
from daemon.pipeline import PipelineOptions, run_pipeline
from daemon.pipeline.records import DUPLICATE, ImageRecord

DT = 0.1  # simulation step, s
CRUISE = 11.0  # m/s
BRAKE = 3.0  # m/s²
PULL = 2.5  # m/s²
RED_S = 40.0
TURN_S = 6.0
BREAK_S = 600.0
PHOTO_EVERY = 2.0
PHASE = 0.5  # photo times relative to the 1 Hz fixes
NOISE_M = 1.0
LAT0, LON0 = 47.37, 8.54
T0 = datetime(2024, 6, 1, 8, 0, tzinfo=UTC).timestamp()


@dataclass
class Drive:
    """Truth at every step, the noisy track, the photo times, and what each step was doing."""

    ts: list[float] = field(default_factory=list)
    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)
    speeds: list[float] = field(default_factory=list)
    headings: list[float] = field(default_factory=list)  # degrees from north
    phase: list[str] = field(default_factory=list)  # cruise, turn, brake, red, pull, break
    stop_no: list[int] = field(default_factory=list)  # which red light (-1: none)
    photo_times: list[float] = field(default_factory=list)

    def at(self, t: float) -> int:
        return min(len(self.ts) - 1, max(0, round((t - self.ts[0]) / DT)))


@dataclass(frozen=True)
class Style:
    """How the camera moves: a car by default; :data:`WALK` is a pedestrian."""

    cruise: float = CRUISE  # m/s
    brake: float = BRAKE  # m/s²
    pull: float = PULL
    red_s: float = RED_S  # how long each stop lasts
    turn_share: float = 0.55  # of the events between straights, how many are turns (else stops)
    turn_deg: tuple[float, float] = (30.0, 90.0)
    turn_s: float = TURN_S
    legs_s: tuple[float, float] = (20.0, 60.0)  # straights between events


DRIVE = Style()
NO_STOP = Style(turn_share=1.0)
# A walk at 1 m/s: right-angle corners in 3 s, 20 s waits at crossings, stopping in a second.
WALK = Style(cruise=1.0, brake=1.0, pull=1.0, red_s=20.0, turn_share=0.7,
             turn_deg=(90.0, 90.0), turn_s=3.0, legs_s=(15.0, 45.0))  # fmt: skip


def make_drive(photos: int, seed: int = 15, style: Style = DRIVE) -> Drive:
    rng = random.Random(seed)
    d = Drive()
    t, x, y, v, h = 0.0, 0.0, 0.0, style.cruise, 0.0
    stops = 0
    next_break = 900
    breaks = 0

    def step(phase: str, accel: float = 0.0, turn_rate: float = 0.0, stop: int = -1) -> None:
        nonlocal t, x, y, v, h
        v = max(0.0, v + accel * DT)
        h = (h + turn_rate * DT) % 360.0
        x += v * math.sin(math.radians(h)) * DT
        y += v * math.cos(math.radians(h)) * DT
        t += DT
        d.ts.append(t)
        d.xs.append(x)
        d.ys.append(y)
        d.speeds.append(v)
        d.headings.append(h)
        d.phase.append(phase)
        d.stop_no.append(stop)

    def photos_taken() -> int:
        return (len(d.phase) - breaks * round(BREAK_S / DT)) // round(PHOTO_EVERY / DT)

    while photos_taken() < photos:
        for _ in range(round(rng.uniform(*style.legs_s) / DT)):
            step("cruise")
        if photos_taken() >= next_break:
            for _ in range(round(BREAK_S / DT)):
                v = 0.0
                step("break")
            next_break += 900
            breaks += 1
            while v < style.cruise:
                step("pull", style.pull)
            v = style.cruise
            continue
        if rng.random() < style.turn_share:
            rate = rng.uniform(*style.turn_deg) / style.turn_s * rng.choice((-1, 1))
            for _ in range(round(style.turn_s / DT)):
                step("turn", turn_rate=rate)
        else:
            while v > 0:
                step("brake", -style.brake, stop=stops)
            for _ in range(round(style.red_s / DT)):
                step("red", stop=stops)
            while v < style.cruise:
                step("pull", style.pull, stop=stops)
            v = style.cruise
            stops += 1
    # Photos: every 2 s except during breaks, 0.5 s out of phase with the fixes.
    pt = PHASE
    while len(d.photo_times) < photos and pt < d.ts[-1]:
        if d.phase[d.at(pt)] != "break":
            d.photo_times.append(pt)
        pt += PHOTO_EVERY
    return d


K = math.pi * EARTH_RADIUS_M / 180.0
SCALE = math.cos(math.radians(LAT0))


def latlon(x: float, y: float) -> tuple[float, float]:
    return LAT0 + y / K, LON0 + x / (K * SCALE)


def noisy_track(d: Drive, seed: int = 16) -> Track:
    rng = random.Random(seed)
    points = []
    for s in range(0, int(d.ts[-1]) + 1):
        i = d.at(float(s))
        lat, lon = latlon(d.xs[i] + rng.gauss(0, NOISE_M), d.ys[i] + rng.gauss(0, NOISE_M))
        points.append((T0 + s, lat, lon, None))
    return Track.from_points(points)


def records(d: Drive, exif_noise_m: float | None = None, seed: int = 17) -> list[ImageRecord]:
    """The photos, timed; with ``exif_noise_m`` each also carries its own GPS position in EXIF
    (the truth plus that much noise per axis), as a camera with a GPS writes it."""
    rng = random.Random(seed)
    out = []
    for n, t in enumerate(d.photo_times):
        when = datetime.fromtimestamp(T0 + t, UTC)
        rec = ImageRecord(Path(f"/drive/IMG_{n:05d}.jpg"), when, time_source="exif")
        if exif_noise_m is not None:
            i = d.at(t)
            x = d.xs[i] + rng.gauss(0, exif_noise_m)
            lat, lon = latlon(x, d.ys[i] + rng.gauss(0, exif_noise_m))
            rec = rec.replace(lat=lat, lon=lon, position_source="exif")
        out.append(rec)
    return out


def p95(values: list[float]) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(0.95 * len(s)))]


def measure(
    d: Drive,
    track: Track | None,
    options: PipelineOptions,
    exif_noise_m: float | None = None,
    moving_speed: float = 1.0,
) -> dict[str, float]:
    """The pipeline's figures on the drive: with ``track`` None, from the photos' EXIF GPS.
    A photo faster than ``moving_speed`` (m/s) is moving, one slower standing."""
    recs = records(d, exif_noise_m)
    start = time.perf_counter()
    result = run_pipeline(recs, track, options)
    took = time.perf_counter() - start
    truth = {r.path: d.at(d.photo_times[n]) for n, r in enumerate(recs)}
    kept = [r for s in result.sequences for r in s]
    dup_paths = {r.path for r in result.duplicates if r.error and r.error.type == DUPLICATE}
    moving = [p for p, i in truth.items() if d.speeds[i] > moving_speed]
    dropped = sum(1 for p in moving if p in dup_paths)
    per_stop: dict[int, int] = {}
    for i in truth.values():
        if d.stop_no[i] >= 0 and d.speeds[i] <= moving_speed:
            per_stop.setdefault(d.stop_no[i], 0)
    for r in kept:
        i = truth[r.path]
        if d.stop_no[i] >= 0 and d.speeds[i] <= moving_speed:
            per_stop[d.stop_no[i]] += 1
    extra = [max(0, k - 1) for k in per_stop.values()]
    lost = sum(1 for k in per_stop.values() if k == 0)
    heading_err = [
        angle_diff_deg(r.heading, d.headings[truth[r.path]])
        for r in kept
        if d.speeds[truth[r.path]] > moving_speed and r.heading is not None
    ]

    def pos_err(phases: set[str] | None) -> float:
        errs = []
        for r in kept:
            i = truth[r.path]
            if phases is None or d.phase[i] in phases:
                errs.append(distance_m(*r.position, *latlon(d.xs[i], d.ys[i])))
        return p95(errs)

    return {
        "seconds": took,
        "photos": len(recs),
        "sequences": len(result.sequences),
        "moving": len(moving),
        "dropped": dropped,
        "stops": len(per_stop),
        "extra": sum(extra) / max(1, len(extra)),
        "stops_lost": lost,
        "heading_p95": p95(heading_err),
        "pos_p95": pos_err(None),
        "pos_p95_turns": pos_err({"turn"}),
        "pos_p95_stops": pos_err({"brake", "red", "pull"}),
    }


def options(**overrides: object) -> PipelineOptions:
    names = {f.name for f in dataclasses.fields(PipelineOptions)}
    kept = {k: v for k, v in overrides.items() if k in names}
    return PipelineOptions.from_settings(Settings(), interpolate_directions=True, **kept)


def report(n: int) -> None:
    d = make_drive(n)
    track = noisy_track(d)
    ours = measure(d, track, options())
    raw = measure(d, track, options(smoothing=False))
    print(
        f"== {n} photos, {ours['sequences']} sequences, {len(track)} fixes, {ours['stops']} stops"
    )
    print(f"run_pipeline: {ours['seconds']:.2f} s (raw: {raw['seconds']:.2f} s)")
    print(
        f"moving photos dropped as duplicates: {ours['dropped']} of {ours['moving']} "
        f"({100 * ours['dropped'] / max(1, ours['moving']):.2f} %)"
    )
    print(
        f"standing photos kept beyond one per stop (mean): {ours['extra']:.2f} "
        f"(stops with none kept: {ours['stops_lost']})"
    )
    print(f"heading error p95 (moving photos): {ours['heading_p95']:.2f} deg")
    print(
        f"position error p95: raw {raw['pos_p95']:.2f} m, smoothed {ours['pos_p95']:.2f} m "
        f"({ours['pos_p95'] / raw['pos_p95']:.2f}x); turns raw {raw['pos_p95_turns']:.2f} m, "
        f"smoothed {ours['pos_p95_turns']:.2f} m; stops raw {raw['pos_p95_stops']:.2f} m, "
        f"smoothed {ours['pos_p95_stops']:.2f} m"
    )


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [2000, 20000]
    for n in sizes:
        report(n)


if __name__ == "__main__":
    main()
