"""Big-file benchmark: one "photo" of GiBs (a real photo, a sparse hole, an end marker) through
the real daemon to the embedded server, over loopback.

Case 5 of issue 12: such a file used to be read whole into memory twice (4.1 GB peak RSS for a
2 GiB hole) and to crash the upload loop under a Pi-sized memory limit. Now the daemon sets it
aside above ``max_photo_mb`` and, under a raised cap, streams it: the header is built in memory,
the rest is read from disk as it is sent. Prints the time from start to the upload finished and
the daemon's peak RSS (VmHWM, Linux), target < 150 MB whatever the size.

    python tests/bench/bench_big_file.py                 # 2 GiB hole (needs ~2.1 GB free disk)
    python tests/bench/bench_big_file.py --hole-mb 300   # quick check
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from daemon.server.config import ServerConfig  # noqa: E402
from daemon.server.runner import ServerThread  # noqa: E402
from tests.daemon_proc import TOKEN, DaemonProc, new_daemon, wait_for  # noqa: E402
from tests.test_never_block import all_up, peak_rss_mb, sparse_photo  # noqa: E402

MB = 1 << 20
TARGET_RSS_MB = 150


def run(hole_mb: int, timeout: float) -> int:
    daemons: list[DaemonProc] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-big-") as tmp,
        ServerThread(ServerConfig(tokens=(TOKEN,))) as server,
    ):
        work = Path(tmp)
        inbox = work / "in"
        big = sparse_photo(inbox / "big" / "G0000001.JPG", hole_mb * MB)
        size = big.stat().st_size
        cap = str(size // MB + 100)
        d = new_daemon(daemons, work / "daemon", server.environment(), "--watch", str(inbox))
        try:
            started = time.monotonic()
            d.start("--max-photo-mb", cap).wait_event("root_watched", 30)
            wait_for("the big photo uploaded", lambda: all_up(d, [big]), timeout, every=0.5)
            took = time.monotonic() - started
            assert d.proc is not None
            peak = peak_rss_mb(d.proc.pid)
            d.stop(30)
        finally:
            d.kill()
        held = server.stats()["images"]
    verdict = "OK" if peak < TARGET_RSS_MB else "OVER TARGET"
    print(
        f"{size / MB:,.0f} MB photo ({hole_mb:,} MB of it a hole): uploaded in {took:.1f} s "
        f"({size / MB / took:.0f} MB/s, hashed, measured and sent), {held} image on the server; "
        f"daemon peak RSS {peak:.0f} MB (target < {TARGET_RSS_MB} MB): {verdict}"
    )
    return 0 if peak < TARGET_RSS_MB and held == 1 else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hole-mb", type=int, default=2048, help="size of the hole (2048)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (600)")
    args = parser.parse_args()
    sys.exit(run(args.hole_mb, args.timeout))


if __name__ == "__main__":
    main()
