"""Card import throughput against ``cp -r``, and the cost of an idle ``Sources``.

Import: a card of N photos of about 3 MB each (a real JPEG head, incompressible filler) is
copied by ``cp -r`` (a plain copy: no hashing, no fsync), then imported into a spool by
``stage_files`` + ``commit_staged`` in batches, as the daemon imports a card (hash while
copying, rename, one flush), and by ``import_file`` one at a time (what the daemon does per
settled file), then copied by ``cp -r`` again, all in one run, so the page cache is as warm
for ours as for the second ``cp`` (it cannot be dropped without root). ``cp -r && sync`` is
shown too: the same durability as ours.

Idle: a subprocess watches 3 roots (two watch folders with photos already settled, one mount
root) for ``--idle-seconds`` and reports its CPU time (getrusage) as % of one core, and its RSS.

    python tests/bench/bench_import.py                       # 1000 photos, 60 s idle
    python tests/bench/bench_import.py --photos 100 --idle-seconds 10
    python tests/bench/bench_import.py --dir /media/pi/sd    # measure on that disk
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from daemon.intake.spool import (  # noqa: E402
    ImportedFile,
    commit_staged,
    import_file,
    stage_files,
)
from tests.jpegs import jpeg_bytes  # noqa: E402


def make_card(root: Path, photos: int, size_mb: float) -> int:
    """Write the card; returns its size in bytes."""
    folder = root / "CARD" / "DCIM" / "100BENCH"
    folder.mkdir(parents=True)
    head = jpeg_bytes(size=(640, 480), exif=None)
    filler = int(size_mb * 1024 * 1024) - len(head)
    total = 0
    for i in range(photos):
        blob = head[:-2] + os.urandom(filler) + b"\xff\xd9"
        (folder / f"IMG_{i:04d}.JPG").write_bytes(blob)
        total += len(blob)
    return total


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (cp), user + system."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds of ``fn``: CPU time stays meaningful on a busy machine."""
    os.sync()  # start each run with nothing left to write back from the one before
    cpu, start = cpu_seconds(), time.perf_counter()
    fn()
    return time.perf_counter() - start, cpu_seconds() - cpu


def cp(src: Path, dest: Path, sync: bool = False) -> None:
    subprocess.run(["cp", "-r", str(src), str(dest)], check=True)
    if sync:
        os.sync()


def ours_batch(files: list[Path], spool: Path, workers: int, batch: int) -> None:
    for i in range(0, len(files), batch):
        staged = stage_files(files[i : i + batch], spool, workers=workers)
        for got in commit_staged(staged, spool):
            if not isinstance(got, ImportedFile):
                raise got


def ours_one_by_one(files: list[Path], spool: Path) -> None:
    for f in files:
        import_file(f, spool)


def bench_import(base: Path, photos: int, size_mb: float, workers: int, batch: int) -> None:
    card_root = base / "media"
    total = make_card(card_root, photos, size_mb)
    card = card_root / "CARD"
    files = sorted((card / "DCIM" / "100BENCH").iterdir())
    mb = total / (1024 * 1024)
    runs: list[tuple[str, float, float]] = []

    def measure(label: str, fn: Callable[[], object], cleanup: Path) -> float:
        seconds, cpu = timed(fn)
        runs.append((label, seconds, cpu))
        shutil.rmtree(cleanup)
        return seconds

    cp1 = measure("cp -r (first)", lambda: cp(card, base / "cp1"), base / "cp1")
    cps = measure("cp -r && sync", lambda: cp(card, base / "cps", sync=True), base / "cps")
    ours = measure(
        f"batches of {batch} (workers={workers})",
        lambda: ours_batch(files, base / "spool1", workers, batch),
        base / "spool1",
    )
    single = measure(
        "import_file one at a time",
        lambda: ours_one_by_one(files, base / "spool2"),
        base / "spool2",
    )
    cp2 = measure("cp -r (again)", lambda: cp(card, base / "cp2"), base / "cp2")
    print(f"card import: {photos} photos, {mb:.0f} MB, on {base}")
    gb = mb / 1024
    for label, seconds, cpu in runs:
        print(
            f"  {label:45s} {seconds:7.2f} s  {mb / seconds:8.1f} MB/s  "
            f"{photos / seconds:7.1f} photos/s  CPU {cpu / gb:5.2f} s/GB"
        )
    cp_mean = (cp1 + cp2) / 2
    print(
        f"  batches / cp -r (mean of both)              {cp_mean / ours * 100:7.1f} %  (target >= 80 %)"
    )
    print(f"  batches / cp -r && sync                     {cps / ours * 100:7.1f} %")
    print(f"  import_file one at a time / cp -r           {cp_mean / single * 100:7.1f} %")


