"""The short fixed timeline of the pipeline tests: where the car truly was at each second.

Fixed timeline (seconds from START, photos every 2 s at t = 0.5, 2.5, ...):
  0-60     drive east at 10 m/s                     (600 m)
  60-64    brake at 2.5 m/s² to a red light          (20 m)
  64-124   stand at the light for a minute (GPS noise)
  124-128  pull away at 2.5 m/s²                     (20 m)
  128-158  drive east at 10 m/s                     (300 m)
  158-188  sharp 90° corner at t=158: north at 5 m/s (150 m)
  188-788  parked, camera off (a long break)
  788-908  walk east at 1 m/s (GPS noise)            (120 m)
Positions are local metres east/north of ORIGIN; GPS noise is a random walk pulled back to the
truth (an Ornstein-Uhlenbeck process, sigma 2.5 m, correlation 20 s) plus 0.7 m jitter.
The photos and GPX files of it are written by :mod:`daemon.demo.camera`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from daemon.core.geo import EARTH_RADIUS_M, local_to_latlon

ORIGIN = (52.5, 13.4)
START = datetime(2024, 6, 1, 9, 0, 0, tzinfo=UTC)
STOP = (64.0, 124.0)
STOP_EDGE_M = 20.0  # braking and pulling away happen within this distance of the light
CORNER_T = 158.0
BREAK = (188.0, 788.0)
WALK = (788.0, 908.0)
END = 908.0
NOISE_SIGMA = 2.5
NOISE_TAU = 20.0
JITTER = 0.7


def truth(t: float) -> tuple[float, float, float]:
    """(east m, north m, speed m/s) at t seconds."""
    if t < 60:
        return 10 * t, 0.0, 10.0
    if t < 64:
        u = t - 60
        return 600 + 10 * u - 1.25 * u * u, 0.0, 10 - 2.5 * u
    if t < 124:
        return 620.0, 0.0, 0.0
    if t < 128:
        u = t - 124
        return 620 + 1.25 * u * u, 0.0, 2.5 * u
    if t < CORNER_T:
        return 640 + 10 * (t - 128), 0.0, 10.0
    if t < BREAK[0]:
        return 940.0, 5 * (t - CORNER_T), 5.0
    if t < WALK[0]:
        return 940.0, 150.0, 0.0
    return 940 + (t - WALK[0]), 150.0, 1.0


def noisy(t: float) -> bool:
    """Where the GPS wanders: at the light and on the walk."""
    return STOP[0] - 10 <= t <= STOP[1] + 10 or t >= WALK[0] - 10


def to_latlon(x: float, y: float) -> tuple[float, float]:
    return local_to_latlon(ORIGIN, x, y)


def to_xy(lat: float, lon: float) -> tuple[float, float]:
    k = math.pi * EARTH_RADIUS_M / 180.0
    return (lon - ORIGIN[1]) * k * math.cos(math.radians(ORIGIN[0])), (lat - ORIGIN[0]) * k


@dataclass(frozen=True)
class Fix:
    t: float
    lat: float
    lon: float
    ele: float


def gps_track(seed: int, step: float = 1.0) -> list[Fix]:
    """1 Hz GPS fixes (none during the break), noisy where :func:`noisy` says so."""
    rng = random.Random(seed)
    rho = math.exp(-step / NOISE_TAU)
    nx = ny = 0.0
    fixes = []
    t = 0.0
    while t <= END + 1e-9:
        if not BREAK[0] + 1 < t < WALK[0] - 12:
            nx = rho * nx + math.sqrt(1 - rho * rho) * rng.gauss(0, NOISE_SIGMA)
            ny = rho * ny + math.sqrt(1 - rho * rho) * rng.gauss(0, NOISE_SIGMA)
            x, y, _ = truth(t)
            if noisy(t):
                x += nx + rng.gauss(0, JITTER)
                y += ny + rng.gauss(0, JITTER)
            lat, lon = to_latlon(x, y)
            fixes.append(Fix(t, lat, lon, 30.0 + 0.01 * t))
        t += step
    return fixes


def photo_times() -> list[float]:
    """When the camera fired: every 2 s, half a second after the GPS ticks, none while parked."""
    times = []
    t = 0.5
    while t < END:
        if not BREAK[0] <= t < WALK[0]:
            times.append(t)
        t += 2.0
    return times


def at(t: float) -> datetime:
    return START + timedelta(seconds=t)


def interpolate(fixes: list[Fix], t: float) -> tuple[float, float]:
    """Linear interpolation of the fixes at t (the analytic reference for geotagging)."""
    for a, b in zip(fixes, fixes[1:], strict=False):
        if a.t <= t <= b.t:
            w = (t - a.t) / (b.t - a.t)
            return a.lat + w * (b.lat - a.lat), a.lon + w * (b.lon - a.lon)
    raise ValueError(f"{t} outside the track")


def phase(t: float) -> str:
    """The part of the story a photo belongs to."""
    if t < STOP[0] - 4:
        return "drive"
    if t < STOP[1] + 4:
        return "stop"  # braking, standing, pulling away: all within 20 m of the light
    if t < CORNER_T:
        return "drive"
    if t < BREAK[0]:
        return "corner"
    return "walk"


def camera_time(t: float, camera_tz: timedelta, clock_error_s: float = 0.0) -> datetime:
    """The naive local time a camera in zone ``camera_tz`` writes for true time ``t``."""
    return (at(t) + camera_tz + timedelta(seconds=clock_error_s)).replace(tzinfo=None)
