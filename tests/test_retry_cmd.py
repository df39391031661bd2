"""`retry` while a daemon holds the journal: a request left in the journal, merged with any
still pending, taken and applied by the daemon with its own writer, also after a restart.

The writer lock is held by a real ``Journal`` (what a running daemon holds) or by the real
daemon as a subprocess; the server is the embedded one on 127.0.0.1.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.journal import Journal, SequenceState
from daemon.journal.meta import RETRY_REQUESTS_META
from daemon.journal.sequences import request_retry
from daemon.server import ServerConfig
from daemon.server.runner import ServerThread
from tests.daemon_proc import TOKEN, DaemonProc, new_daemon, wait_for
from tests.test_upload_worker import described_folder, queue_folder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(tokens=(TOKEN,))) as srv:
        yield srv


def failed_sequences(work: Path, photos: Path, n: int) -> list[str]:
    """A journal with ``n`` sequences of 2 real described photos, each failed by a refusal."""
    (work / "inbox").mkdir(parents=True)
    uuids = []
    with Journal.open(work / "journal.sqlite3") as journal:
        for seed in range(n):
            described_folder(photos / f"ride{seed}", 2, seed=10 + seed)
            (uuid,) = queue_folder(journal, photos / f"ride{seed}")
            journal.set_sequence_state(uuid, SequenceState.FAILED, "refused: HTTP 422")
            uuids.append(uuid)
    return uuids


def retry(journal: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", "retry", *args, "--journal", str(journal)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def pending_request(journal: Path) -> object:
    conn = sqlite3.connect(f"{journal.as_uri()}?mode=ro", uri=True)
    try:
        row = conn.execute(
            "SELECT value FROM settings WHERE key = ?", (RETRY_REQUESTS_META,)
        ).fetchone()
    finally:
        conn.close()
    return json.loads(row[0]) if row else None


def test_requests_left_while_the_journal_is_held_are_merged_and_taken_when_a_daemon_starts(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    work = tmp_path / "work"
    first, second, third = failed_sequences(work, tmp_path / "photos", 3)
    path = work / "journal.sqlite3"
    with Journal.open(path):  # the writer lock, as a running daemon holds it
        for uuid in (second, first):
            asked = retry(path, uuid)
            assert asked.returncode == 0, asked.stderr
            assert f"asked the running daemon to retry {uuid}" in asked.stdout
        unknown = retry(path, "no-such-sequence")
        assert unknown.returncode == 2 and "not a failed sequence" in unknown.stderr
        assert pending_request(path) == sorted([first, second])
    flags = ["--watch", str(work / "inbox"), "--retry-failed-after", "3600"]
    d = new_daemon(daemons, work, server.environment(), *flags)
    d.start()
    for uuid in (first, second):
        wait_for(f"{uuid} to finish", lambda u=uuid: state(d, u) == "finished", 60, every=0.5)
    assert state(d, third) == "failed"  # not asked for, and its own next try is an hour away
    assert server.stats()["images"] == 4
    wait_for("the request to be cleared", lambda: pending_request(path) is None, 30, every=0.5)
    d.stop()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()


def test_a_request_for_every_sequence_absorbs_named_ones_and_a_gone_journal_is_not_created(
    tmp_path: Path,
) -> None:
    work = tmp_path / "work"
    (uuid,) = failed_sequences(work, tmp_path / "photos", 1)
    path = work / "journal.sqlite3"
    request_retry(path, [uuid])
    request_retry(path, None)
    request_retry(path, [uuid])
    assert pending_request(path) == "all"
    with pytest.raises(sqlite3.OperationalError):
        request_retry(tmp_path / "gone.sqlite3", None)
    assert not (tmp_path / "gone.sqlite3").exists()


def state(d: DaemonProc, uuid: str) -> str:
    return str(d.query("SELECT state FROM sequences WHERE uuid = ?", uuid)[0][0])
