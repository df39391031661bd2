"""Progress bars: ours (daemon.core.progress) against tqdm and rich, for the one bar of every
command (issue 16). For each: the import time and the RSS it adds to a fresh interpreter (median
of ``--runs`` subprocesses, each against a bare ``python -c pass`` in the same run), and the cost
of one update (``--updates`` byte updates, as the upload makes one per 256 KB block) drawn on a
real pty with each library's own redraw throttling. tqdm and rich are measured only when
installed (``pip install tqdm rich``): they are not dependencies.

    python tests/bench/bench_progress.py
    python tests/bench/bench_progress.py --runs 3 --updates 20000
"""

from __future__ import annotations

import argparse
import os
import pty
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

IMPORTS = {
    "baseline": "pass",
    "ours": "import daemon.core.progress",
    "tqdm": "import tqdm",
    "rich": "import rich.progress",
}

# Each child prints: seconds to import, peak RSS in KB after it.
PROBE = """
import resource, sys, time
t = time.perf_counter()
{stmt}
t = time.perf_counter() - t
print(t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

UPDATES = {
    "ours": """
from daemon.core.progress import Progress
def run(tty, n, total):
    bar = Progress(total, "upload", unit="bytes", stream=tty)
    for i in range(1, n + 1):
        bar.update(i * 262144)
    bar.close()
""",
    "tqdm": """
from tqdm import tqdm
def run(tty, n, total):
    bar = tqdm(total=total, unit="B", unit_scale=True, file=tty, desc="upload")
    for _ in range(n):
        bar.update(262144)
    bar.close()
""",
    "rich": """
from rich.console import Console
from rich.progress import Progress, DownloadColumn, TransferSpeedColumn, TimeRemainingColumn, BarColumn
def run(tty, n, total):
    console = Console(file=tty, force_terminal=True, width=100)
    with Progress(BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
                  console=console) as progress:
        task = progress.add_task("upload", total=total)
        for _ in range(n):
            progress.update(task, advance=262144)
""",
}


def available(name: str) -> bool:
    if name in ("baseline", "ours"):
        return True
    code = subprocess.run([sys.executable, "-c", IMPORTS[name]], capture_output=True).returncode
    return code == 0


def import_figures(stmt: str, runs: int) -> tuple[float, float]:
    """Median import seconds and peak RSS (MB) of a fresh interpreter running ``stmt``."""
    seconds, rss = [], []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", PROBE.format(stmt=stmt)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout.split()
        seconds.append(float(out[0]))
        rss.append(int(out[1]) / 1024)
    return statistics.median(seconds), statistics.median(rss)


def update_cost(name: str, updates: int) -> float:
    """Microseconds per update with the bar drawn on a pty (its reader drains it)."""
    namespace: dict[str, object] = {}
    exec(UPDATES[name], namespace)  # noqa: S102 (our own snippet above)
    master, slave = pty.openpty()
    stop = threading.Event()

    def drain() -> None:
        while not stop.is_set():
            try:
                os.read(master, 65536)
            except OSError:
                return

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    with open(slave, "w", encoding="utf-8", closefd=True) as tty:
        run = namespace["run"]
        start = time.perf_counter()
        run(tty, updates, updates * 262144)  # type: ignore[operator]
        elapsed = time.perf_counter() - start
    stop.set()
    os.close(master)
    return elapsed / updates * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="fresh interpreters per import figure")
    parser.add_argument("--updates", type=int, default=50000, help="updates per bar")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    base_s, base_rss = import_figures(IMPORTS["baseline"], args.runs)
    print(f"bare interpreter: start-up import 0 ms, peak RSS {base_rss:.1f} MB")
    print(f"{'bar':6} {'import ms':>10} {'+RSS MB':>8} {'µs/update':>10} {'vs ours':>8}")
    ours_cost = None
    for name in ("ours", "tqdm", "rich"):
        if not available(name):
            print(f"{name:6} not installed (pip install {name})")
            continue
        seconds, rss = import_figures(IMPORTS[name], args.runs)
        cost = update_cost(name, args.updates)
        ours_cost = ours_cost or cost
        print(
            f"{name:6} {(seconds - base_s) * 1000:10.1f} {rss - base_rss:8.1f} "
            f"{cost:10.2f} {cost / ours_cost:7.1f}x"
        )


if __name__ == "__main__":
    main()
