"""How fast the synthetic drive is planned and written (small photos and camera-sized ones).

Run: /tmp/dev/bin/python tests/bench/bench_sample.py [photos]
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from daemon.demo import drive as sample

T = TypeVar("T")
START = datetime(2024, 6, 1, 9, tzinfo=UTC)
PHOTOS_PER_LAP = 184


def timed(label: str, n: int, work: Callable[[], T]) -> T:
    begin = time.perf_counter()
    result = work()
    took = time.perf_counter() - begin
    print(f"{label:<44} {took:7.3f} s  {n / took:9.0f} photos/s")
    return result


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    laps = max(1, round(n / PHOTOS_PER_LAP))
    drive = timed(f"plan_drive, {laps} laps", laps * PHOTOS_PER_LAP,
                  lambda: sample.plan_drive(START, laps=laps))  # fmt: skip
    count = len(drive.photos)
    with tempfile.TemporaryDirectory() as tmp:
        timed(f"write_drive, {count} photos 64x48 + GPX", count,
              lambda: sample.write_drive(drive, Path(tmp) / "small"))  # fmt: skip
        big = sample.Drive(drive.start, drive.origin, drive.phases, drive.photos[:200], [])
        paths = timed("write_drive, 200 photos 2400x1800 q85", 200,
                      lambda: sample.write_drive(big, Path(tmp) / "big", jpeg_size=(2400, 1800),
                                                 quality=85, gpx_name=None))  # fmt: skip
        size = sum(p.stat().st_size for p in paths) / len(paths)
        print(f"{'camera-sized photo':<44} {size / 1e6:7.2f} MB each")


if __name__ == "__main__":
    main()
