"""`upload` on a terminal draws one progress bar (bytes, rate, ETA) up to 100 %; in a pipe or a
cron job it draws none and says one summary line. Real subprocesses against our server, the
terminal a real pty."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from daemon.core.progress import size_text
from daemon.server import ServerThread
from tests.daemon_proc import user_env
from tests.jpegs import make_jpeg
from tests.test_upload_cmd import START, TOKEN, daemon, server  # noqa: F401 (fixture)

BAR = re.compile(
    r"upload \[[#.]+\] (\d+(?:\.\d)? [KMG]?B)/(\d+(?:\.\d)? [KMG]?B) (\d+)%"
    r"(?: (\d+(?:\.\d)? [KMG]?B)/s)?(?: ETA (\d+ (?:s|min)))?"
)
SUMMARY = re.compile(r"^upload: (\d+(?:\.\d)? [KMG]?B) in [\d.]+ s \([\d.]+ [KMG]?B/s\)$", re.M)


def big_photos(folder: Path, count: int) -> int:
    """``count`` geotagged photos of about 1.2 MB each (noise compresses badly); their bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        make_jpeg(
            folder / f"IMG_{i:04d}.jpg",
            size=(1200, 900),
            quality=95,
            seed=40 + i,
            capture_time=START + timedelta(seconds=2 * i),
            offset="+00:00",
            lat=48.1 + i * 0.0001,
            lon=11.5,
            direction=0.0,
        )
    return sum(p.stat().st_size for p in folder.glob("*.jpg"))


def final_lines(screen: str) -> str:
    """What the terminal shows in the end: each line as its last carriage return left it."""
    lines = screen.replace("\x1b[K", "").replace("\r\n", "\n").split("\n")
    return "\n".join(line.split("\r")[-1] for line in lines)


def run_on_a_terminal(tmp_path: Path, srv: ServerThread, *args: str) -> tuple[int, str]:
    """``mapillary-daemon ARGS`` with standard output and error on a pty; exit code, screen."""
    proc, master = start_on_a_terminal(tmp_path, srv, *args)
    screen = read_screen(proc, master)
    return proc.wait(timeout=30), screen.decode(errors="replace")


def start_on_a_terminal(
    tmp_path: Path, srv: ServerThread, *args: str
) -> tuple[subprocess.Popen[bytes], int]:
    """``mapillary-daemon ARGS`` started with standard output and error on a pty 120 columns
    wide; the process and the pty's master side to read the screen from."""
    env = user_env(tmp_path, srv.environment(), TOKEN) | {"COLUMNS": "120"}
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=tmp_path,
    )
    os.close(slave)
    return proc, master


def read_screen(
    proc: subprocess.Popen[bytes], master: int, watch: Callable[[bytes], None] | None = None
) -> bytes:
    """All the process writes to the pty until it closes its side (two minutes at most),
    closing ``master``; ``watch`` sees the screen so far after each read."""
    screen = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed its side: all read
                break
            if not data:
                break
            screen += data
        elif proc.poll() is not None:
            break
        if watch is not None:
            watch(screen)
    os.close(master)
    return screen


def test_upload_on_a_terminal_shows_bytes_rate_eta_and_ends_at_100_percent(
    tmp_path: Path,
    server: ServerThread,  # noqa: F811
) -> None:
    photos = tmp_path / "ride"
    original = big_photos(photos, 4)
    assert daemon(tmp_path, server, "process", str(photos)).returncode == 0
    # Capped at 2 MB/s, the 5 MB take over two seconds: the bar is redrawn on the way.
    code, screen = run_on_a_terminal(tmp_path, server, "upload", str(photos), "--max-rate", "2e6")
    assert code == 0, screen
    bars = [m.groups() for m in BAR.finditer(screen)]
    assert len(bars) >= 3, screen
    percents = [int(b[2]) for b in bars]
    assert percents == sorted(percents) and percents[0] < 100 and percents[-1] == 100
    # The total is the tagged bytes: the originals plus their descriptions, a few KB at most.
    done, total = bars[-1][0], bars[-1][1]
    assert done == total
    assert total in {size_text(original + extra) for extra in range(0, 8192, 16)}
    assert any(b[3] for b in bars) and any(b[4] for b in bars)  # a rate, and an ETA on the way
    assert "upload: 1 sequence (4 images) finished" in screen
    summary = SUMMARY.search(final_lines(screen))
    assert summary is not None and summary.group(1) == total, repr(screen[-600:])
    assert final_lines(screen).count("[#") == 0  # the bar is taken off the screen at the end


def test_upload_without_a_terminal_draws_no_bar_and_prints_one_summary(
    tmp_path: Path,
    server: ServerThread,  # noqa: F811
) -> None:
    photos = tmp_path / "ride"
    big_photos(photos, 2)
    assert daemon(tmp_path, server, "process", str(photos)).returncode == 0
    done = daemon(tmp_path, server, "upload", str(photos))
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stdout + done.stderr and "[#" not in done.stdout + done.stderr
    assert done.stderr == ""
    assert len(SUMMARY.findall(done.stdout)) == 1
    assert "upload: 1 sequence (2 images) finished" in done.stdout


def test_process_and_upload_on_a_terminal_shows_the_same_bar(
    tmp_path: Path,
    server: ServerThread,  # noqa: F811
) -> None:
    photos = tmp_path / "ride"
    big_photos(photos, 2)
    code, screen = run_on_a_terminal(
        tmp_path, server, "process-and-upload", str(photos), "--max-rate", "2e6"
    )
    assert code == 0, screen
    bars = [m.groups() for m in BAR.finditer(screen)]
    assert bars and bars[-1][2] == "100" and bars[-1][0] == bars[-1][1]
    assert "upload: 1 sequence (2 images) finished" in screen
    assert SUMMARY.search(final_lines(screen)) is not None


def test_ctrl_c_takes_the_bar_off_before_saying_interrupted(
    tmp_path: Path,
    server: ServerThread,  # noqa: F811
) -> None:
    photos = tmp_path / "ride"
    big_photos(photos, 4)
    assert daemon(tmp_path, server, "process", str(photos)).returncode == 0
    proc, master = start_on_a_terminal(tmp_path, server, "upload", str(photos), "--max-rate", "5e5")
    interrupted = False

    def ctrl_c(screen: bytes) -> None:
        nonlocal interrupted
        if not interrupted and BAR.search(screen.decode(errors="replace")):
            proc.send_signal(signal.SIGINT)  # the user's Ctrl-C while the bar is up
            interrupted = True

    screen = read_screen(proc, master, ctrl_c)
    assert proc.wait(timeout=30) != 0
    assert interrupted
    shown = final_lines(screen.decode(errors="replace"))
    assert "interrupted" in shown, shown
    # A line of its own: not written onto the end of the bar.
    assert all("interrupted" not in line or "upload [" not in line for line in shown.split("\n"))
    assert "upload [" not in shown, shown  # and taken off the screen
