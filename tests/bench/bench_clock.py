"""How well and how fast the camera clock is found from the photos (`mapillary-daemon clock`).

For each size a synthetic drive (braking and pulling away, red lights of 35-85 s, turns,
12-minute breaks, 1 Hz GPS with 1 m of drifting noise, a photo every 2 s) is shot by a camera
whose zone and clock are off; the finder gets the camera times and tiny pictures (rendered
straight from the scene, as the files' thumbnails show it) and the GPX track. It prints the
answer, its error against the truth and its time, next to a baseline in the same run: one
pass of geotagging the same photos (the work `--tz auto` adds to). Then the cost per photo of
reading the tiny pictures from real files, against reading their EXIF.

Run: .venv/bin/python tests/bench/bench_clock.py [photos ...]   (default: 2000 20000)
The integrator's tests/bench/bench_accuracy.py calls :func:`clock_figures`.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from daemon.demo.camera import scene, write_drive
from daemon.demo.route import plan_drive
from daemon.media.exif import read_exif
from daemon.media.gpx import Track
from daemon.media.tiny import tiny_picture
from daemon.pipeline.clock import FinderInput, find_clock
from daemon.pipeline.geotag import geotag
from daemon.pipeline.records import ImageRecord
from daemon.pipeline.standing import PhotoClue

START = datetime(2024, 6, 1, 7, 30, tzinfo=UTC)
CASES = [("+02:00", 7200, -3.0), ("+01:00", 3600, 7.0)]  # (zone, its seconds, clock offset)


def clock_figures(n: int, zone: str = "+02:00", zone_s: int = 7200, offset: float = -3.0) -> dict:
    """The finder's answer on an n-photo drive, its error and time, and a geotag pass's time."""
    laps = max(1, math.ceil(n / 170))
    d = plan_drive(START, seed=n, laps=laps, stop_spread_s=25.0, gps_noise_m=1.0)
    photos = d.photos[:n]
    track = Track.from_points((p.time, p.lat, p.lon, p.ele) for p in d.track)
    shift = timedelta(seconds=zone_s + offset)
    t0 = time.perf_counter()
    clues = [PhotoClue((p.time + shift).timestamp(), scene(p)) for p in photos]
    render = time.perf_counter() - t0
    t0 = time.perf_counter()
    answer = find_clock(FinderInput(clues), track)
    seconds = time.perf_counter() - t0
    records = [
        ImageRecord(Path(f"{p.index}.jpg"), p.time + shift, time_source="exif") for p in photos
    ]
    t0 = time.perf_counter()
    geotag(records, track, time_offset_s=zone_s + offset)
    baseline = time.perf_counter() - t0
    error = None if answer.shift is None else answer.shift - (zone_s + offset)
    return {
        "photos": len(photos),
        "truth": {"tz": zone, "time_offset": offset},
        "answer": answer.as_json(),
        "error_s": error,
        "zone_right": answer.tz == zone,
        "seconds": seconds,
        "geotag_seconds": baseline,
        "render_seconds": render,
    }


def _reading(tmp: Path) -> list[str]:
    """Per photo: tiny picture vs EXIF reading, for small photos and big ones with a thumbnail."""
    d = plan_drive(START, seed=1)
    lines = []
    for label, size in (
        ("320×240, no thumbnail", (320, 240)),
        ("2400×1800 with thumbnail", (2400, 1800)),
    ):
        paths = write_drive(d, tmp / label[:3], jpeg_size=size, quality=85, gpx_name=None)
        t0 = time.perf_counter()
        for p in paths:
            read_exif(p)
        exif = (time.perf_counter() - t0) / len(paths)
        t0 = time.perf_counter()
        for p in paths:
            tiny_picture(p)
        tiny = (time.perf_counter() - t0) / len(paths)
        lines.append(
            f"  {label}: tiny picture {tiny * 1e3:.2f} ms/photo, EXIF {exif * 1e3:.2f} ms/photo "
            f"({tiny / exif:.1f}× the EXIF read), {len(paths)} photos"
        )
    return lines


def _print(f: dict[str, Any]) -> None:
    a = f["answer"]
    got = (
        f"tz {a['tz']}, time_offset {a['time_offset']}"
        if a["tz"]
        else f"cannot tell: {a['reason']}"
    )
    err = "n/a" if f["error_s"] is None else f"{f['error_s']:+.2f} s"
    print(
        f"{f['photos']:>6} photos, truth tz {f['truth']['tz']} offset {f['truth']['time_offset']:+g} s: "
        f"{got}, confidence {a['confidence']:.2f}; error {err}, zone right: {f['zone_right']}; "
        f"{a['stops_matched']}/{a['photo_stops']} stops; finder {f['seconds']:.2f} s "
        f"({f['seconds'] / f['geotag_seconds']:.1f}× a geotag pass of {f['geotag_seconds']:.2f} s); "
        f"pictures rendered in {f['render_seconds']:.1f} s"
    )


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [2000, 20000]
    for n in sizes:
        for zone, zone_s, offset in CASES:
            _print(clock_figures(n, zone, zone_s, offset))
    with tempfile.TemporaryDirectory() as tmp:
        print("reading the tiny pictures from files:")
        print("\n".join(_reading(Path(tmp))))


if __name__ == "__main__":
    main()
