"""Synthetic drives with a known truth: for `demo`, the tests and the benchmarks.

Two of them. :func:`plan_drive` plans a longer route near a city (straights at 10-13 m/s, 90°
turns at intersections, a sharp corner, a minute at a red light, a slower stretch, a long break
parked) with per-photo ground truth and a 1 Hz GPS log; :func:`write_drive` writes it as real
JPEGs (EXIF in camera local time) and a GPX file, fast enough for tens of thousands of photos.

The module-level functions below describe a short fixed timeline used by the pipeline tests.
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
"""

from __future__ import annotations

import io
import math
import random
from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from pathlib import Path

import gpxpy.gpx
import piexif
from PIL import Image

from daemon.core.geo import EARTH_RADIUS_M, normalize_deg

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
    k = math.pi * EARTH_RADIUS_M / 180.0
    return ORIGIN[0] + y / k, ORIGIN[1] + x / (k * math.cos(math.radians(ORIGIN[0])))


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


def write_gpx(path: Path, fixes: list[Fix]) -> None:
    """A real GPX 1.1 file of the fixes (one track, one segment), written with gpxpy."""
    doc = gpxpy.gpx.GPX()
    trk = gpxpy.gpx.GPXTrack()
    seg = gpxpy.gpx.GPXTrackSegment()
    for f in fixes:
        seg.points.append(gpxpy.gpx.GPXTrackPoint(f.lat, f.lon, elevation=f.ele, time=at(f.t)))
    trk.segments.append(seg)
    doc.tracks.append(trk)
    path.write_text(doc.to_xml(version="1.1"), encoding="utf-8")


def write_jpeg(
    path: Path,
    local_time: datetime | None,
    *,
    make: str = "Acme",
    model: str = "DashCam 1",
    gps: tuple[float, float] | None = None,
) -> None:
    """A small real JPEG whose EXIF holds a naive camera time (with SubSec) and maybe GPS."""
    image = Image.new("RGB", (32, 24), (90, 140, 200))
    zeroth = {piexif.ImageIFD.Make: make.encode(), piexif.ImageIFD.Model: model.encode()}
    exif_ifd: dict[int, bytes] = {}
    gps_ifd: dict[int, object] = {}
    if local_time is not None:
        exif_ifd[piexif.ExifIFD.DateTimeOriginal] = local_time.strftime(
            "%Y:%m:%d %H:%M:%S"
        ).encode()
        exif_ifd[piexif.ExifIFD.SubSecTimeOriginal] = (
            f"{local_time.microsecond // 1000:03d}".encode()
        )
    if gps is not None:
        lat, lon = gps
        gps_ifd = {
            piexif.GPSIFD.GPSLatitudeRef: b"N" if lat >= 0 else b"S",
            piexif.GPSIFD.GPSLatitude: _dms(abs(lat)),
            piexif.GPSIFD.GPSLongitudeRef: b"E" if lon >= 0 else b"W",
            piexif.GPSIFD.GPSLongitude: _dms(abs(lon)),
        }
    blob = piexif.dump({"0th": zeroth, "Exif": exif_ifd, "GPS": gps_ifd})
    image.save(path, "JPEG", exif=blob, quality=70)


def _dms(value: float) -> tuple[tuple[int, int], ...]:
    d = int(value)
    m = int((value - d) * 60)
    s = round(((value - d) * 60 - m) * 60 * 1_000_000)
    return ((d, 1), (m, 1), (s, 1_000_000))


def camera_time(t: float, camera_tz: timedelta, clock_error_s: float = 0.0) -> datetime:
    """The naive local time a camera in zone ``camera_tz`` writes for true time ``t``."""
    return (at(t) + camera_tz + timedelta(seconds=clock_error_s)).replace(tzinfo=None)


