"""Failed sequences are no dead end: `retry` while the daemon runs, and retries by themselves.

The real daemon as a subprocess over a journal in which one queued sequence of real described
JPEGs failed (as a refusal leaves it), with the embedded server on 127.0.0.1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.journal import Journal, SequenceState
from daemon.server import ServerConfig
from daemon.server.runner import ServerThread
from tests.daemon_proc import TOKEN, DaemonProc, new_daemon, wait_for
from tests.test_upload_worker import described_folder, queue_folder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(tokens=(TOKEN,))) as srv:
        yield srv


def failed_sequence(work: Path, folder: Path) -> str:
    """A journal holding one sequence of 3 photos that failed with the server's refusal."""
    work.mkdir(parents=True)
    (work / "inbox").mkdir()
    described_folder(folder, 3, seed=4)
    with Journal.open(work / "journal.sqlite3") as journal:
        (uuid,) = queue_folder(journal, folder)
        journal.set_sequence_state(uuid, SequenceState.FAILED, "refused by the server: HTTP 422")
    return uuid


def watch(tmp_path: Path) -> list[str]:
    return ["--watch", str(tmp_path / "work" / "inbox")]


def state_of(d: DaemonProc, uuid: str) -> str:
    return str(d.query("SELECT state FROM sequences WHERE uuid = ?", uuid)[0][0])


def cli(d: DaemonProc, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args, "--journal", str(d.journal)],
        env=dict(d.env, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_retry_while_the_daemon_runs_queues_a_failed_sequence_and_it_finishes(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    uuid = failed_sequence(tmp_path / "work", tmp_path / "photos")
    d = new_daemon(
        daemons,
        tmp_path / "work",
        server.environment(),
        *watch(tmp_path),
        "--retry-failed-after",
        "3600",
    )
    d.start()
    shown = wait_for(
        "status to show the next try",
        lambda: (lambda out: out if "next try in" in out else None)(cli(d, "status").stdout),
        30,
        every=0.5,
    )
    assert uuid in shown and "refused by the server: HTTP 422" in shown, shown
    asked = cli(d, "retry", "--all")
    assert asked.returncode == 0 and "asked the running daemon" in asked.stdout, asked
    wait_for("the sequence to finish", lambda: state_of(d, uuid) == "finished", 60, every=0.5)
    assert server.stats()["images"] == 3
    assert d.running()


def test_a_failed_sequence_is_retried_by_itself_after_its_delay(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    uuid = failed_sequence(tmp_path / "work", tmp_path / "photos")
    d = new_daemon(
        daemons,
        tmp_path / "work",
        server.environment(),
        *watch(tmp_path),
        "--retry-failed-after",
        "1",
    )
    d.start()
    wait_for("the sequence to finish", lambda: state_of(d, uuid) == "finished", 75, every=0.5)
    assert server.stats()["images"] == 3
    assert d.events("sequence_retried")


def test_retry_of_a_name_that_is_no_failed_sequence_is_a_usage_error(tmp_path: Path) -> None:
    failed_sequence(tmp_path / "work", tmp_path / "photos")
    d = DaemonProc(tmp_path / "work", dict(os.environ))
    wrong = cli(d, "retry", "no-such-sequence")
    assert wrong.returncode == 2 and "not a failed sequence: no-such-sequence" in wrong.stderr
    done = cli(d, "retry", "--all")
    assert done.returncode == 0 and "queued 1 failed sequence again" in done.stdout, done


def test_outside_upload_hours_photos_are_processed_but_wait_and_status_says_why(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    import time as time_module

    from tests.test_upload_cmd import geotagged

    now = time_module.localtime()
    start = (now.tm_hour + 2) % 24
    window = f"{start:02d}:00-{(start + 1) % 24:02d}:00"
    work = tmp_path / "work"
    (work / "inbox").mkdir(parents=True)
    d = new_daemon(daemons, work, server.environment(), *watch(tmp_path), "--upload-hours", window)
    d.start().wait_event("root_watched", 15)
    geotagged(work / "inbox" / "ride", 3, 48.1, seed=5)
    wait_for(
        "a pending sequence",
        lambda: d.query("SELECT count(*) FROM sequences WHERE state = 'pending'")[0][0] == 1,
        60,
        every=0.5,
    )
    shown = wait_for(
        "status to say why",
        lambda: (lambda out: out if "waiting for upload hours" in out else None)(
            cli(d, "status").stdout
        ),
        45,
        every=0.5,
    )
    assert window in shown and server.stats()["images"] == 0
    bad = subprocess.run(
        [sys.executable, "-m", "daemon", "config", "show"],
        env=dict(d.env, PYTHONPATH=str(ROOT), MAPILLARY_DAEMON_UPLOAD_HOURS="late"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "not a window like 22:00-07:00" in bad.stderr


def test_run_once_outside_upload_hours_leaves_the_sequences_queued(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    import time as time_module

    from tests.test_upload_cmd import geotagged

    start = (time_module.localtime().tm_hour + 2) % 24
    window = f"{start:02d}:00-{(start + 1) % 24:02d}:00"
    work = tmp_path / "work"
    (work / "inbox").mkdir(parents=True)
    geotagged(work / "inbox" / "ride", 3, 48.1, seed=6)
    d = new_daemon(daemons, work, server.environment(), *watch(tmp_path), "--upload-hours", window)
    done = d.once()
    assert done.returncode == 0, done.stderr[-2000:]
    assert "upload_waiting" in done.stdout + done.stderr
    assert d.query("SELECT count(*) FROM sequences WHERE state = 'pending'")[0][0] == 1
    assert server.stats()["images"] == 0
