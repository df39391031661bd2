"""How right the pipeline is on a drive with known truth: duplicates, headings, positions.

The drive is made here, independently of ``daemon.demo``: a car cruising at 11 m/s, braking at
3 m/s² to a 40 s stop at a red light and pulling away at 2.5 m/s², 6 s turns of 30-90°, a
10-minute break (no photos, the logger still on) every ~900 photos. The GPX track is 1 Hz with
1 m of noise per axis; a photo every 2 s, 0.5 s out of phase with the fixes. The pipeline runs
as ``process --interpolate-directions`` runs it (``run_pipeline`` with the settings' defaults),
once as configured and once with smoothing off (raw interpolation). The same photos are then
written as small real JPEGs (EXIF time in UTC with sub-seconds) with the track as GPX, and
mapillary_tools 0.14.7 (``process --interpolate_directions``, its own venv: tests/tools.py) and
``exiftool -geotag`` (positions only) run on them in the same run; a tool that cannot be had is
skipped with the reason. Scenarios: the drive with its GPX; the drive with no GPX, the photos
carrying their own GPS (1 m of noise per axis, as a camera writes it); a walk at 1 m/s with a
photo every 2 s, 20 s waits at crossings and right-angle corners in 3 s (moving: faster than
0.5 m/s), with and without a GPX; a drive with no stop.

    .venv/bin/python tests/bench/bench_accuracy.py [photos ...]      (default: 2000 20000)
    .venv/bin/python tests/bench/bench_accuracy.py 2000 --tools ours --scenarios drive
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import piexif
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from daemon.core.config import Settings  # noqa: E402
from daemon.core.geo import EARTH_RADIUS_M, angle_diff_deg, distance_m  # noqa: E402
from daemon.media.gpx import Track  # noqa: E402
from daemon.pipeline import PipelineOptions, run_pipeline  # noqa: E402
from daemon.pipeline.records import DUPLICATE, ImageRecord  # noqa: E402
from tests import tools as tools_module  # noqa: E402
from tests.tools import MAPILLARY_TOOLS_VERSION, mapillary_tools_bin  # noqa: E402

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


@dataclass
class Outcome:
    """What one tool made of the photos, by file name: kept photos' (lat, lon, heading or None,
    sequence or None), the names it set aside as duplicates, and how long it took."""

    kept: dict[str, tuple[float, float, float | None, str | None]]
    duplicates: set[str]
    seconds: float
    sequences: int | None  # None: the tool has no sequences


def ours(
    d: Drive, track: Track | None, options: PipelineOptions, exif_noise_m: float | None = None
) -> Outcome:
    recs = records(d, exif_noise_m)
    start = time.perf_counter()
    result = run_pipeline(recs, track, options)
    took = time.perf_counter() - start
    kept = {
        r.filename: (r.position[0], r.position[1], r.heading, r.sequence)
        for s in result.sequences
        for r in s
    }
    dups = {r.filename for r in result.duplicates if r.error and r.error.type == DUPLICATE}
    return Outcome(kept, dups, took, len(result.sequences))


def score(d: Drive, out: Outcome, moving_speed: float = 1.0) -> dict[str, float]:
    """The four figures (and more) of a tool's outcome against the truth. A photo faster than
    ``moving_speed`` (m/s) is moving, one slower standing."""
    truth = {f"IMG_{n:05d}.jpg": d.at(t) for n, t in enumerate(d.photo_times)}
    moving = [p for p, i in truth.items() if d.speeds[i] > moving_speed]
    dropped = sum(1 for p in moving if p in out.duplicates)
    per_stop: dict[int, int] = {}
    for i in truth.values():
        if d.stop_no[i] >= 0 and d.speeds[i] <= moving_speed:
            per_stop.setdefault(d.stop_no[i], 0)
    for name in out.kept:
        i = truth[name]
        if d.stop_no[i] >= 0 and d.speeds[i] <= moving_speed:
            per_stop[d.stop_no[i]] += 1
    extra = [max(0, k - 1) for k in per_stop.values()]
    lost = sum(1 for k in per_stop.values() if k == 0)
    heading_err = [
        angle_diff_deg(heading, d.headings[truth[name]])
        for name, (_, _, heading, _) in out.kept.items()
        if d.speeds[truth[name]] > moving_speed and heading is not None
    ]

    def pos_err(phases: set[str] | None) -> float:
        errs = []
        for name, (lat, lon, _, _) in out.kept.items():
            i = truth[name]
            if phases is None or d.phase[i] in phases:
                errs.append(distance_m(lat, lon, *latlon(d.xs[i], d.ys[i])))
        return p95(errs)

    return {
        "seconds": out.seconds,
        "photos": len(truth),
        "sequences": math.nan if out.sequences is None else out.sequences,
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


def measure(
    d: Drive,
    track: Track | None,
    options: PipelineOptions,
    exif_noise_m: float | None = None,
    moving_speed: float = 1.0,
) -> dict[str, float]:
    """Our pipeline's figures on the drive: with ``track`` None, from the photos' EXIF GPS."""
    return score(d, ours(d, track, options, exif_noise_m), moving_speed)


def options(**overrides: object) -> PipelineOptions:
    names = {f.name for f in dataclasses.fields(PipelineOptions)}
    kept = {k: v for k, v in overrides.items() if k in names}
    return PipelineOptions.from_settings(Settings(), interpolate_directions=True, **kept)


# -- the other tools, on real files -------------------------------------------------------------


def _jpeg_template() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 150)).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def _rational(value: float, scale: int) -> tuple[int, int]:
    return round(value * scale), scale


def _dms(value: float) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    value = abs(value)
    deg = int(value)
    minutes = int((value - deg) * 60)
    seconds = (value - deg - minutes / 60) * 3600
    return (deg, 1), (minutes, 1), _rational(seconds, 100000)


def write_photos(d: Drive, folder: Path, exif_noise_m: float | None = None) -> None:
    """The photos as small real JPEGs: EXIF time (UTC, naive, with sub-seconds; the tools run
    with TZ=UTC) and, with ``exif_noise_m``, the camera's own GPS position."""
    folder.mkdir(parents=True, exist_ok=True)
    template = _jpeg_template()
    g = piexif.GPSIFD
    for rec in records(d, exif_noise_m):
        assert rec.capture_time is not None
        when = rec.capture_time.astimezone(UTC)
        exif_ifd = {
            piexif.ExifIFD.DateTimeOriginal: when.strftime("%Y:%m:%d %H:%M:%S").encode(),
            piexif.ExifIFD.SubSecTimeOriginal: f"{when.microsecond // 1000:03d}".encode(),
        }
        gps: dict[int, object] = {}
        if rec.has_position:
            lat, lon = rec.position
            gps = {
                g.GPSVersionID: (2, 3, 0, 0),
                g.GPSLatitudeRef: b"N" if lat >= 0 else b"S",
                g.GPSLatitude: _dms(lat),
                g.GPSLongitudeRef: b"E" if lon >= 0 else b"W",
                g.GPSLongitude: _dms(lon),
            }
        blob = piexif.dump({"0th": {piexif.ImageIFD.Make: b"Bench"}, "Exif": exif_ifd, "GPS": gps})
        piexif.insert(blob, template, str(folder / rec.filename))


