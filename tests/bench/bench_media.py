"""How fast, and how lightly, EXIF and GPX handling runs. Prints figures; asserts nothing.

Run from the repository root: /tmp/dev/bin/python -m tests.bench.bench_media [photos] [gpx_hours]

- read_exif on small photos (files/s), and on a 20 MB photo: bytes this process read
  (/proc/self/io rchar, Linux) against the file size;
- tagged_bytes and write_description (atomic, with fsync) on a ~6 MB photo;
- a day-long 1 Hz GPX log: load time and peak Python memory, ours against gpxpy's object model;
- position_at queries per second.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import gpxpy

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from daemon.core.geo import destination  # noqa: E402
from daemon.media import exif, gpx  # noqa: E402
from tests.jpegs import exif_dict, jpeg_bytes, make_jpeg, scan_data, write_gpx  # noqa: E402

T0 = datetime(2024, 5, 17, 8, 0, 0)


def rchar() -> int | None:
    try:
        with open("/proc/self/io") as fh:
            for line in fh:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def big_photo(path: Path, megabytes: int) -> None:
    """A real header (EXIF, tables, frame) followed by random scan data and EOI."""
    small = jpeg_bytes(exif=exif_dict(capture_time=T0, lat=47.0, lon=8.0), size=(32, 24))
    sos = len(small) - len(scan_data(small))
    header = small[: sos + 2 + int.from_bytes(small[sos + 2 : sos + 4], "big")]
    with open(path, "wb") as fh:
        fh.write(header)
        fh.write(random.Random(0).randbytes(megabytes * 1024 * 1024))
        fh.write(b"\xff\xd9")


def bench_exif(folder: Path, photos: int) -> None:
    paths = [
        make_jpeg(folder / f"{i}.jpg", capture_time=T0 + timedelta(seconds=i), lat=47.0, lon=8.0)
        for i in range(photos)
    ]
    start = time.perf_counter()
    for p in paths:
        exif.read_exif(p)
    took = time.perf_counter() - start
    print(
        f"read_exif, small photos: {photos / took:,.0f} files/s ({took / photos * 1e6:.0f} µs each)"
    )

    big = folder / "big.jpg"
    big_photo(big, 20)
    before = rchar()
    start = time.perf_counter()
    exif.read_exif(big)
    took = time.perf_counter() - start
    after = rchar()
    read = "n/a" if before is None or after is None else f"{(after - before) / 1024:.1f} KiB"
    print(f"read_exif, 20 MiB photo: {took * 1e3:.2f} ms, bytes read {read}")

    photo = folder / "six.jpg"
    big_photo(photo, 6)
    rounds = 20
    start = time.perf_counter()
    for _ in range(rounds):
        data = exif.tagged_bytes(photo, '{"MAPLatitude":47.0}')
    took = (time.perf_counter() - start) / rounds
    del data
    tracemalloc.start()
    out = len(exif.tagged_bytes(photo, '{"MAPLatitude":47.0}'))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    size = photo.stat().st_size
    print(
        f"tagged_bytes, {size / 2**20:.1f} MiB photo: {took * 1e3:.1f} ms,"
        f" peak {peak / 2**20:.1f} MiB ({peak / size:.1f}x the file), {out:,} bytes out"
    )
    start = time.perf_counter()
    for i in range(rounds):
        exif.write_description(photo, f"round {i}")
    took = (time.perf_counter() - start) / rounds
    print(f"write_description (atomic, fsync), same photo: {took * 1e3:.1f} ms each")


def day_track(path: Path, hours: float) -> int:
    t0 = datetime(2024, 5, 17, tzinfo=UTC)
    lat, lon = 47.0, 8.0
    points = []
    for i in range(int(hours * 3600)):
        lat, lon = destination(lat, lon, (i // 600) * 37.0 % 360, 8.0)
        points.append((t0 + timedelta(seconds=i), lat, lon, 400.0 + (i % 100)))
    write_gpx(path, points)
    return len(points)


def bench_gpx(folder: Path, hours: float) -> None:
    path = folder / "day.gpx"
    n = day_track(path, hours)
    size = path.stat().st_size
    print(f"GPX log: {n:,} points at 1 Hz, {size / 2**20:.1f} MiB")
    for name, load in (("ours (streaming)", gpx.load_gpx), ("gpxpy.parse", _gpxpy_load)):
        start = time.perf_counter()
        load(path)
        took = time.perf_counter() - start
        tracemalloc.start()
        load(path)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"  load, {name}: {took:.2f} s, peak {peak / 2**20:.1f} MiB")
    track = gpx.load_gpx(path)
    kept = sum(a.itemsize * len(a) for a in (track.times, track.lats, track.lons, track.eles))
    print(f"  track kept in memory: {kept / 2**20:.1f} MiB ({kept / n:.0f} bytes a point)")
    rnd = random.Random(1)
    queries = [rnd.uniform(track.start, track.end) for _ in range(100_000)]
    start = time.perf_counter()
    for t in queries:
        track.position_at(t)
    took = time.perf_counter() - start
    print(f"  position_at: {len(queries) / took:,.0f} queries/s")


def _gpxpy_load(path: Path) -> object:
    with open(path, encoding="utf-8") as fh:
        return gpxpy.parse(fh)


def main() -> None:
    photos = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    hours = float(sys.argv[2]) if len(sys.argv) > 2 else 24.0
    with tempfile.TemporaryDirectory() as tmp:
        bench_exif(Path(tmp), photos)
        bench_gpx(Path(tmp), hours)


if __name__ == "__main__":
    main()
