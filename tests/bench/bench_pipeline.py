"""How fast the pure pipeline runs: records per second for a long synthetic capture.

Run: /tmp/dev/bin/python tests/bench/bench_pipeline.py [photos]
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

from daemon.core.geo import destination
from daemon.pipeline import PipelineOptions, run_pipeline
from daemon.pipeline.describe import description_file_entries
from daemon.pipeline.records import ImageRecord


def capture(n: int) -> list[ImageRecord]:
    """A drive with a stop every 300 photos (30 photos standing), a photo every 2 s."""
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    lat, lon = 47.0, 8.0
    out = []
    for i in range(n):
        standing = i % 300 >= 270
        if not standing:
            lat, lon = destination(lat, lon, (i // 50) * 7.0, 15.0)
        out.append(
            ImageRecord(Path(f"/p/{i}.jpg"), t0 + timedelta(seconds=2 * i), lat=lat, lon=lon)
        )
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    recs = capture(n)
    tracemalloc.start()
    start = time.perf_counter()
    result = run_pipeline(recs, None, PipelineOptions(interpolate_directions=True))
    mid = time.perf_counter()
    entries = description_file_entries(result.records)
    end = time.perf_counter()
    peak = tracemalloc.get_traced_memory()[1]
    print(f"photos: {n}, sequences: {len(result.sequences)}, duplicates: {len(result.duplicates)}")
    print(f"run_pipeline: {mid - start:.2f} s ({n / (mid - start):,.0f} photos/s)")
    print(f"description entries: {end - mid:.2f} s for {len(entries)} entries")
    print(f"peak traced memory: {peak / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