def write_gpx(track: Track, path: Path) -> None:
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<gpx version="1.1" creator="bench_accuracy" xmlns="http://www.topografix.com/GPX/1/1">',
        "<trk><trkseg>",
    ]
    for t, lat, lon in zip(track.times, track.lats, track.lons, strict=True):
        stamp = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        lines.append(f'<trkpt lat="{lat:.8f}" lon="{lon:.8f}"><time>{stamp}</time></trkpt>')
    lines.append("</trkseg></trk></gpx>")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _env() -> dict[str, str]:
    return dict(os.environ, TZ="UTC")


def mapillary_tools(binary: str, folder: Path, gpx: Path | None) -> Outcome:
    """``mapillary_tools process --interpolate_directions`` with its defaults otherwise; the
    positions, headings, duplicates and sequences of its description file."""
    desc = folder.parent / f"{folder.name}.mapillary.json"
    cmd = [binary, "process", str(folder), "--interpolate_directions", "--desc_path", str(desc)]
    if gpx is not None:
        cmd += ["--geotag_source", "gpx", "--geotag_source_path", str(gpx)]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), check=False)
    took = time.perf_counter() - start
    if not desc.exists():
        raise RuntimeError(f"mapillary_tools wrote no description: {done.stderr[-300:]}")
    kept: dict[str, tuple[float, float, float | None, str | None]] = {}
    dups: set[str] = set()
    for e in json.loads(desc.read_text(encoding="utf-8")):
        name = Path(e.get("filename", "")).name
        if "error" in e:
            if "Duplicat" in e["error"].get("type", ""):
                dups.add(name)
            continue
        heading = (e.get("MAPCompassHeading") or {}).get("TrueHeading")
        kept[name] = (e["MAPLatitude"], e["MAPLongitude"], heading, e.get("MAPSequenceUUID"))
    sequences = len({v[3] for v in kept.values()})
    return Outcome(kept, dups, took, sequences)


