"""The daemon as a user runs it (a subprocess), measured: card import, idle cost, a huge card,
and how soon a settled photo starts uploading.

1. Card import: a card of N photos of ~3 MB (real JPEGs from daemon.demo.drive), in ``--rounds``
   interleaved rounds of: ``cp -r`` of it, ``cp -r && sync`` (the daemon's durability), and
   the card "inserted" under the mount root of a running daemon (timed from the rename until
   the daemon logs ``card_imported``: every photo copied, hashed, flushed, renamed and
   journaled, settle time included); medians compared. Cold (the card's files dropped from the
   page cache first, as a card just inserted is), warm (cached: cp -r then never waits for a
   disk), and, where /dev/shm is another file system, a tmpfs card (copied by sendfile, as a
   FAT card is).
2. Idle: a daemon watching 3 roots (two watch folders with photos already uploaded, one mount
   root) for ``--idle-seconds``: CPU time of the process (/proc/PID/stat) as % of one core,
   and its RSS.
3. A card of ``--big-card`` small photos: peak RSS of the daemon while it imports and processes
   it, and how long ``mapillary-daemon status`` takes meanwhile.
4. Latency: a photo dropped into a watch folder; from the moment it has settled (its mtime +
   settle_seconds) to the daemon logging the start of its sequence's upload, less the
   batch_quiet_seconds the daemon waits by design.

    python tests/bench/bench_daemon.py            # 1000 x 3 MB, 60 s idle, 50,000-file card
    python tests/bench/bench_daemon.py --quick    # 100 x 3 MB, 10 s idle, 5,000-file card
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from daemon.demo.drive import Drive, plan_drive, write_drive, write_jpeg_bytes  # noqa: E402
from daemon.server.config import ServerConfig  # noqa: E402
from daemon.server.runner import ServerThread  # noqa: E402
from tests.daemon_proc import TOKEN, DaemonProc, base_env, wait_for  # noqa: E402

START = datetime(2024, 6, 1, 7, 0, 0, tzinfo=UTC)
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def photos(count: int, seed: int, interval_s: float = 2.0) -> Drive:
    """A drive with exactly ``count`` photos (as many laps as needed)."""
    per_lap = len(plan_drive(START, seed=seed, interval_s=interval_s).photos)
    laps = -(-count // per_lap)
    drive = plan_drive(START + timedelta(days=seed), seed=seed, interval_s=interval_s, laps=laps)
    return dataclasses.replace(drive, photos=drive.photos[:count])


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS now, peak RSS) in MB."""
    got = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                got[key] = int(value.split()[0]) / 1024
    return got["VmRSS"], got["VmHWM"]


def daemon(work: Path, env: dict[str, str], *args: str) -> DaemonProc:
    work.mkdir(parents=True, exist_ok=True)
    return DaemonProc(work, env, ["--tz", "+02:00", *args])


def no_token_env(base: Path) -> dict[str, str]:
    """No token anywhere: the daemon imports and processes but uploads nothing."""
    env = base_env({}, token="")
    env.pop("MAPILLARY_TOKEN")
    env["HOME"] = str(base / "home")
    env["XDG_CONFIG_HOME"] = str(base / "home" / ".config")
    return env


def forget_cached(folder: Path) -> None:
    """Drop ``folder``'s files from the page cache (they must be clean: sync first), so they
    are read from the disk like a card just inserted, of which nothing is in memory yet."""
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def timed_cp(src: Path, dest: Path, sync: bool = False, cold: bool = False) -> float:
    os.sync()
    if cold:
        forget_cached(src)
    start = time.perf_counter()
    subprocess.run(["cp", "-r", str(src), str(dest)], check=True)
    if sync:
        os.sync()
    seconds = time.perf_counter() - start
    shutil.rmtree(dest)
    return seconds


def import_once(
    card: Path, media: Path, work: Path, env: dict[str, str], cold: bool = False
) -> float:
    """Seconds from "inserting" ``card`` under a running daemon's mount root until it logs
    ``card_imported``; the card is taken out again afterwards."""
    d = daemon(work, env, "--mount-root", str(media))
    d.args += ["--settle-seconds", "1", "--batch-quiet-seconds", "2"]
    d.start()
    try:
        d.wait_event("root_watched", 30)
        os.sync()
        if cold:
            forget_cached(card)
        start = time.perf_counter()
        os.rename(card, media / card.name)
        d.wait_event("card_imported", 1800)
        seconds = time.perf_counter() - start
        journaled = sum(d.images().values())
    finally:
        d.stop(60)
    os.rename(media / card.name, card)
    shutil.rmtree(work)
    want = sum(1 for _ in card.rglob("*.JPG"))
    assert journaled == want, f"only {journaled} of {want} journaled"
    return seconds


