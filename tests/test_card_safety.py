"""A card is safe to remove only when every file on it is journaled (issue 12, cases 1 and 7).

The real daemon as a subprocess, a real card (a folder with DCIM/ renamed into a mount root),
and real faults: strace makes the kernel's copy calls fail with ENOSPC, or the spool is a tmpfs
that fills up. While copies fail the card is never called imported, `status` says why and that
it is not safe to remove, the log says so once (not once per file and try), and when there is
room again the copies resume by themselves; only then is the card safe to remove. `run --once`
under such failures exits 3, not 0 (nor 2, which is for bad arguments), and counts what it left.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from daemon.demo.drive import plan_drive, write_drive
from daemon.server.config import ServerConfig
from daemon.server.runner import ServerThread
from tests.daemon_proc import FAST, TOKEN, DaemonProc, base_env, wait_for

pytestmark = pytest.mark.timeout(180)

START = datetime(2024, 6, 1, 7, 0, 0, tzinfo=UTC)
STRACE = shutil.which("strace")
needs_strace = pytest.mark.skipif(STRACE is None, reason="strace is not installed")
needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mounting a tmpfs needs root"
)
# Every line the daemon may write about a card's copies (the old code wrote file_not_read
# ~170 times a second and card_imported again and again).
ABOUT_COPIES = {
    "card_copy_failing",
    "card_copy_resumed",
    "card_imported",
    "file_not_read",
    "gpx_unreadable",
    "spool_write_failed",
}


@dataclass
class TracedDaemon(DaemonProc):
    """The daemon under strace's fault injection. Signals go to the daemon itself: strace,
    signalled, only lets go of it and leaves it running."""

    inject: list[str] = field(default_factory=list)

    def command(self, *extra: str) -> list[str]:
        inner = super().command(*extra)
        if not self.inject:
            return inner
        assert STRACE is not None
        return [STRACE, "-f", "-qq", "--seccomp-bpf", "-o", "/dev/null", *self.inject, *inner]

    def _daemon_pid(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None
        if not self.inject:
            return self.proc.pid
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return None
        return int(children.split()[0]) if children.split() else None

    def signal(self, sig: int) -> None:
        pid = wait_for("the daemon under strace", self._daemon_pid, 10)
        os.kill(pid, sig)

    def stop(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        pid = self._daemon_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
        return self.proc.wait(timeout)  # strace exits with the daemon's own exit code

    def kill(self) -> None:
        pid = self._daemon_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        super().kill()


def enospc_on(*calls: str, when: str = "") -> list[str]:
    """strace flags: ``calls`` fail with ENOSPC (from the ``when`` th call of each thread)."""
    flags = ["-e", "trace=copy_file_range,sendfile"]
    for call in calls:
        flags += ["-e", f"inject={call}:error=ENOSPC{':when=' + when if when else ''}"]
    return flags


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(tokens=(TOKEN,))) as srv:
        yield srv


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs: a spool disk that really fills up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where = tmp_path / "spooldisk"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """A filler file taking all but ``leave`` bytes of ``disk``."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    with filler.open("wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def make_card(tmp_path: Path) -> tuple[Path, list[Path]]:
    """A camera card away from the reader: ~160 photos and the GPS log in DCIM/100GOPRO."""
    staged = tmp_path / "staging" / "CARD1"
    drive = plan_drive(START, seed=3, stop_s=10.0, break_s=300.0)
    photos = write_drive(drive, staged / "DCIM" / "100GOPRO")
    return staged, photos


def traced(
    daemons: list[DaemonProc], work: Path, env: dict[str, str], inject: list[str], *args: str
) -> TracedDaemon:
    work.mkdir(parents=True, exist_ok=True)
    d = TracedDaemon(work, base_env(env), [*FAST, *args], inject=inject)
    daemons.append(d)
    return d


