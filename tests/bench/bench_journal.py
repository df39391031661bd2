"""Journal write rates: one commit per change against batched commits, on a real file.

Every commit is an fsync (WAL, ``synchronous=FULL``), which is what costs on an SD card; this
prints how many file records and state changes per second each way reaches on the disk holding
``--dir`` (default: a temporary folder; point it at the SD card to measure the real thing), plus
the time of ``summary()`` on the resulting journal and of an ``AsyncJournal`` round trip.

    python tests/bench/bench_journal.py                    # 2000 files, batches of 100
    python tests/bench/bench_journal.py --files 500 --dir /media/pi/card
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from daemon.journal import AsyncJournal, FileState, Journal, NewFile, StateChange


def new_file(tag: str, n: int) -> NewFile:
    h = hashlib.sha256(f"{tag}/{n}".encode()).hexdigest()
    return NewFile(
        hash=h,
        path=f"/media/card/DCIM/100GOPRO/G{n:07d}.JPG",
        source_kind="card",
        source_root="/media/card",
        size=4_000_000,
        mtime=1_700_000_000.0 + n,
        metadata={"capture_time": "2024-05-01T10:00:00+00:00", "lat": 48.1, "lon": 11.5},
    )


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:10.0f}/s  ({seconds * 1000 / n:7.3f} ms each)"


def run(directory: Path, files: int, batch: int) -> None:
    path = directory / "bench-journal.sqlite3"
    with Journal.open(path) as j:
        one = [new_file("single", n) for n in range(files)]
        many = [new_file("batched", n) for n in range(files)]

        t_add_single = timed(lambda: [j.add_file(f) for f in one])
        t_add_batch = timed(
            lambda: [j.add_files(many[i : i + batch]) for i in range(0, files, batch)]
        )
        t_state_single = timed(lambda: [j.set_file_state(f.hash, FileState.DESCRIBED) for f in one])
        changes = [StateChange(f.hash, FileState.DESCRIBED) for f in many]
        t_state_batch = timed(
            lambda: [j.set_file_states(changes[i : i + batch]) for i in range(0, files, batch)]
        )
        t_summary = timed(j.summary)
    calls = 200
    t_async = asyncio.run(async_round_trips(path, calls))
    print(f"journal on {path.parent} ({files} files per run, batches of {batch})")
    print(f"  add_file, one commit each        {rate(files, t_add_single)}")
    print(f"  add_files, batched               {rate(files, t_add_batch)}")
    print(f"  set_file_state, one commit each  {rate(files, t_state_single)}")
    print(f"  set_file_states, batched         {rate(files, t_state_batch)}")
    print(f"  batched / single (add)           {t_add_single / t_add_batch:10.1f}x")
    print(f"  summary() over {2 * files} files       {t_summary * 1000:10.2f} ms")
    print(f"  AsyncJournal get_meta round trip {rate(calls, t_async)}")
    for suffix in ("", "-wal", "-shm", ".lock"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


async def async_round_trips(path: Path, calls: int) -> float:
    async with await AsyncJournal.open(path) as aj:
        start = time.perf_counter()
        for _ in range(calls):
            await aj.get_meta("upload_rate")
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--dir", type=Path, default=None, help="folder on the disk to measure")
    args = parser.parse_args()
    if args.dir is not None:
        run(args.dir, args.files, args.batch)
        return
    with tempfile.TemporaryDirectory() as tmp:
        run(Path(tmp), args.files, args.batch)


if __name__ == "__main__":
    main()