def _degrees(value: tuple, ref: bytes, negative: bytes) -> float:
    d, m, sec = (a / b for a, b in value)
    return (d + m / 60 + sec / 3600) * (-1 if ref == negative else 1)


def exiftool(binary: str, folder: Path, gpx: Path) -> Outcome:
    """``exiftool -geotag`` at the sub-second time: positions only (no duplicates, no
    sequences; a heading only if it wrote one), read back with piexif."""
    cmd = [binary, "-q", "-q", "-m", "-overwrite_original", "-geotag", str(gpx),
           "-geotime<SubSecDateTimeOriginal", str(folder)]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, capture_output=True, text=True, env=_env(), check=False)
    took = time.perf_counter() - start
    g = piexif.GPSIFD
    kept: dict[str, tuple[float, float, float | None, str | None]] = {}
    for path in sorted(folder.glob("*.jpg")):
        gps = piexif.load(str(path)).get("GPS", {})
        if g.GPSLatitude not in gps:
            continue
        lat = _degrees(gps[g.GPSLatitude], gps.get(g.GPSLatitudeRef, b"N"), b"S")
        lon = _degrees(gps[g.GPSLongitude], gps.get(g.GPSLongitudeRef, b"E"), b"W")
        direction = gps.get(g.GPSImgDirection) or gps.get(g.GPSTrack)
        heading = direction[0] / direction[1] if direction else None
        kept[path.name] = (lat, lon, heading, None)
    return Outcome(kept, set(), took, None)


# -- the report ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    style: Style
    gpx: bool  # a 1 Hz GPX track; else the photos carry noisy EXIF GPS and there is no track
    moving_speed: float = 1.0


SCENARIOS = {
    "drive": Scenario("drive, 1 Hz GPX", DRIVE, True),
    "drive-exif": Scenario("drive, no GPX: the photos' own GPS (1 m noise)", DRIVE, False),
    "walk": Scenario("walk at 1 m/s, 20 s waits, 1 Hz GPX", WALK, True, moving_speed=0.5),
    "walk-exif": Scenario("walk at 1 m/s, no GPX: the photos' own GPS", WALK, False, 0.5),
    "no-stop": Scenario("drive with no stop, 1 Hz GPX", NO_STOP, True),
}


def _fmt(m: dict[str, float] | str, row: str) -> str:
    if isinstance(m, str):
        return "n/a"
    if row == "dropped":
        return f"{100 * m['dropped'] / max(1, m['moving']):.2f} % ({m['dropped']:.0f})"
    if row == "extra":
        return f"{m['extra']:.2f}" + (f" ({m['stops_lost']:.0f} lost)" if m["stops_lost"] else "")
    if row == "sequences":
        return "-" if math.isnan(m["sequences"]) else f"{m['sequences']:.0f}"
    if row == "seconds":
        return f"{m['seconds']:.1f}"
    value = m[row]
    return "-" if math.isnan(value) else f"{value:.2f}"