IDLE_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, resource, sys, time
    from pathlib import Path
    from daemon.intake import SettledFile, Sources
    from tests.jpegs import make_jpeg

    async def main(base, seconds, files):
        roots = [base / "watch1", base / "watch2"]
        for i, root in enumerate(roots):
            for n in range(files):
                (root / f"{n // 100:03d}").mkdir(parents=True, exist_ok=True)
                make_jpeg(root / f"{n // 100:03d}" / f"P{n:05d}.jpg", seed=n + i)
        (base / "media").mkdir()
        sources = Sources(watch=roots, mount_roots=[base / "media"], settle_seconds=1.0,
                          batch_quiet_seconds=2.0)
        await sources.start()
        seen = 0
        while seen < 2 * files:
            if isinstance(await asyncio.wait_for(sources.next_event(), 60), SettledFile):
                seen += 1
        await asyncio.sleep(3)  # let the batch timers pass: idle from here on
        while not sources._events.empty():
            sources._events.get_nowait()
        u0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        u1 = resource.getrusage(resource.RUSAGE_SELF)
        wall = time.monotonic() - t0
        cpu = (u1.ru_utime - u0.ru_utime) + (u1.ru_stime - u0.ru_stime)
        with open("/proc/self/statm") as fh:
            rss_now = int(fh.read().split()[1]) * resource.getpagesize()
        await sources.stop()
        print(json.dumps({"cpu_s": cpu, "wall_s": wall, "rss_mb": rss_now / 2**20,
                          "maxrss_mb": u1.ru_maxrss / 1024, "files": 2 * files,
                          "polling": sources.polling}))

    asyncio.run(main(Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])))
    """
)


def bench_idle(base: Path, seconds: float, files: int) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", IDLE_SCRIPT, str(base), str(seconds), str(files)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        raise SystemExit(proc.returncode)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    pct = out["cpu_s"] / out["wall_s"] * 100
    print(
        f"idle Sources: 3 roots ({out['files']} photos settled), {out['wall_s']:.0f} s"
        f"{' (polling)' if out['polling'] else ''}"
    )
    print(f"  CPU  {out['cpu_s'] * 1000:8.1f} ms = {pct:6.3f} % of one core  (target <= 0.5 %)")
    print(f"  RSS  {out['rss_mb']:8.1f} MB now, {out['maxrss_mb']:.1f} MB peak")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=1000, help="photos on the card")
    parser.add_argument("--size-mb", type=float, default=3.0, help="size of each photo")
    parser.add_argument("--workers", type=int, default=2, help="stage_files threads")
    parser.add_argument("--batch", type=int, default=100, help="photos per batch")
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--idle-files", type=int, default=500, help="photos per watch folder")
    parser.add_argument("--skip-import", action="store_true")
    parser.add_argument("--skip-idle", action="store_true")
    parser.add_argument("--dir", type=Path, default=None, help="folder on the disk to measure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-import-") as tmp:
        base = Path(tmp)
        if not args.skip_import:
            bench_import(base / "import", args.photos, args.size_mb, args.workers, args.batch)
        if not args.skip_idle:
            (base / "idle").mkdir()
            bench_idle(base / "idle", args.idle_seconds, args.idle_files)


if __name__ == "__main__":
    main()