def text_status(d: DaemonProc) -> str:
    p = subprocess.run(
        [sys.executable, "-m", "daemon", "status", "--journal", str(d.journal)],
        env=d.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode == 0, p.stderr
    return p.stdout


def card_of(st: dict[str, Any], card: Path) -> dict[str, Any] | None:
    cards = st["daemon"].get("cards") or {}
    return cards.get(str(card.resolve()))


def said_safe(st: dict[str, Any], card: Path) -> bool:
    """Whether status tells the user the card may go (in its new field or in words)."""
    shown = card_of(st, card) or {}
    words = (st["daemon"].get("roots") or {}).get(str(card.resolve()), "")
    return bool(shown.get("safe_to_remove")) or "you may remove it" in words


def journaled(d: DaemonProc) -> int:
    return sum(d.images().values())


# -- (a) copies that keep failing --------------------------------------------------------------


WAYS = {
    # copy_file_range itself fails (the spool on the same disk as the card).
    "copy_file_range": (enospc_on("copy_file_range", "sendfile"), False),
    # No kernel copy between these files: the importer falls back to sendfile, which fails.
    "sendfile": (
        ["-e", "trace=copy_file_range,sendfile", "-e", "inject=copy_file_range:error=EXDEV"]
        + ["-e", "inject=sendfile:error=ENOSPC"],
        False,
    ),
    # Neither kernel copy works here: plain writes, into a spool disk that is really full.
    "write": (
        ["-e", "trace=copy_file_range,sendfile", "-e", "inject=copy_file_range:error=EXDEV"]
        + ["-e", "inject=sendfile:error=EINVAL"],
        True,
    ),
}


@needs_strace
@pytest.mark.parametrize("way", list(WAYS))
def test_a_card_whose_copies_keep_failing_is_never_called_safe_to_remove(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc], way: str
) -> None:
    inject, full_disk = WAYS[way]
    if full_disk and os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    media = tmp_path / "media"
    media.mkdir()
    args = ["--mount-root", str(media), "--min-free-mb", "0"]
    disk: Path | None = None
    if full_disk:
        disk = tmp_path / "spooldisk"
        disk.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], check=True)
        fill(disk, 0)
        args += ["--spool", str(disk / "spool")]
    try:
        d = traced(daemons, tmp_path / "work", server.environment(), inject, *args)
        d.start().wait_event("root_watched", 30)
        staged, photos = make_card(tmp_path)
        card = media / "CARD1"
        os.rename(staged, card)  # inserted
        d.wait_event("card_inserted", 30)
        time.sleep(2.0)  # its files settle and are tried
        first = len(d.events())
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:  # ten seconds of failing copies, watched
            st = d.status()
            assert not said_safe(st, card), (st["daemon"], journaled(d))
            assert d.events("card_imported") == []
            shown = card_of(st, card)
            assert shown is not None, st["daemon"]
            assert shown["safe_to_remove"] is False, shown
            assert "No space left on device" in shown["state"], shown
            assert "you may remove it" not in json.dumps(st)
            time.sleep(0.5)
        text = text_status(d)
        assert re.search(rf"{re.escape(str(card.resolve()))}: NOT safe to remove: .*No space", text)
        assert "you may remove it" not in text
        assert journaled(d) == 0
        assert d.events("card_imported") == []
        # Said once, not once per file and try: a handful of lines at most in 10 s.
        about = [e for e in d.events() if e.get("event") in ABOUT_COPIES]
        assert [e["event"] for e in about] == ["card_copy_failing"], about
        assert len(d.events()) - first <= 3, d.events()[first:]
        failing = d.events("card_copy_failing")[0]
        assert failing["reason"] == "No space left on device"
        assert d.stop() == 0
        # Stopped, the journal still says the card must not go: its photos are not copied.
        after = card_of(d.status(), card)
        assert after is not None and after["safe_to_remove"] is False
        assert len(photos) > 150
    finally:
        if disk is not None:
            subprocess.run(["umount", "-l", str(disk)], check=False)


# -- (b) copies that fail for a while -------------------------------------------------------------


