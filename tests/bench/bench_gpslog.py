"""The daemon's own GPS log: what an hour of 1 Hz fixes costs the disk, and how fast the
gpsd client is back after gpsd restarts.

Counts the real ``os.fsync`` calls and the bytes written by ``TrackWriter`` for ``--hours`` of
1 Hz fixes, against a baseline in the same run that writes and fsyncs each fix on its own (what
a logger that "never loses a fix" does); both on the disk holding ``--dir`` (default: a
temporary folder; point it at the SD card to time the real thing). Then starts the fake gpsd of
the tests, connects the client (its real pauses: 1 s growing to 30 s), stops gpsd for
each of ``--outages`` seconds and prints how long after gpsd is back the first fix arrives again.

    python tests/bench/bench_gpslog.py
    python tests/bench/bench_gpslog.py --hours 2 --dir /var/lib/mapillary-daemon --outages 5,40
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from daemon.demo.drive import plan_drive  # noqa: E402
from daemon.intake.gpsd import Fix, GpsdClient, GpsEvent, Lost  # noqa: E402
from daemon.intake.gpslog import TrackWriter, trkpt  # noqa: E402
from tests.daemon_proc import free_port  # noqa: E402
from tests.fake_gpsd import FakeGpsdThread, drive_reports  # noqa: E402

START = datetime(2024, 6, 1, 7, tzinfo=UTC).timestamp()
_real_fsync = os.fsync
fsyncs = 0


def counting_fsync(fd: int) -> None:
    global fsyncs
    fsyncs += 1
    _real_fsync(fd)


def fixes(hours: float) -> list[Fix]:
    n = int(hours * 3600)
    return [
        Fix(START + i, 52.52 + i * 1e-5, 13.4 + i * 1e-5, 34.0 + (i % 50) * 0.1, 3)
        for i in range(n)
    ]


def batched(folder: Path, points: list[Fix]) -> tuple[int, int, float]:
    """fsyncs, bytes on disk and seconds for the writer as the daemon runs it."""
    global fsyncs
    fsyncs = 0
    writer = TrackWriter(folder)
    t0 = time.perf_counter()
    for fix in points:
        if writer.add(fix, 9):
            writer.flush()
    writer.close()
    took = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in folder.iterdir())
    return fsyncs, size, took


def per_fix(folder: Path, points: list[Fix]) -> tuple[int, int, float]:
    """The baseline: one write and one fsync per fix, the same lines."""
    global fsyncs
    fsyncs = 0
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "per-fix.gpx"
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for fix in points:
            os.write(fd, trkpt(fix, 9).encode("ascii"))
            os.fsync(fd)
    finally:
        os.close(fd)
    return fsyncs, path.stat().st_size, time.perf_counter() - t0


async def reconnect(outage: float) -> tuple[float, float]:
    """Seconds from gpsd back to the next fix, and from gpsd gone to the client noticing."""
    port = free_port()
    reports = drive_reports(
        plan_drive(datetime(2024, 6, 1, 7, tzinfo=UTC), seed=1, stop_s=5.0, break_s=0.0)
    )
    queue: asyncio.Queue[GpsEvent] = asyncio.Queue()
    client = GpsdClient("127.0.0.1", port)
    fake = FakeGpsdThread(reports, port=port, rate=20.0).__enter__()
    task = asyncio.create_task(client.run(queue))
    try:
        while not isinstance(await queue.get(), Fix):
            pass
        gone = time.monotonic()
        fake.__exit__()
        while not isinstance(await queue.get(), Lost):
            pass
        noticed = time.monotonic() - gone
        await asyncio.sleep(outage)
        fake = FakeGpsdThread(reports, port=port, rate=20.0).__enter__()
        back = time.monotonic()
        while not isinstance(await queue.get(), Fix):
            pass
        return time.monotonic() - back, noticed
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        fake.__exit__()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--dir", type=Path, help="a folder on the disk to measure")
    parser.add_argument(
        "--outages", default="2,5,12", help="seconds gpsd is away, one try each (2,5,12)"
    )
    args = parser.parse_args()
    points = fixes(args.hours)
    os.fsync = counting_fsync  # counts the real calls; each still goes to the disk
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        ours = batched(Path(tmp) / "batched", points)
        base = per_fix(Path(tmp) / "per-fix", points)
    os.fsync = _real_fsync
    per_hour = 1 / args.hours
    print(f"{len(points)} fixes at 1 Hz ({args.hours:g} h)")
    for name, (syncs, size, took) in (("batched (daemon)", ours), ("fsync per fix", base)):
        print(
            f"  {name:17s} {syncs * per_hour:8.0f} fsyncs/h  {size * per_hour / 1024:8.1f} KiB/h"
            f"  {took:6.2f} s"
        )
    print(
        f"  fsyncs: {base[0] / ours[0]:.1f}x fewer; time: {base[2] / max(ours[2], 1e-9):.1f}x less"
    )
    for outage in (float(x) for x in args.outages.split(",")):
        back, noticed = asyncio.run(reconnect(outage))
        print(
            f"gpsd away {outage:g} s: noticed after {noticed * 1000:.0f} ms, "
            f"first fix {back:.2f} s after gpsd was back"
        )


if __name__ == "__main__":
    main()
