"""GPX and NMEA benchmark.

1. Parse speed and peak memory, GPX against gpxpy and NMEA against pynmea2 (each skipped when
   not installed: `pip install gpxpy pynmea2`), for a day at 1 Hz (86,400 fixes) and a
   400,000-fix log, in the same run. Each parse runs in a fresh process; its peak is the
   process's high-water mark above what it held after its imports.
2. The daemon's GpxLibrary rebuild with a 47 MB log known and small logs arriving, before
   (every file parsed twice on each rebuild: once to check it, once to merge) and after (each
   file parsed once per change, by size, mtime and inode).

    python tests/bench/bench_gpx.py              # both
    python tests/bench/bench_gpx.py --points 20000 --mb 5    # quick check
    python tests/bench/bench_gpx.py --parse-only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from daemon.media.gpx import load_gpx, load_gpx_files  # noqa: E402
from daemon.runtime.process import GpxLibrary  # noqa: E402
from tests.jpegs import write_gpx  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
_CHILD = r"""
import json, sys, time
from array import array
from datetime import datetime, timezone


def memory(key):
    with open("/proc/self/status") as fh:
        return next(int(ln.split()[1]) for ln in fh if ln.startswith(key + ":")) / 1024


def ours(path):
    from daemon.media.nmea import load_track
    track = load_track(path)
    return track.times, track.lats, track.lons


def gpxpy_points(path):
    import gpxpy
    with open(path, encoding="utf-8") as fh:
        gpx = gpxpy.parse(fh)
    times, lats, lons = array("d"), array("d"), array("d")
    for trk in gpx.tracks:
        for seg in trk.segments:
            for p in seg.points:
                if p.time is not None:
                    times.append(p.time.timestamp()); lats.append(p.latitude); lons.append(p.longitude)
    return times, lats, lons


def pynmea2_fixes(path):
    # What our parser does, with pynmea2 reading the sentences: checksums checked, RMC fixes
    # with their date, GGA's altitude for the same second.
    import pynmea2
    times, lats, lons, eles = array("d"), array("d"), array("d"), array("d")
    with open(path, encoding="ascii", errors="replace") as fh:
        for line in fh:
            try:
                msg = pynmea2.parse(line.strip(), check=True)
            except pynmea2.ParseError:
                continue
            kind = msg.sentence_type
            if kind == "RMC" and msg.status == "A" and msg.datestamp and msg.timestamp:
                when = datetime.combine(msg.datestamp, msg.timestamp)
                when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
                times.append(when.timestamp()); lats.append(msg.latitude)
                lons.append(msg.longitude); eles.append(float("nan"))
            elif kind == "GGA" and msg.gps_qual and times and msg.altitude is not None:
                eles[-1] = float(msg.altitude)
    return times, lats, lons


how = {"ours": ours, "gpxpy": gpxpy_points, "pynmea2": pynmea2_fixes}[sys.argv[1]]
try:
    __import__({"ours": "daemon.media.nmea"}.get(sys.argv[1], sys.argv[1]))
except ImportError:
    print(json.dumps(None)); sys.exit(0)
base = memory("VmRSS")
start = time.perf_counter()
times, lats, lons = how(sys.argv[2])
elapsed = time.perf_counter() - start
print(json.dumps({"s": elapsed, "peak_mb": memory("VmHWM") - base, "fixes": len(times),
                  "last": [times[-1], lats[-1], lons[-1]]}))
