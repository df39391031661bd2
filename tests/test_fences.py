"""No file can stop the daemon, and the daemon stops when its journal is gone (issue 12, cases
2, 5 under a memory limit, and 6).

Every per-file step is fenced: an unexpected exception while taking, reading, describing,
tagging or sending one photo costs that photo (``file_set_aside`` with the reason), which is
tried again and quarantined after QUARANTINE_AFTER failures in a row; everything else goes on,
and a restart does not crash. Each story runs the real daemon as a subprocess on real files
that hit a real failure, against the real embedded server.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.core.errors import EXIT_JOURNAL_GONE
from daemon.demo.drive import Drive, plan_drive, write_drive
from daemon.journal import QUARANTINE_AFTER, AsyncJournal, FileFailures, FileState
from daemon.journal.rows import FileRow
from daemon.pipeline import PipelineResult
from daemon.pipeline.plan import plan_batch
from daemon.pipeline.records import ImageRecord
from daemon.server.config import ServerConfig
from daemon.server.runner import ServerThread
from tests.daemon_proc import TOKEN, DaemonProc, new_daemon, wait_for
from tests.jpegs import make_jpeg

pytestmark = pytest.mark.timeout(180)

START = datetime(2024, 6, 1, 7, 0, 0, tzinfo=UTC)


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(tokens=(TOKEN,))) as srv:
        yield srv


def short_drive() -> Drive:
    """About 160 photos in two stretches (the break makes two sequences)."""
    return plan_drive(START, seed=1, stop_s=10.0, break_s=300.0)


def settled(d: DaemonProc, photos: int) -> bool:
    """``photos`` journaled, each finished, a duplicate or rejected, and no sequence pending.
    Fails at once if the daemon died."""
    if not d.running():
        raise AssertionError(f"the daemon died:\n{d.output()[-3000:]}")
    images = d.images()
    if not images:  # no journal, or no tables in it yet
        return False
    done = sum(images.get(s, 0) for s in ("finished", "duplicate", "rejected"))
    pending = d.query("SELECT count(*) FROM sequences WHERE state = 'pending'")[0][0]
    return done == photos and pending == 0


def assert_each_image_once(d: DaemonProc, server: ServerThread) -> None:
    stats = server.stats()
    assert stats["duplicate_images"] == 0 and stats["duplicate_sequences"] == 0
    assert stats["images"] == d.images()["finished"]
    names = [i.filename for i in server.server.store.images.values()]
    assert len(names) == len(set(names))


def non_utf8(folder: Path, raw: bytes) -> Path:
    """A path in ``folder`` whose name is the bytes ``raw`` (not valid UTF-8)."""
    return Path(os.fsdecode(os.path.join(os.fsencode(folder), raw)))


def test_a_file_name_that_is_not_utf8_is_uploaded_with_the_rest(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    """Case 2: a card from another system, names in Latin-1. It crashed the upload on every
    start (UnicodeEncodeError in the description) and nothing else went up."""
    inbox = tmp_path / "in"
    paths = write_drive(short_drive(), inbox / "2024-06-01")
    bad = non_utf8(paths[5].parent, b"Stra\xdfe-\xff\xfe0005.JPG")
    os.rename(paths[5], bad)
    # And one that is rejected (no capture time): its reason names the file too.
    no_time = make_jpeg(non_utf8(inbox, b"K\xe4se.jpg"), capture_time=None)
    d = new_daemon(daemons, tmp_path / "work", server.environment(), "--watch", str(inbox))
    d.start()
    wait_for("every photo handled", lambda: settled(d, len(paths) + 1), 60)
    assert_each_image_once(d, server)
    # The photo with the odd name is on the server, its name as readable text.
    names = {i.filename for i in server.server.store.images.values()}
    assert "Stra\\xdfe-\\xff\\xfe0005.JPG" in names
    assert d.images().get("rejected") == 1
    (reason,) = d.query("SELECT reason FROM files WHERE state = 'rejected'")[0]
    assert "capture time" in reason
    assert no_time.exists() and bad.exists()  # read in place, never touched
    assert not d.events("file_set_aside")
    # status, text and JSON, while it runs.
    assert d.status()["daemon"]["running"] is True
    shown = subprocess.run(
        [sys.executable, "-m", "daemon", "status", "--journal", str(d.journal)],
        env=d.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert shown.returncode == 0, shown.stderr
    assert "K\\xe4se.jpg: rejected: no capture time" in shown.stdout
    before = server.stats()
    assert d.stop() == 0
    # A restart takes it all up again without crashing or sending anything twice.
    d.start().wait_event("root_watched", 15)
    deadline = time.monotonic() + 4.0  # a scan and a batch's quiet time
    while time.monotonic() < deadline:
        assert d.running(), d.output()[-3000:]
        time.sleep(0.2)
    assert server.stats()["images"] == before["images"]
    assert d.stop() == 0


def with_big_header(src: Path, dest: Path) -> Path:
    """``src`` with two 40 KB comment segments before its EXIF: a header over the 64 KiB the
    reader takes in one read (a real JPEG; cameras write such makernotes and previews)."""
    data = src.read_bytes()
    comment = b"\xff\xfe" + struct.pack(">H", 40_002) + b"x" * 40_000
    dest.write_bytes(data[:2] + comment + comment + data[2:])
    return dest


def test_a_photo_the_reader_chokes_on_costs_only_itself(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    """Case 2: a JPEG whose header is over 64 KiB made the EXIF reader raise ValueError
    (I/O operation on closed file), which stopped the daemon on every start."""
    inbox = tmp_path / "in"
    paths = write_drive(short_drive(), inbox / "2024-06-01", with_gps_in_exif=True)
    odd = with_big_header(paths[40], inbox / "2024-06-01" / "BIGHEAD.JPG")
    d = new_daemon(daemons, tmp_path / "work", server.environment(), "--watch", str(inbox))
    d.start()
    wait_for("every photo handled", lambda: settled(d, len(paths) + 1), 60)
    assert_each_image_once(d, server)
    # Whatever the reader makes of it, it cost only itself: uploaded, a duplicate of the photo
    # it was made from, or set aside with a reason, after at most QUARANTINE_AFTER tries.
    [(state, reason)] = d.query(
        "SELECT f.state, f.reason FROM files f JOIN file_paths p ON p.hash = f.hash "
        "WHERE p.path = ?",
        str(odd),
    )
    tries = [e for e in d.events("file_set_aside") if e.get("file") == odd.name]
    assert len(tries) <= QUARANTINE_AFTER
    if state == "rejected":
        assert reason and "quarantined" in reason and odd.name not in reason
        assert len(tries) == QUARANTINE_AFTER
        assert "unexpected error while reading it" in tries[0]["reason"]
    else:
        assert state in ("finished", "duplicate")
    assert d.stop() == 0
    # The quarantine is journaled: a restart neither crashes nor tries the file again.
    d.start().wait_event("root_watched", 15)
    time.sleep(3.0)  # more than a batch's quiet time
    assert d.running(), d.output()[-3000:]
    assert not [e for e in d.events("file_set_aside") if e.get("file") == odd.name]
    assert d.stop() == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS as on Linux")
def test_a_photo_too_big_for_memory_costs_only_itself(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    """Case 5 under a Pi-sized memory limit: a real photo padded to 1 GiB (a hole, then an end
    marker) was a MemoryError in the upload that stopped every run. Now it is set aside with
    the reason and, after QUARANTINE_AFTER tries, its sequence goes up without it."""
    inbox = tmp_path / "in"
    paths = write_drive(short_drive(), inbox / "2024-06-01", with_gps_in_exif=True)
    big = paths[-1]
    with big.open("r+b") as fh:  # sparse: costs no disk
        fh.truncate(1 << 30)
        fh.seek((1 << 30) - 2)
        fh.write(b"\xff\xd9")
    d = new_daemon(daemons, tmp_path / "work", server.environment(), "--watch", str(inbox))
    env = dict(d.env, MALLOC_ARENA_MAX="2")  # the limit is on address space: few arenas

    def limited() -> None:
        limit = 3 << 29  # 1.5 GiB: the daemon fits, the photo and its tagged copy do not
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    runs = []
    for _ in range(QUARANTINE_AFTER):
        p = subprocess.run(
            d.command("--once"),
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=limited,
        )
        runs.append(p)
        assert "Traceback" not in p.stderr, p.stderr[-3000:]
        if settled_once(d, len(paths)):
            break
    assert settled_once(d, len(paths)), runs[-1].stderr[-3000:]
    assert_each_image_once(d, server)
    names = {i.filename for i in server.server.store.images.values()}
    assert big.name not in names
    said = [
        json.loads(line)
        for p in runs
        for line in p.stderr.splitlines()
        if line.startswith("{") and '"file_set_aside"' in line
    ]
    assert said and all(big.name in e["file"] and e["reason"] for e in said)
    assert len(said) <= QUARANTINE_AFTER


def settled_once(d: DaemonProc, photos: int) -> bool:
    """As ``settled`` for a daemon that is not running (``--once``); a photo set aside
    before it was journaled counts as handled."""
    images = d.images()
    done = sum(images.get(s, 0) for s in ("finished", "duplicate", "rejected"))
    pending = d.query("SELECT count(*) FROM sequences WHERE state = 'pending'")[0][0]
    return done >= photos - 1 and pending == 0 and not images.get("imported")


@pytest.mark.parametrize("how", ["deleted while idle", "replaced mid-import"])
def test_the_journal_gone_while_running_stops_the_daemon(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc], how: str
) -> None:
    """Case 6: the journal deleted while the daemon ran went unnoticed (and a restart then
    uploaded everything again). Now it stops within seconds, says why, exits 4."""
    inbox = tmp_path / "in"
    inbox.mkdir()
    d = new_daemon(daemons, tmp_path / "work", server.environment(), "--watch", str(inbox))
    d.start().wait_event("root_watched", 15)
    paths = write_drive(short_drive(), inbox / "2024-06-01", with_gps_in_exif=True)
    if how == "deleted while idle":
        wait_for("the drive uploaded", lambda: settled(d, len(paths)), 60)
        for p in d.work.glob("journal.sqlite3*"):
            p.unlink()
    else:
        d.wait_event("imported", 30)
        copy = d.work / "copy.sqlite3"
        shutil.copyfile(d.journal, copy)
        os.replace(copy, d.journal)  # another file at the same path
    gone_at = time.monotonic()
    assert d.proc is not None
    code = d.proc.wait(15)
    assert code == EXIT_JOURNAL_GONE, d.output()[-3000:]
    assert time.monotonic() - gone_at < 10
    [said] = d.events("journal_gone")
    assert said["level"] == "error" and str(d.journal) in said["reason"]
    assert "journal_gone" in (d.work / f"run{d.runs}.err").read_text()
    assert d.events("daemon_stopped")


def test_a_photo_that_cannot_be_described_is_rejected_not_the_batch() -> None:
    """Describing is fenced per photo: a record the pipeline let through with a time that has
    no zone (describe refuses it) is rejected with the reason; its sequence goes on."""
    good = [
        ImageRecord(
            Path(f"/in/G{i}.JPG"),
            datetime(2024, 6, 1, 7, 0, i, tzinfo=UTC),
            lat=52.5,
            lon=13.4 + i * 1e-4,
            content_hash=f"h{i}",
            sequence="seq-1",
        )
        for i in range(3)
    ]
    naive = good[1].replace(capture_time=datetime(2024, 6, 1, 7, 0, 1))
    result = PipelineResult([[good[0], naive, good[2]]], [], [])
    rows = [row(r.content_hash or "", str(r.path)) for r in good]
    plan = plan_batch("/in", rows, result, 3600.0, time.time())
    assert plan.sequences == [("seq-1", ["h0", "h2"])]
    [(file_hash, path, reason)] = plan.rejected
    assert file_hash == "h1" and path == "/in/G1.JPG"
    assert reason.startswith("unexpected error while describing: ValueError")


def row(file_hash: str, path: str) -> FileRow:
    return FileRow(
        file_hash, FileState.IMPORTED, None, "watch", "/in", None, 1, 0.0, {}, None, None, None,
        0.0, 0.0, (path,),
    )  # fmt: skip


async def test_failures_count_in_a_row_and_the_quarantine_survives_a_restart(
    tmp_path: Path,
) -> None:
    journal_path = tmp_path / "journal.sqlite3"
    async with await AsyncJournal.open(journal_path) as journal:
        failures = FileFailures(journal)
        boom = ValueError("I/O operation on closed file")
        first = await failures.failed("/in/a.jpg", "/in/a.jpg", boom, "taking it in", [1, 2.0])
        assert first.count == 1 and not first.quarantined
        assert "failure 1 of 3" in first.reason
        # A file that changed starts over; one that went through is cleared.
        again = await failures.failed("/in/a.jpg", "/in/a.jpg", boom, "taking it in", [5, 6.0])
        assert again.count == 1
        await failures.failed("h", "G1.JPG", boom, "reading it")
        await failures.cleared("h")
        assert (await failures.failed("h", "G1.JPG", boom, "reading it")).count == 1
        for _ in range(QUARANTINE_AFTER - 1):
            last = await failures.failed("h", "G1.JPG", boom, "reading it")
        assert last.quarantined
        assert last.reason.startswith("quarantined after 3 failures in a row: unexpected")
    async with await AsyncJournal.open(journal_path) as journal:
        failures = FileFailures(journal)
        assert await failures.quarantined("h") == last.reason
        assert await failures.quarantined("/in/a.jpg", [5, 6.0]) is None