def write_card(card: Path, count: int) -> float:
    """A card of ``count`` real ~3.4 MB JPEGs; its size in MB."""
    folder = card / "DCIM" / "100GOPRO"
    folder.mkdir(parents=True)
    total = 0
    for photo in photos(count, seed=1).photos:
        data = write_jpeg_bytes(photo, jpeg_size=(2000, 1500), quality=95)
        (folder / f"G{photo.index:07d}.JPG").write_bytes(data)
        total += len(data)
    return total / 2**20


def card_rounds(
    staged: Path, base: Path, rounds: int, cold: bool, label: str, mb: float, count: int
) -> dict[str, float]:
    """Interleaved rounds of cp -r, cp -r && sync and the daemon on the card at ``staged``
    (its mount root beside it, the copies and the daemon's spool under ``base``); medians
    compared, since this machine's disk and CPU are shared and a slow minute should hit cp
    and the daemon alike rather than one of them."""
    media = staged.parent / "media"
    media.mkdir(exist_ok=True)
    env = no_token_env(base)
    runs: dict[str, list[float]] = {"cp": [], "cps": [], "ours": []}
    for r in range(rounds):
        runs["cp"].append(timed_cp(staged, base / "cp", cold=cold))
        runs["cps"].append(timed_cp(staged, base / "cps", sync=True, cold=cold))
        runs["ours"].append(import_once(staged, media, base / f"work-{r}", env, cold))
        print(
            f"  {label} round {r + 1}: cp -r {runs['cp'][-1]:.2f} s, cp -r && sync"
            f" {runs['cps'][-1]:.2f} s, daemon {runs['ours'][-1]:.2f} s",
            flush=True,
        )
    cp, cps, ours = (statistics.median(runs[k]) for k in ("cp", "cps", "ours"))
    print(f"  {label}, medians of {rounds} interleaved rounds:")
    for what, sec in [("cp -r", cp), ("cp -r && sync", cps), ("daemon: insert -> imported", ours)]:
        print(f"    {what:33s} {sec:7.2f} s  {mb / sec:7.1f} MB/s  {count / sec:6.1f} photos/s")
    print(f"    daemon / cp -r                    {cp / ours * 100:6.1f} %  (target >= 80 %)")
    print(f"    daemon / cp -r && sync            {cps / ours * 100:6.1f} %")
    key = label.split()[0]
    return {
        f"import_{key}_pct_of_cp": cp / ours * 100,
        f"import_{key}_pct_of_cp_sync": cps / ours * 100,
        f"import_{key}_mb_s": mb / ours,
    }


def bench_card_import(base: Path, count: int, rounds: int) -> dict[str, float]:
    staged = base / "staging" / "CARD"
    mb = write_card(staged, count)
    print(f"card import: {count} photos, {mb:.0f} MB ({mb / count:.2f} MB each), on {base}")
    # Cold: the card's files are read from the disk, as from a card just inserted. Warm: they
    # are in the page cache (cp -r is then a copy in memory that never waits for the disk).
    figures = card_rounds(staged, base, rounds, True, "cold card", mb, count)
    figures |= card_rounds(staged, base, rounds, False, "warm card", mb, count)
    shutil.rmtree(staged.parent)
    # A card on another file system, as a FAT card is: the kernel cannot copy_file_range
    # across, so the daemon (and cp) fall back to sendfile / read-write. tmpfs stands in.
    shm = Path("/dev/shm")
    elsewhere = shm.is_dir() and os.stat(shm).st_dev != os.stat(base).st_dev
    if elsewhere and shutil.disk_usage(shm).free > 3 * mb * 2**20:
        other = Path(tempfile.mkdtemp(dir=shm, prefix="bench-card-"))
        try:
            write_card(other / "CARD", count)
            figures |= card_rounds(
                other / "CARD", base, rounds, False, "tmpfs card (other fs)", mb, count
            )
        finally:
            shutil.rmtree(other)
    return figures


def bench_idle(base: Path, seconds: float, server: ServerThread) -> dict[str, float]:
    roots = [base / "idle" / "watch1", base / "idle" / "watch2"]
    media = base / "idle" / "media"
    media.mkdir(parents=True)
    total = 0
    for i, root in enumerate(roots):
        total += len(write_drive(photos(200, seed=10 + i), root))
    d = daemon(base / "work-idle", base_env(server.environment()))
    d.args += ["--watch", str(roots[0]), "--watch", str(roots[1]), "--mount-root", str(media)]
    d.args += ["--settle-seconds", "1", "--batch-quiet-seconds", "2"]
    d.start()
    try:

        def done() -> bool:
            images = d.images()
            return images.get("finished", 0) + images.get("duplicate", 0) == total

        wait_for("the watch folders uploaded", done, 300, every=0.5)
        time.sleep(5)  # timers of the last batch pass
        assert d.proc is not None
        pid = d.proc.pid
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(seconds)
        cpu, wall = cpu_seconds(pid) - cpu0, time.monotonic() - t0
        rss, peak = memory_mb(pid)
    finally:
        d.stop(30)
    pct = cpu / wall * 100
    print(f"idle daemon: 3 roots ({total} photos uploaded before), {wall:.0f} s")
    print(f"  CPU  {cpu * 1000:8.1f} ms = {pct:6.3f} % of one core  (target <= 0.5 %)")
    print(f"  RSS  {rss:8.1f} MB now, {peak:.1f} MB peak  (target <= 60 MB)")
    return {"idle_cpu_pct": pct, "idle_rss_mb": rss}