"""


def write_nmea(path: Path, n: int, start: datetime) -> Path:
    """A 1 Hz log as a u-blox writes it: RMC then GGA each second, GN talker."""

    def sentence(body: str) -> str:
        total = 0
        for c in body.encode():
            total ^= c
        return f"${body}*{total:02X}\r\n"

    with open(path, "w", encoding="ascii") as fh:
        for i in range(n):
            t = start + timedelta(seconds=i)
            lat, lon = 52.5 + i * 1e-6, 13.4 + i * 1e-6
            la = f"{int(lat):02d}{(lat % 1) * 60:07.4f}"
            lo = f"{int(lon):03d}{(lon % 1) * 60:07.4f}"
            hms, day = t.strftime("%H%M%S.00"), t.strftime("%d%m%y")
            fh.write(sentence(f"GNRMC,{hms},A,{la},N,{lo},E,10.0,45.0,{day},,,A"))
            fh.write(sentence(f"GNGGA,{hms},{la},N,{lo},E,1,12,0.8,100.0,M,40.0,M,,"))
    return path


def parse_in_child(library: str, path: Path) -> dict | None:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, library, str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=1800,
        check=True,
    )
    return json.loads(out.stdout)


def parse_figures(tmp: Path, sizes: list[int]) -> None:
    """Ours against gpxpy (GPX) and pynmea2 (NMEA), each parse in its own process."""
    t0 = datetime(2024, 6, 1, tzinfo=UTC)
    print("| file | fixes | MB | ours: s, peak MB | other: s, peak MB | speed ×, memory × |")
    print("|---|---|---|---|---|---|")
    for n in sizes:
        gpx = write_log(tmp / f"day{n}.gpx", n * 109 / 1e6, t0)
        nmea = write_nmea(tmp / f"day{n}.nmea", n, t0)
        for path, other in ((gpx, "gpxpy"), (nmea, "pynmea2")):
            mine = parse_in_child("ours", path)
            theirs = parse_in_child(other, path)
            assert mine is not None
            row = (
                f"| {path.suffix[1:].upper()} | {mine['fixes']:,} | {path.stat().st_size / 1e6:.0f}"
            )
            row += f" | {mine['s']:.2f} s, {mine['peak_mb']:.0f} MB"
            if theirs is None:
                print(row + f" | {other} not installed | |", flush=True)
                continue
            if theirs["fixes"] != mine["fixes"] or abs(theirs["last"][1] - mine["last"][1]) > 1e-6:
                raise SystemExit(f"{other} read {path.name} differently: {theirs} vs {mine}")
            row += f" | {other} {theirs['s']:.2f} s, {theirs['peak_mb']:.0f} MB"
            speed = theirs["s"] / mine["s"]
            memory = theirs["peak_mb"] / max(mine["peak_mb"], 0.1)
            print(row + f" | {speed:.1f}×, {memory:.1f}× |", flush=True)


def write_log(path: Path, mb: float, start: datetime) -> Path:
    n = int(mb * 1e6 / 109)  # ~109 bytes a point as tests.jpegs writes them
    points = [
        (start + timedelta(seconds=i), 52.5 + i * 1e-6, 13.4 + i * 1e-6, 100.0) for i in range(n)
    ]
    return write_gpx(path, points)


def old_build(paths: list[str]) -> None:
    """The rebuild before: each file loaded to check it, then all of them again to merge."""
    good = []
    for p in paths:
        load_gpx_files([Path(p)])
        good.append(Path(p))
    load_gpx_files(good)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=47.0)
    ap.add_argument("--arrivals", type=int, default=5)
    ap.add_argument("--points", type=int, nargs="+", default=[86_400, 400_000])
    ap.add_argument("--parse-only", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        parse_figures(Path(tmp), args.points)
    if args.parse_only:
        return
    with tempfile.TemporaryDirectory() as tmp:
        t0 = datetime(2024, 6, 1, tzinfo=UTC)
        big = write_log(Path(tmp) / "big.gpx", args.mb, t0)
        print(f"big log: {big.stat().st_size / 1e6:.1f} MB")
        small = [
            str(write_log(Path(tmp) / f"s{i}.gpx", 0.05, t0 + timedelta(days=i + 1)))
            for i in range(args.arrivals)
        ]
        t = time.perf_counter()
        track = load_gpx(big)
        parse = time.perf_counter() - t
        print(f"one parse (ours): {parse:.2f} s, {len(track)} points")
        tracemalloc.start()
        load_gpx(big)
        peak = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
        print(f"peak Python memory of a parse: {peak:.0f} MB (the track's arrays: 32 B a point)")
        try:
            import gpxpy

            t = time.perf_counter()
            gpxpy.parse(big.read_text())
            print(f"one parse (gpxpy): {time.perf_counter() - t:.2f} s")
        except ImportError:
            print("gpxpy not installed: no comparison")
        paths = [str(big)]
        t = time.perf_counter()
        for s in small:
            paths.append(s)
            old_build(paths)
        before = time.perf_counter() - t
        lib = GpxLibrary()
        lib.add("big", str(big))
        lib.build(*lib.snapshot())  # the daemon's start: the big log parsed once
        t = time.perf_counter()
        for i, s in enumerate(small):
            lib.add(f"s{i}", s)
            lib.build(*lib.snapshot())
        after = time.perf_counter() - t
        print(
            f"{args.arrivals} small logs arriving, rebuilds in total: "
            f"before {before:.2f} s, after {after:.2f} s"
        )


if __name__ == "__main__":
    main()