ROWS = [
    ("dropped", "moving photos dropped as duplicates"),
    ("extra", "standing photos kept beyond one per stop (mean)"),
    ("heading_p95", "heading error p95, moving photos (deg)"),
    ("pos_p95", "position error p95 (m)"),
    ("pos_p95_turns", "  at turns (m)"),
    ("pos_p95_stops", "  braking, stopped, pulling away (m)"),
    ("sequences", "sequences"),
    ("seconds", "time, s (ours: the pipeline in-process; the others: the whole command)"),
]


def report(n: int, scenario: Scenario, tools: dict[str, str | None], work: Path) -> None:
    d = make_drive(n, style=scenario.style)
    track = noisy_track(d) if scenario.gpx else None
    noise = None if scenario.gpx else NOISE_M
    columns: dict[str, dict[str, float] | str] = {
        "ours": score(d, ours(d, track, options(), noise), scenario.moving_speed),
        "ours --no-smoothing": score(
            d, ours(d, track, options(smoothing=False), noise), scenario.moving_speed
        ),
    }
    folder = work / f"{scenario.name[:5].strip(',')}-{n}-{'gpx' if scenario.gpx else 'exif'}"
    folder = folder.with_name(folder.name.replace(" ", "-"))
    gpx = None
    if tools:
        write_photos(d, folder, noise)
        if track is not None:
            gpx = folder.parent / f"{folder.name}.gpx"
            write_gpx(track, gpx)
    for label, binary in tools.items():
        if binary is None or binary.startswith("skipped"):
            columns[label] = binary or "skipped"
        elif label.startswith("mapillary_tools"):
            columns[label] = score(d, mapillary_tools(binary, folder, gpx), scenario.moving_speed)
        elif gpx is None:
            columns[label] = "n/a (nothing to geotag from)"
        else:
            columns[label] = score(d, exiftool(binary, folder, gpx), scenario.moving_speed)
    first = columns["ours"]
    assert not isinstance(first, str)
    print(
        f"\n== {scenario.name}: {n} photos, {first['moving']:.0f} moving, {first['stops']:.0f} stops"
    )
    labels = list(columns)
    print("| | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    for row, title in ROWS:
        print(f"| {title} | " + " | ".join(_fmt(columns[c], row) for c in labels) + " |")
    for label, why in columns.items():
        if isinstance(why, str):
            print(f"{label}: {why}")
    raw = columns["ours --no-smoothing"]
    if not isinstance(raw, str):
        print(f"position p95, ours / raw interpolation: {first['pos_p95'] / raw['pos_p95']:.2f}x")
    sys.stdout.flush()


def find_tools(wanted: set[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    if "mapillary_tools" in wanted:
        binary = mapillary_tools_bin()
        why = getattr(tools_module, "last_failure", None) or "not installed"
        label = f"mapillary_tools {MAPILLARY_TOOLS_VERSION}"
        found[label] = binary or f"skipped: {why}"
    if "exiftool" in wanted:
        found["exiftool -geotag"] = shutil.which("exiftool") or "skipped: exiftool not installed"
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[2000, 20000])
    parser.add_argument("--scenarios", default="drive,drive-exif,walk,walk-exif,no-stop")
    parser.add_argument("--tools", default="ours,mapillary_tools,exiftool")
    parser.add_argument("--small-only", default="walk,walk-exif,no-stop",
                        help="scenarios run at the smallest size only")  # fmt: skip
    parser.add_argument("--no-clock", action="store_true", help="leave out the clock rows")
    args = parser.parse_args()
    tools = find_tools(set(args.tools.split(",")))
    small = set(args.small_only.split(","))
    with tempfile.TemporaryDirectory(prefix="bench_accuracy-") as tmp:
        for key in args.scenarios.split(","):
            for n in args.sizes if key not in small else [min(args.sizes)]:
                report(n, SCENARIOS[key], tools, Path(tmp))
    if not args.no_clock:  # the camera clock found from the same kind of drive (bench_clock)
        from bench_clock import CASES, _print, clock_figures

        print("\n### camera clock found from the photos (`clock`)")
        for n in args.sizes:
            for zone, zone_s, offset in CASES:
                _print(clock_figures(n, zone, zone_s, offset))


if __name__ == "__main__":
    main()