def jpeg_bytes(
    local_time: datetime, *, size: tuple[int, int] = (32, 24), quality: int = 70
) -> bytes:
    """A photo's bytes at the fixed timeline's look (see :func:`write_jpeg_bytes` for a drive)."""
    image = Image.new("RGB", size, (90, 140, 200))
    exif_ifd = {
        piexif.ExifIFD.DateTimeOriginal: local_time.strftime("%Y:%m:%d %H:%M:%S").encode(),
        piexif.ExifIFD.SubSecTimeOriginal: f"{local_time.microsecond // 1000:03d}".encode(),
    }
    zeroth = {piexif.ImageIFD.Make: b"Acme", piexif.ImageIFD.Model: b"DashCam 1"}
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=piexif.dump({"0th": zeroth, "Exif": exif_ifd}), quality=quality)
    return buf.getvalue()


# -- A planned drive (plan_drive / write_drive): a longer route with per-photo ground truth --------

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


def _latlon(origin: tuple[float, float], x: float, y: float) -> tuple[float, float]:
    k = math.pi * EARTH_RADIUS_M / 180.0
    return origin[0] + y / k, origin[1] + x / (k * math.cos(math.radians(origin[0])))


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
) -> Drive:
    """Plan a drive starting at ``start`` (aware) from ``origin``, going ``heading`` first.

    One lap (see :func:`route`) takes about 18 minutes with a 12-minute break and gives about 185
    photos at 2 s; ``laps`` repeats it onwards from where the last lap ended (benchmarks ask for
    thousands of photos). Photos come every ``interval_s`` from ``first_photo_s`` (off the GPS
    second ticks), also while standing, but not during breaks. The GPS log has a fix every
    second, off during breaks; its noise is a random walk pulled back to the truth (sigma
    ``gps_noise_m``, correlation 20 s) plus jitter, the same for a seed.
    """
    if start.tzinfo is None:
        raise ValueError("plan_drive needs an aware start time")
    if interval_s <= 0 or laps < 1:
        raise ValueError("interval_s must be positive and laps at least 1")
    phases = [p for _ in range(laps) for p in route(stop_s, break_s)]
    planner = _Planner(phases, heading)
    track, measured = _gps_log(planner, origin, start, seed, gps_noise_m)
    photos = []
    t = first_photo_s
    while t < planner.end:
        pose = planner.pose(t)
        if not pose.camera_off:
            lat, lon = _latlon(origin, pose.x, pose.y)
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
        lat, lon = _latlon(origin, x, y)
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


# -- Writing the drive: real JPEGs (EXIF spliced into a cached picture) and the GPX file --------

Zone = str | tzinfo | timedelta


def _zone(camera_tz: Zone) -> tzinfo:
    if isinstance(camera_tz, timedelta):
        return timezone(camera_tz)
    if isinstance(camera_tz, str):
        from daemon.pipeline.dates import parse_zone

        return parse_zone(camera_tz)[0]
    return camera_tz


@lru_cache(maxsize=16)
def _picture(size: tuple[int, int], quality: int) -> tuple[bytes, bytes]:
    """A noisy picture encoded once per size and quality, split where the EXIF segment goes.

    A 64×64 noise tile repeated over the frame compresses as badly as pure noise (JPEG codes each
    8×8 block on its own), so 2400×1800 at quality 85 makes a 3 MB file for milliseconds of work.
    """
    tile = Image.frombytes(
        "RGB", (64, 64), random.Random(size[0] * 7919 + size[1]).randbytes(12288)
    )
    image = Image.new("RGB", size)
    for x in range(0, size[0], 64):
        for y in range(0, size[1], 64):
            image.paste(tile, (x, y))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    data = buf.getvalue()
    at = 2  # after SOI, and after the JFIF APP0 Pillow writes first
    if data[2:4] == b"\xff\xe0":
        at = 4 + int.from_bytes(data[4:6], "big")
    return data[:at], data[at:]


