"""A synthetic drive with a known truth: for `demo`, the tests and the benchmarks.

Timeline (seconds from START, photos every 2 s at t = 0.5, 2.5, ...):
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

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import gpxpy.gpx
import piexif
from PIL import Image

from daemon.geo import EARTH_RADIUS_M

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
    """A photo's bytes, for callers that write them at their own pace (a slow camera)."""
    import io

    image = Image.new("RGB", size, (90, 140, 200))
    exif_ifd = {
        piexif.ExifIFD.DateTimeOriginal: local_time.strftime("%Y:%m:%d %H:%M:%S").encode(),
        piexif.ExifIFD.SubSecTimeOriginal: f"{local_time.microsecond // 1000:03d}".encode(),
    }
    zeroth = {piexif.ImageIFD.Make: b"Acme", piexif.ImageIFD.Model: b"DashCam 1"}
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=piexif.dump({"0th": zeroth, "Exif": exif_ifd}), quality=quality)
    return buf.getvalue()


def write_drive(
    folder: Path,
    *,
    seed: int = 0,
    camera_tz: timedelta = timedelta(hours=2),
    clock_error_s: float = 0.0,
    gpx_name: str | None = "track.gpx",
) -> list[Path]:
    """Write the whole drive: one JPEG per photo time (G0000001.JPG, ...) and the GPX log."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, t in enumerate(photo_times(), start=1):
        path = folder / f"G{i:07d}.JPG"
        write_jpeg(path, camera_time(t, camera_tz, clock_error_s))
        paths.append(path)
    if gpx_name:
        write_gpx(folder / gpx_name, gps_track(seed))
    return paths
