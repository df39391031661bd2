"""A planned drive with a known truth: for `demo`, the end-to-end tests and the benchmarks.

:func:`plan_drive` plans a longer route near a city (straights at 10-13 m/s, 90° turns at
intersections, a sharp corner, a minute at a red light, a slower stretch, a long break parked)
with per-photo ground truth and a 1 Hz GPS log; :mod:`daemon.demo.camera` writes it as real
JPEGs (EXIF in camera local time) and a GPX file.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from daemon.core.geo import local_to_latlon, normalize_deg
from daemon.demo.timeline import NOISE_TAU

BERLIN = (52.52, 13.40)
AT_LIGHT = "at_light"
PARKED = "parked"


@dataclass(frozen=True)
class Phase:
    """A stretch of constant acceleration from ``v0`` to ``v1`` m/s over ``duration`` s.

    ``turn`` (degrees, clockwise positive) bends the stretch into a circular arc; ``flag`` marks
    its photos; ``camera_off`` is a break: no photos and no GPS log while parked.
    """

    duration: float
    v0: float
    v1: float
    turn: float = 0.0
    flag: str | None = None
    camera_off: bool = False

    @property
    def length(self) -> float:
        return (self.v0 + self.v1) / 2 * self.duration


def route(stop_s: float = 60.0, break_s: float = 720.0) -> list[Phase]:
    """One lap: a 90° right turn at an intersection, a red light, a sharp left corner, a slower
    stretch along a bend, a long break parked, and a 90° left turn after it."""
    arc90 = math.pi / 2 * 10.0 / 5.0  # a 10 m radius at 5 m/s
    arc120 = math.radians(120) * 5.0 / 3.0  # a 5 m radius at 3 m/s
    return [
        Phase(6, 0, 12),
        Phase(40, 12, 12),
        Phase(3, 12, 5),
        Phase(arc90, 5, 5, turn=90),
        Phase(4, 5, 13),
        Phase(30, 13, 13),
        Phase(5, 13, 0),
        Phase(stop_s, 0, 0, flag=AT_LIGHT),
        Phase(5, 0, 11),
        Phase(25, 11, 11),
        Phase(4, 11, 3),
        Phase(arc120, 3, 3, turn=-120),
        Phase(4, 3, 10),
        Phase(20, 10, 10),
        Phase(2, 10, 6),
        Phase(40, 6, 6, turn=30),  # the slower stretch, along a gentle bend
        Phase(3, 6, 0),
        Phase(8, 0, 0, flag=PARKED),  # the camera runs on for a few seconds after parking
        Phase(break_s, 0, 0, flag=PARKED, camera_off=True),
        Phase(6, 0, 0, flag=PARKED),
        Phase(6, 0, 12),
        Phase(45, 12, 12),
        Phase(3, 12, 5),
        Phase(arc90, 5, 5, turn=-90),
        Phase(4, 5, 12),
        Phase(30, 12, 12),
        Phase(5, 12, 0),
    ]


@dataclass(frozen=True)
class Pose:
    """The truth at one moment: local metres east/north of the origin, heading, speed."""

    x: float
    y: float
    heading: float
    speed: float
    flag: str | None
    camera_off: bool


@dataclass(frozen=True)
class TrackPoint:
    """One GPS fix of the log: true UTC time, measured (noisy) position and elevation."""

    time: datetime
    lat: float
    lon: float
    ele: float


@dataclass(frozen=True)
class Photo:
    """One photo and its ground truth.

    ``lat``/``lon``/``heading`` are where the camera really was; ``gps_lat``/``gps_lon``/
    ``gps_ele`` are the GPS log interpolated at ``time`` (what a perfect geotagger finds, and
    what a camera with its own GPS would write). ``flag`` is AT_LIGHT, PARKED or None (moving).
    """

    index: int  # 1-based, the number in the file name
    t: float  # seconds since the start of the drive
    time: datetime  # true UTC time
    lat: float
    lon: float
    ele: float
    heading: float
    speed: float
    flag: str | None
    gps_lat: float
    gps_lon: float
    gps_ele: float


@dataclass
class Drive:
    """A planned drive: its photos (with truth) and the GPS log."""

    start: datetime
    origin: tuple[float, float]
    phases: list[Phase]
    photos: list[Photo]
    track: list[TrackPoint]

    @property
    def duration(self) -> float:
        return sum(p.duration for p in self.phases)

    def gpx_text(self) -> str:
        """The GPS log as GPX 1.1 (one track, one segment; the logger was off during breaks)."""
        lines = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<gpx version="1.1" creator="mapillary-daemon sample" '
            'xmlns="http://www.topografix.com/GPX/1/1">',
            "<trk><name>sample drive</name><trkseg>",
        ]
        for p in self.track:
            stamp = p.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            lines.append(
                f'<trkpt lat="{p.lat:.8f}" lon="{p.lon:.8f}"><ele>{p.ele:.2f}</ele>'
                f"<time>{stamp}</time></trkpt>"
            )
        lines.append("</trkseg></trk></gpx>")
        return "\n".join(lines) + "\n"


def _advance(x: float, y: float, heading: float, s: float, turn_per_m: float) -> tuple:
    """Where a path of constant curvature (degrees per metre) leads after s metres."""
    if abs(turn_per_m) < 1e-12:
        h = math.radians(heading)
        return x + s * math.sin(h), y + s * math.cos(h), heading
    k = math.radians(turn_per_m)
    h0 = math.radians(heading)
    h1 = h0 + k * s
    return (
        x + (math.cos(h0) - math.cos(h1)) / k,
        y + (math.sin(h1) - math.sin(h0)) / k,
        normalize_deg(math.degrees(h1)),
    )


class _Planner:
    """The truth along a list of phases, looked up by time."""

    def __init__(self, phases: list[Phase], heading: float) -> None:
        self.phases = phases
        self.starts: list[tuple[float, float, float, float]] = []  # (t, x, y, heading)
        t = x = y = 0.0
        for phase in phases:
            self.starts.append((t, x, y, heading))
            x, y, heading = _advance(x, y, heading, phase.length, self._curvature(phase))
            t += phase.duration
        self.end = t
        self.times = [s[0] for s in self.starts]

    @staticmethod
    def _curvature(phase: Phase) -> float:
        return phase.turn / phase.length if phase.turn and phase.length > 0 else 0.0

    def pose(self, t: float) -> Pose:
        i = max(0, bisect_right(self.times, t) - 1)
        phase = self.phases[i]
        t0, x, y, heading = self.starts[i]
        u = min(max(t - t0, 0.0), phase.duration)
        accel = (phase.v1 - phase.v0) / phase.duration if phase.duration else 0.0
        s = phase.v0 * u + 0.5 * accel * u * u
        x, y, heading = _advance(x, y, heading, s, self._curvature(phase))
        return Pose(x, y, heading, phase.v0 + accel * u, phase.flag, phase.camera_off)


def _elevation(x: float, y: float) -> float:
    return 34.0 + 3.0 * math.sin(x / 400.0) + 2.0 * math.cos(y / 300.0)


def plan_drive(
    start: datetime,
    *,
    seed: int = 0,
    interval_s: float = 2.0,
    origin: tuple[float, float] = BERLIN,
    heading: float = 90.0,
    laps: int = 1,
    stop_s: float = 60.0,
    break_s: float = 720.0,
    gps_noise_m: float = 1.5,
    first_photo_s: float = 0.5,
    stop_spread_s: float = 0.0,
    lap: list[Phase] | None = None,
) -> Drive:
    """Plan a drive starting at ``start`` (aware) from ``origin``, going ``heading`` first.

    One lap (see :func:`route`) takes about 18 minutes with a 12-minute break and gives about 185
    photos at 2 s; ``laps`` repeats it onwards from where the last lap ended (benchmarks ask for
    thousands of photos). Photos come every ``interval_s`` from ``first_photo_s`` (off the GPS
    second ticks), also while standing, but not during breaks. The GPS log has a fix every
    second, off during breaks; its noise is a random walk pulled back to the truth (sigma
    ``gps_noise_m``, correlation 20 s) plus jitter, the same for a seed. ``stop_spread_s`` makes
    each lap's red light last ``stop_s`` give or take up to that much (drawn from the seed), as
    real lights do; 0 repeats the lap exactly. ``lap`` replaces :func:`route` (a walk, a drive
    that never stops).
    """
    if start.tzinfo is None:
        raise ValueError("plan_drive needs an aware start time")
    if interval_s <= 0 or laps < 1:
        raise ValueError("interval_s must be positive and laps at least 1")
    lights = random.Random(seed * 7919 + 1)
    phases = [
        p
        for _ in range(laps)
        for p in (lap or route(max(1.0, stop_s + lights.uniform(-1, 1) * stop_spread_s), break_s))
    ]
    planner = _Planner(phases, heading)
    track, measured = _gps_log(planner, origin, start, seed, gps_noise_m)
    photos: list[Photo] = []
    t = first_photo_s
    while t < planner.end:
        pose = planner.pose(t)
        if not pose.camera_off:
            lat, lon = local_to_latlon(origin, pose.x, pose.y)
            glat, glon, gele = _interpolate_log(measured, t)
            photos.append(
                Photo(
                    index=len(photos) + 1,
                    t=t,
                    time=(start + timedelta(seconds=t)).astimezone(UTC),
                    lat=lat,
                    lon=lon,
                    ele=_elevation(pose.x, pose.y),
                    heading=pose.heading,
                    speed=pose.speed,
                    flag=pose.flag,
                    gps_lat=glat,
                    gps_lon=glon,
                    gps_ele=gele,
                )
            )
        t += interval_s
    return Drive(start.astimezone(UTC), origin, phases, photos, track)


def _gps_log(
    planner: _Planner, origin: tuple[float, float], start: datetime, seed: int, sigma: float
) -> tuple[list[TrackPoint], list[tuple[float, float, float, float]]]:
    """The 1 Hz log, and the same fixes as (t, lat, lon, ele) for interpolation."""
    rng = random.Random(seed)
    rho = math.exp(-1.0 / NOISE_TAU)
    spread = math.sqrt(1 - rho * rho)
    nx = ny = 0.0
    track: list[TrackPoint] = []
    measured: list[tuple[float, float, float, float]] = []
    for second in range(int(planner.end) + 1):
        t = float(second)
        pose = planner.pose(t)
        # The logger keeps going for a few seconds into a break and wakes a few seconds early.
        if pose.camera_off and _deep_in_break(planner, t):
            continue
        nx = rho * nx + spread * rng.gauss(0, sigma)
        ny = rho * ny + spread * rng.gauss(0, sigma)
        x = pose.x + nx + rng.gauss(0, 0.2 * sigma)
        y = pose.y + ny + rng.gauss(0, 0.2 * sigma)
        lat, lon = local_to_latlon(origin, x, y)
        ele = _elevation(pose.x, pose.y) + rng.gauss(0, 0.3 * sigma)
        track.append(TrackPoint(start + timedelta(seconds=t), lat, lon, ele))
        measured.append((t, lat, lon, ele))
    return track, measured


def _deep_in_break(planner: _Planner, t: float, margin: float = 3.0) -> bool:
    i = max(0, bisect_right(planner.times, t) - 1)
    t0 = planner.times[i]
    return t0 + margin < t < t0 + planner.phases[i].duration - margin


def _interpolate_log(
    measured: list[tuple[float, float, float, float]], t: float
) -> tuple[float, float, float]:
    """The log at t, linear between the fixes around it (lat and lon separately)."""
    i = bisect_right(measured, t, key=lambda m: m[0])
    if i == 0 or i == len(measured):
        _, lat, lon, ele = measured[0 if i == 0 else -1]
        return lat, lon, ele
    (ta, la, oa, ea), (tb, lb, ob, eb) = measured[i - 1], measured[i]
    w = (t - ta) / (tb - ta)
    return la + w * (lb - la), oa + w * (ob - oa), ea + w * (eb - ea)