def _exif(
    photo: Photo,
    zone: tzinfo,
    camera_offset_s: float,
    with_gps: bool,
    make: str,
    model: str,
) -> bytes:
    local = (photo.time + timedelta(seconds=camera_offset_s)).astimezone(zone).replace(tzinfo=None)
    exif_ifd = {
        piexif.ExifIFD.DateTimeOriginal: local.strftime("%Y:%m:%d %H:%M:%S").encode(),
        piexif.ExifIFD.SubSecTimeOriginal: f"{local.microsecond // 1000:03d}".encode(),
    }
    zeroth = {piexif.ImageIFD.Make: make.encode(), piexif.ImageIFD.Model: model.encode()}
    gps_ifd: dict[int, object] = {}
    if with_gps:
        g = piexif.GPSIFD
        t = photo.time
        gps_ifd = {
            g.GPSVersionID: (2, 2, 0, 0),
            g.GPSLatitudeRef: b"N" if photo.gps_lat >= 0 else b"S",
            g.GPSLatitude: _dms(abs(photo.gps_lat)),
            g.GPSLongitudeRef: b"E" if photo.gps_lon >= 0 else b"W",
            g.GPSLongitude: _dms(abs(photo.gps_lon)),
            g.GPSAltitudeRef: 0 if photo.gps_ele >= 0 else 1,
            g.GPSAltitude: (round(abs(photo.gps_ele) * 100), 100),
            g.GPSImgDirectionRef: b"T",
            g.GPSImgDirection: (round(photo.heading * 100) % 36000, 100),
            g.GPSDateStamp: t.strftime("%Y:%m:%d").encode(),
            g.GPSTimeStamp: (
                (t.hour, 1),
                (t.minute, 1),
                (t.second * 1000 + t.microsecond // 1000, 1000),
            ),
        }
    payload = piexif.dump({"0th": zeroth, "Exif": exif_ifd, "GPS": gps_ifd})
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


def camera_local_time(photo: Photo, camera_tz: Zone, camera_offset_s: float = 0.0) -> datetime:
    """The naive time the camera writes for ``photo`` (its clock ``camera_offset_s`` ahead)."""
    moment = photo.time + timedelta(seconds=camera_offset_s)
    return moment.astimezone(_zone(camera_tz)).replace(tzinfo=None)


def write_jpeg_bytes(
    photo: Photo,
    *,
    camera_tz: Zone = "+02:00",
    camera_offset_s: float = 0.0,
    with_gps_in_exif: bool = False,
    jpeg_size: tuple[int, int] = (64, 48),
    quality: int = 80,
    make: str = "Acme",
    model: str = "DashCam 1",
) -> bytes:
    """The bytes of one photo, for callers that write them at their own pace (a slow camera).

    EXIF: DateTimeOriginal + SubSecTimeOriginal in the camera's zone with no offset tag (as most
    cameras write), its clock ``camera_offset_s`` ahead of true time; Make/Model; with
    ``with_gps_in_exif``, the GPS log's position at the true time, altitude, true heading and the
    GPS time stamp (true UTC).
    """
    head, body = _picture(tuple(jpeg_size), quality)  # type: ignore[arg-type]
    segment = _exif(photo, _zone(camera_tz), camera_offset_s, with_gps_in_exif, make, model)
    return b"".join((head, segment, body))


def write_drive(
    drive: Drive,
    folder: Path,
    *,
    camera_tz: Zone = "+02:00",
    camera_offset_s: float = 0.0,
    with_gps_in_exif: bool = False,
    jpeg_size: tuple[int, int] = (64, 48),
    quality: int = 80,
    name_pattern: str = "G%07d.JPG",
    gpx_name: str | None = "track.gpx",
) -> list[Path]:
    """Write every photo of ``drive`` into ``folder`` (names from ``name_pattern`` and the
    photo's index) and the GPS log as ``gpx_name`` (None: no GPX). Returns the photo paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    zone = _zone(camera_tz)
    paths = []
    for photo in drive.photos:
        path = folder / (name_pattern % photo.index)
        path.write_bytes(
            write_jpeg_bytes(
                photo,
                camera_tz=zone,
                camera_offset_s=camera_offset_s,
                with_gps_in_exif=with_gps_in_exif,
                jpeg_size=jpeg_size,
                quality=quality,
            )
        )
        paths.append(path)
    if gpx_name:
        (folder / gpx_name).write_text(drive.gpx_text(), encoding="utf-8")
    return paths
