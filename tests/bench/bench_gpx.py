"""GPX benchmark: the daemon's GpxLibrary rebuild with a 47 MB log known and small logs arriving,
before (every file parsed twice on each rebuild: once to check it, once to merge) and after (each
file parsed once per change, by size, mtime and inode); and parse speed against gpxpy.

    python tests/bench/bench_gpx.py              # 47 MB log, 5 small logs arriving
    python tests/bench/bench_gpx.py --mb 5       # quick check
"""

from __future__ import annotations

import argparse
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
    args = ap.parse_args()
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