def watch_until_imported(d: DaemonProc, card: Path, total: int, timeout: float) -> list[int]:
    """Poll status until the card is safe to remove; every look at it while it says so must
    find every photo journaled. Returns the journaled counts seen while it was not safe."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        count = journaled(d)  # before status: a count taken after could be newer
        st = d.status()
        shown = card_of(st, card)
        if said_safe(st, card):
            assert journaled(d) == total, f"said safe with {journaled(d)} of {total} journaled"
            assert shown is not None and shown["safe_to_remove"], st["daemon"]
            assert "you may remove it" in shown["state"]
            return seen
        seen.append(count)
        if time.monotonic() > deadline:
            raise AssertionError(f"card not imported after {timeout} s: {shown}, {count} journaled")
        time.sleep(0.3)


@needs_root
def test_a_spool_disk_that_fills_up_and_gets_room_again_imports_the_whole_card_once(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc], tmpfs: Path
) -> None:
    media = tmp_path / "media"
    media.mkdir()
    spool = tmpfs / "spool"
    filler = fill(tmpfs, 160 << 10)  # room for a few dozen of the ~160 photos
    d = traced(
        daemons,
        tmp_path / "work",
        server.environment(),
        [],
        *("--mount-root", str(media), "--spool", str(spool), "--min-free-mb", "0"),
    )
    d.start().wait_event("root_watched", 30)
    staged, photos = make_card(tmp_path)
    card = media / "CARD1"
    os.rename(staged, card)
    wait_for("the first photos journaled", lambda: journaled(d), 30)
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline:  # a few tries while the disk is full
        st = d.status()
        assert not said_safe(st, card), (st["daemon"], journaled(d), len(photos))
        time.sleep(0.3)
    some = journaled(d)
    assert 0 < some < len(photos), some
    shown = card_of(d.status(), card)
    assert shown is not None and shown["safe_to_remove"] is False
    assert "No space left on device" in shown["state"]
    assert d.events("card_imported") == []
    filler.unlink()  # room again: nobody tells the daemon
    seen = watch_until_imported(d, card, len(photos), 90)
    assert seen and max(seen) <= len(photos)
    d.wait_event("card_copy_resumed", 10)
    assert len(d.events("card_imported")) == 1
    assert len(d.events("card_copy_failing")) == 1
    assert d.events("file_not_read") == []
    rows = d.query("SELECT path FROM file_paths")
    assert sorted(Path(r[0]).name for r in rows) == sorted(p.name for p in photos)
    assert d.stop() == 0


@needs_strace
def test_copies_failing_from_the_tenth_on_never_free_the_card_before_all_are_journaled(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    # strace counts calls per thread: each batch's copying threads get their first nine
    # copies through, then fail; the held files are tried again in new threads, so the
    # failures "stop" for the next nine of each. The old code called the card imported with
    # a third of its photos missing.
    media = tmp_path / "media"
    media.mkdir()
    inject = enospc_on("copy_file_range", when="10+")
    d = traced(daemons, tmp_path / "work", server.environment(), inject, "--mount-root", str(media))
    d.start().wait_event("root_watched", 30)
    staged, photos = make_card(tmp_path)
    card = media / "CARD1"
    os.rename(staged, card)
    d.wait_event("card_inserted", 30)
    seen = watch_until_imported(d, card, len(photos), 120)
    assert any(0 < n < len(photos) for n in seen), seen  # it was seen part-copied
    assert len(d.events("card_imported")) == 1
    assert d.events("file_not_read") == []
    d.wait_event("card_copy_resumed", 10)
    assert d.stop() == 0


# -- (c) run --once ------------------------------------------------------------------------------


@needs_strace
def test_run_once_under_failing_copies_exits_3_and_counts_what_it_left(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    media = tmp_path / "media"
    media.mkdir()
    staged, photos = make_card(tmp_path)
    os.rename(staged, media / "CARD1")
    d = traced(
        daemons,
        tmp_path / "work",
        server.environment(),
        enospc_on("copy_file_range", "sendfile"),
        "--mount-root",
        str(media),
    )
    done = d.once(timeout=120)
    assert done.returncode == 3, (done.returncode, done.stdout, done.stderr[-2000:])
    left = re.search(r"; (\d+) card files not copied: No space left on device", done.stdout)
    assert left and int(left.group(1)) == len(photos) + 1, done.stdout  # and the GPS log
    assert "card_imported" not in done.stderr
    # With room again, the next run takes the whole card and has nothing left over.
    d.inject = []
    again = d.once(timeout=120)
    assert again.returncode == 0, (again.stdout, again.stderr[-2000:])
    assert "not copied" not in again.stdout and "not processed" not in again.stdout
    assert f"{len(photos)} new photos" in again.stdout


def test_an_io_error_on_the_journal_while_running_exits_3_not_2(tmp_path: Path) -> None:
    # The journal's folder taken away under a running --once: its next write cannot be made.
    if STRACE is None:
        pytest.skip("strace is not installed")
    inbox = tmp_path / "in"
    write_drive(plan_drive(START, seed=4, stop_s=10.0, break_s=300.0), inbox)
    work = tmp_path / "work"
    work.mkdir()
    journal = work / "journal.sqlite3"
    cmd = [
        STRACE, "-f", "-qq", "--seccomp-bpf", "-o", "/dev/null",
        "-e", "trace=pwrite64", "-P", f"{journal}-wal", "-e", "inject=pwrite64:error=EIO:when=3+",
        sys.executable, "-m", "daemon", "run", "--once", "--journal", str(journal),
        "--spool", str(work / "spool"), "--watch", str(inbox), "--log-format", "json", *FAST,
    ]  # fmt: skip
    env = base_env({})
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, (done.returncode, done.stdout, done.stderr[-2000:])
    assert "journal" in done.stderr and str(journal) in done.stderr