def bench_big_card(base: Path, count: int) -> dict[str, float]:
    staged = base / "big" / "CARD"
    drive = photos(count, seed=3, interval_s=0.5)
    for i in range(0, count, 999):  # cameras keep folders under 1000 files
        part = dataclasses.replace(drive, photos=drive.photos[i : i + 999])
        write_drive(part, staged / "DCIM" / f"{100 + i // 999}GOPRO", gpx_name=None)
    media = base / "big" / "media"
    media.mkdir()
    d = daemon(base / "work-big", no_token_env(base), "--mount-root", str(media))
    d.args += ["--settle-seconds", "1", "--batch-quiet-seconds", "2"]
    d.start()
    status_s: list[float] = []
    peak = 0.0
    try:
        d.wait_event("root_watched", 30)
        start = time.perf_counter()
        os.rename(staged, media / "CARD")
        assert d.proc is not None
        while not d.events("batch_processed"):
            assert d.running(), d.output()[-2000:]
            t = time.perf_counter()
            d.status()
            status_s.append(time.perf_counter() - t)
            peak = max(peak, memory_mb(d.proc.pid)[1])
            time.sleep(1.0)
        took = time.perf_counter() - start
        peak = max(peak, memory_mb(d.proc.pid)[1])
        t = time.perf_counter()
        st = d.status()
        status_s.append(time.perf_counter() - t)
    finally:
        d.stop(60)
    imported = sum(st["images"].values())
    print(f"big card: {count} photos imported and processed in {took:.0f} s ({imported} journaled)")
    print(f"  peak RSS {peak:8.1f} MB  (target <= 150 MB)")
    print(
        f"  status   {statistics.median(status_s):8.3f} s median, {max(status_s):.3f} s worst "
        f"of {len(status_s)} while it ran  (target < 1 s)"
    )
    shutil.rmtree(base / "big")
    shutil.rmtree(d.work)
    return {"big_rss_mb": peak, "status_worst_s": max(status_s)}


def bench_latency(base: Path, server: ServerThread, drops: int) -> dict[str, float]:
    inbox = base / "latency"
    inbox.mkdir()
    settle, quiet = 1.0, 2.0
    d = daemon(base / "work-latency", base_env(server.environment()), "--watch", str(inbox))
    d.args += ["--settle-seconds", str(settle), "--batch-quiet-seconds", str(quiet)]
    d.start()
    waits = []
    try:
        d.wait_event("root_watched", 30)
        drive = photos(drops, seed=20)
        for n, photo in enumerate(drive.photos, 1):
            path = inbox / f"P{n:04d}.jpg"
            path.write_bytes(write_jpeg_bytes(photo, with_gps_in_exif=True))
            settled = path.stat().st_mtime + settle
            event = d.wait_event("sequence_upload_start", 60, count=n)[n - 1]
            began = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
            waits.append(began.timestamp() - settled - quiet)
            time.sleep(0.5)
    finally:
        d.stop(30)
    print(
        f"latency: settled photo -> its upload starts, less batch_quiet_seconds ({quiet:g} s), "
        f"{drops} drops"
    )
    print(f"  median {statistics.median(waits):6.2f} s, worst {max(waits):.2f} s")
    return {"latency_median_s": statistics.median(waits)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--photos", type=int, help="card photos of ~3 MB (1000)")
    parser.add_argument("--idle-seconds", type=float, help="idle measure (60)")
    parser.add_argument("--big-card", type=int, help="files on the big card (50,000)")
    parser.add_argument("--drops", type=int, default=5, help="latency samples")
    parser.add_argument("--rounds", type=int, default=3, help="card import rounds (3)")
    parser.add_argument("--dir", type=Path, help="where to work (default: a temp folder)")
    parser.add_argument("--only", choices=["import", "idle", "big", "latency"], action="append")
    args = parser.parse_args()
    count = args.photos or (100 if args.quick else 1000)
    idle = args.idle_seconds or (10.0 if args.quick else 60.0)
    big = args.big_card or (5000 if args.quick else 50_000)
    only = set(args.only or ["import", "idle", "big", "latency"])
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-daemon-") as tmp:
        base = Path(tmp)
        with ServerThread(ServerConfig(tokens=(TOKEN,))) as server:
            if "import" in only:
                figures |= bench_card_import(base, count, args.rounds)
            if "idle" in only:
                figures |= bench_idle(base, idle, server)
            if "big" in only:
                figures |= bench_big_card(base, big)
            if "latency" in only:
                figures |= bench_latency(base, server, args.drops)
    print("figures:", {k: round(v, 3) for k, v in figures.items()})


if __name__ == "__main__":
    main()
