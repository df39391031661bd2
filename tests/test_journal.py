"""The journal on a real SQLite file: it survives kill -9, refuses what it cannot trust, and never
leaves half a batch behind."""

from __future__ import annotations

import asyncio
import doctest
import hashlib
import importlib
import inspect
import json
import os
import pkgutil
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import platformdirs
import pytest

import daemon.journal
from daemon.journal import (
    EVENTS_KEPT,
    MIGRATIONS,
    SCHEMA_VERSION,
    AsyncJournal,
    FileState,
    IllegalTransition,
    Journal,
    JournalError,
    NewFile,
    NotFound,
    SequenceState,
    StateChange,
    default_journal_path,
)

ROOT = Path(__file__).resolve().parents[1]
F = FileState


def sha(n: object) -> str:
    return hashlib.sha256(f"photo {n}".encode()).hexdigest()


def entry(n: object, root: str = "/media/card", **kw: object) -> NewFile:
    args: dict[str, object] = {
        "hash": sha(n),
        "path": f"{root}/DCIM/IMG_{n}.JPG",
        "source_kind": "card",
        "source_root": root,
        "size": 1000 + len(str(n)),
        "mtime": 1_700_000_000.0,
    }
    args.update(kw)
    return NewFile(**args)  # type: ignore[arg-type]


def python(code: str, *args: str, **kw: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,  # type: ignore[arg-type]
    )


def run_python(code: str, *args: str, timeout: float = 30) -> tuple[int, str, str]:
    proc = python(code, *args)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "journal.sqlite3"


@pytest.fixture
def journal(path: Path):
    with Journal.open(path) as j:
        yield j


def advance(j: Journal, h: str, *states: FileState) -> None:
    for s in states:
        j.set_file_state(h, s, reason="test reason" if s in (F.REJECTED, F.FAILED) else None)


def test_doctests() -> None:
    tried = 0
    for info in pkgutil.iter_modules(daemon.journal.__path__):
        result = doctest.testmod(importlib.import_module(f"daemon.journal.{info.name}"))
        assert result.failed == 0
        tried += result.attempted
    assert tried > 0


# -- opening, versions, damage --------------------------------------------------------------------


def test_default_path_is_in_the_user_state_dir() -> None:
    expected = platformdirs.user_state_path("mapillary-daemon") / "journal.sqlite3"
    assert default_journal_path() == expected


def test_a_new_journal_is_wal_full_sync_and_current(path: Path, journal: Journal) -> None:
    assert path.exists()
    assert journal._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    other = sqlite3.connect(path)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert other.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    other.close()


V1_SCHEMA = """
CREATE TABLE sequences (uuid TEXT PRIMARY KEY, state TEXT NOT NULL, reason TEXT, source_root TEXT,
    cluster_id TEXT, manifest_key TEXT, manifest_handle TEXT, created_at REAL NOT NULL,
    finished_at REAL);
CREATE TABLE files (hash TEXT PRIMARY KEY, state TEXT NOT NULL, reason TEXT,
    source_kind TEXT NOT NULL, source_root TEXT NOT NULL, spool_path TEXT, size INTEGER NOT NULL,
    mtime REAL NOT NULL, metadata TEXT NOT NULL DEFAULT '{}',
    sequence_id TEXT REFERENCES sequences(uuid), seq_index INTEGER, handle TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL);
CREATE INDEX files_state ON files(state, updated_at);
CREATE INDEX files_sequence ON files(sequence_id, seq_index);
CREATE TABLE file_paths (hash TEXT NOT NULL REFERENCES files(hash), path TEXT NOT NULL,
    source_kind TEXT NOT NULL, source_root TEXT NOT NULL, size INTEGER NOT NULL,
    mtime REAL NOT NULL, seen_at REAL NOT NULL, PRIMARY KEY (hash, path));
CREATE INDEX file_paths_path ON file_paths(path, seen_at);
CREATE TABLE uploads (file_hash TEXT PRIMARY KEY REFERENCES files(hash), key TEXT NOT NULL UNIQUE,
    md5 TEXT NOT NULL, size INTEGER NOT NULL, bytes_confirmed INTEGER NOT NULL DEFAULT 0,
    handle TEXT, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, updated_at REAL NOT NULL);
"""


def make_v1(path: Path, extra_sql: str = "") -> str:
    """A journal as version 1 of the program left it, with one described image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(V1_SCHEMA + extra_sql)
    h = sha("old")
    conn.execute(
        "INSERT INTO files VALUES (?, 'described', NULL, 'watch', '/photos', NULL, 42, 1.5, "
        "'{\"lat\": 1.25}', NULL, NULL, NULL, 10.0, 11.0)",
        (h,),
    )
    conn.execute(
        "INSERT INTO file_paths VALUES (?, '/photos/a.jpg', 'watch', '/photos', 42, 1.5, 10.0)",
        (h,),
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    return h


def test_an_older_journal_is_upgraded_and_keeps_its_data(path: Path) -> None:
    h = make_v1(path)
    with Journal.open(path) as j:
        old = j.get_file(h)
        assert old is not None
        assert (old.state, old.metadata, old.paths) == (
            F.DESCRIBED,
            {"lat": 1.25},
            ("/photos/a.jpg",),
        )
        j.record_event("info", "upgraded")  # tables of version 2 exist
        j.set_meta("rate", 1.5)
        assert j.get_meta("rate") == 1.5
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_a_journal_of_version_2_loses_only_the_unused_upload_columns(
    path: Path,
) -> None:
    previous = 2  # the last one with upload progress columns
    path.parent.mkdir(parents=True)
    conn = sqlite3.connect(path)
    for step in MIGRATIONS[:previous]:  # the journal as the previous version of the code made it
        for statement in step:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {previous}")
    h = sha("old")
    conn.execute(
        "INSERT INTO files VALUES (?, 'uploaded', NULL, 'card', '/media/card', NULL, 42, 1.5, "
        "'{}', NULL, NULL, 'handle-1', 10.0, 11.0)",
        (h,),
    )
    conn.execute(
        "INSERT INTO uploads (file_hash, key, md5, size, bytes_confirmed, handle, attempts, "
        "last_error, updated_at) VALUES (?, 'mly_tools_ab.jpg', 'ab', 42, 42, 'handle-1', 2, "
        "'reset', 12.0)",
        (h,),
    )
    conn.commit()
    conn.close()
    with Journal.open(path) as j:
        up = j.upsert_upload(h, "mly_tools_ab.jpg", "ab", 42)
        assert (up.file_hash, up.key, up.md5, up.size, up.handle, up.updated_at) == (
            h,
            "mly_tools_ab.jpg",
            "ab",
            42,
            "handle-1",
            12.0,
        )
        assert j.get_file(h).handle == "handle-1"  # type: ignore[union-attr]
        assert j.integrity_check() == []
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    columns = [r[1] for r in conn.execute("PRAGMA table_info(uploads)")]
    assert columns == ["file_hash", "key", "md5", "size", "handle", "updated_at"]
    conn.close()


def test_a_failed_upgrade_changes_nothing(path: Path) -> None:
    # A v1 file that already has a table the next step creates: the step fails part-way.
    h = make_v1(path, "CREATE TABLE settings (x);")
    with pytest.raises(JournalError, match=str(path)):
        Journal.open(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "events" not in tables  # created by the same step before it failed, rolled back
    assert conn.execute("SELECT hash FROM files").fetchall() == [(h,)]
    conn.close()


def test_a_newer_journal_is_refused_untouched(path: Path) -> None:
    path.parent.mkdir(parents=True)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE future (x)")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    for opener in (Journal.open, Journal.open_readonly):
        with pytest.raises(JournalError, match="newer than this program") as info:
            opener(path)
        assert str(path) in str(info.value)
    assert path.read_bytes() == before


def test_a_garbage_file_is_refused_and_left_untouched(path: Path) -> None:
    path.parent.mkdir(parents=True)
    garbage = random.Random(7).randbytes(10_000)
    path.write_bytes(garbage)
    for opener in (Journal.open, Journal.open_readonly):
        with pytest.raises(JournalError, match="not a SQLite database") as info:
            opener(path)
        assert str(path) in str(info.value)
    assert path.read_bytes() == garbage
    assert not path.with_name(path.name + "-wal").exists()


def test_a_damaged_index_is_reported_by_integrity_check(path: Path) -> None:
    with Journal.open(path) as j:
        j.add_files([entry(n, metadata={"pad": "x" * 300}) for n in range(400)])
        assert j.integrity_check() == []
    conn = sqlite3.connect(path)
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'files_state'").fetchone()
    page = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data = bytearray(path.read_bytes())
    end = root[0] * page
    data[end - 200 : end] = bytes(200)  # wipe the last cells of the index's root page
    path.write_bytes(bytes(data))
    with Journal.open(path) as j:
        problems = j.integrity_check()
    assert any("missing from index files_state" in p for p in problems), problems


def test_another_sqlite_database_is_not_taken_over(path: Path) -> None:
    path.parent.mkdir(parents=True)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE photos (name TEXT)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(JournalError, match="not a journal"):
        Journal.open(path)
    assert path.read_bytes() == before


def test_a_folder_that_cannot_exist_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "plain-file").write_text("x")
    target = tmp_path / "plain-file" / "journal.sqlite3"
    with pytest.raises(JournalError, match="cannot create its folder") as info:
        Journal.open(target)
    assert str(target) in str(info.value)


def test_reader_needs_an_existing_journal(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="no journal at"):
        Journal.open_readonly(tmp_path / "missing.sqlite3")
    assert not (tmp_path / "missing.sqlite3").exists()


# -- files and states -----------------------------------------------------------------------------


def test_the_same_content_is_one_file_seen_at_several_paths(journal: Journal) -> None:
    assert journal.add_file(entry(1)) is True
    again = entry(1, root="/home/me/photos", source_kind="watch", spool_path="/spool/ab.jpg")
    assert journal.add_file(again) is False
    row = journal.get_file(sha(1))
    assert row is not None
    assert row.paths == ("/media/card/DCIM/IMG_1.JPG", "/home/me/photos/DCIM/IMG_1.JPG")
    assert row.source_kind == "card"  # the first sighting names the source
    assert row.spool_path == "/spool/ab.jpg"  # filled in because it had none
    assert row.readable_path == "/spool/ab.jpg"
    assert journal.add_files([entry(2), entry(1), entry(2), entry(3)]) == [True, False, False, True]
    assert journal.count_by_state()[F.IMPORTED] == 3
    assert journal.lookup_path("/home/me/photos/DCIM/IMG_1.JPG") == (sha(1), 1001, 1_700_000_000.0)
    assert journal.lookup_path("/nowhere.jpg") is None


def test_a_name_that_is_not_utf8_is_kept_exactly(journal: Journal) -> None:
    odd = os.fsdecode(b"/media/card/DCIM/IMG_\xff\xfe.JPG")
    journal.add_file(entry(9, path=odd))
    row = journal.get_file(sha(9))
    assert row is not None and row.paths == (odd,)
    assert os.fsencode(row.paths[0]) == b"/media/card/DCIM/IMG_\xff\xfe.JPG"
    assert journal.lookup_path(odd) is not None
    json.dumps(journal.summary())


def test_a_root_is_read_page_by_page_in_recorded_order(journal: Journal) -> None:
    journal.add_files([entry(n) for n in range(7)])
    journal.add_files([entry("other", root="/media/other")])
    journal.set_file_state(sha(2), F.WAITING_FOR_POSITION, "no position")
    advance(journal, sha(3), F.DESCRIBED)
    states = [F.IMPORTED, F.WAITING_FOR_POSITION]
    pages, after = [], 0
    while True:
        rows, after = journal.files_of_root_page("/media/card", states, after, limit=2)
        if not rows:
            break
        pages.append([r.hash for r in rows])
        for r in rows:  # as processing does: photos set waiting are not read twice
            if r.state == F.IMPORTED:
                journal.set_file_state(r.hash, F.WAITING_FOR_POSITION, "no position")
    # The described photo and the other card's are left out; the pages go on from where they
    # stopped although their rows changed state meanwhile.
    assert pages == [[sha(0), sha(1)], [sha(2), sha(4)], [sha(5), sha(6)]]
    assert journal.files_of_root_page("/media/card", states, after, limit=2) == ([], after)
    first = journal.get_file(sha(2))
    assert first is not None and first.paths == ("/media/card/DCIM/IMG_2.JPG",)
    created = journal.oldest_of_root("/media/card", [F.WAITING_FOR_POSITION])
    assert created == first.created_at
    assert journal.oldest_of_root("/media/nothing", states) is None


def test_legal_transitions_carry_reason_and_fields(journal: Journal) -> None:
    journal.add_files([entry(1, state=F.DISCOVERED), entry(2)])
    h1, h2 = sha(1), sha(2)
    journal.set_file_state(h1, F.IMPORTED, spool_path="/spool/1.jpg")
    journal.set_file_state(h1, F.WAITING_FOR_POSITION, reason="no GPS yet")
    row = journal.get_file(h1)
    assert row is not None and (row.state, row.reason) == (F.WAITING_FOR_POSITION, "no GPS yet")
    journal.set_file_state(h1, F.DESCRIBED, metadata={"lat": 48.1, "lon": 11.5})
    journal.set_file_state(h1, F.DESCRIBED, metadata={"heading": 90.0})  # merged, state kept
    row = journal.get_file(h1)
    assert row is not None
    assert (row.state, row.reason, row.spool_path) == (F.DESCRIBED, None, "/spool/1.jpg")
    assert row.metadata == {"lat": 48.1, "lon": 11.5, "heading": 90.0}
    journal.set_file_state(h2, F.REJECTED, reason="no capture time")
    journal.set_file_state(h2, F.IMPORTED)  # a user retry
    [imported], _ = journal.files_of_root_page("/media/card", [F.IMPORTED])
    [described], _ = journal.files_of_root_page("/media/card", [F.DESCRIBED], limit=1)
    assert (imported.hash, described.hash) == (h2, h1)


@pytest.mark.parametrize(
    ("path_to", "bad"),
    [
        ([], F.SEQUENCED),
        ([], F.FINISHED),
        ([F.DESCRIBED], F.UPLOADED),
        ([F.REJECTED], F.DESCRIBED),
        ([F.DESCRIBED, F.DUPLICATE], F.SEQUENCED),
    ],
)
def test_illegal_transitions_raise_and_change_nothing(
    journal: Journal, path_to: list[FileState], bad: FileState
) -> None:
    journal.add_file(entry(1))
    advance(journal, sha(1), *path_to)
    before = journal.get_file(sha(1))
    with pytest.raises(IllegalTransition):
        journal.set_file_state(sha(1), bad)
    assert journal.get_file(sha(1)) == before


def test_bad_state_changes_are_refused(journal: Journal) -> None:
    journal.add_file(entry(1))
    with pytest.raises(ValueError, match="needs a reason"):
        journal.set_file_state(sha(1), F.REJECTED)
    with pytest.raises(ValueError, match="cannot set"):
        journal.set_file_state(sha(1), F.DESCRIBED, sequence_id="x")
    with pytest.raises(NotFound):
        journal.set_file_state(sha(404), F.DESCRIBED)
    with pytest.raises(IllegalTransition):
        journal.add_file(entry(2, state=F.DESCRIBED))
    assert journal.get_file(sha(1)).state == F.IMPORTED  # type: ignore[union-attr]


def test_a_batch_with_one_bad_change_leaves_nothing(journal: Journal) -> None:
    journal.add_files([entry(n) for n in range(5)])
    changes = [StateChange(sha(n), F.DESCRIBED) for n in range(4)]
    changes.append(StateChange(sha(4), F.FINISHED))
    with pytest.raises(IllegalTransition):
        journal.set_file_states(changes)
    assert journal.count_by_state()[F.IMPORTED] == 5
    with pytest.raises(IllegalTransition):
        journal.add_files([entry(10), entry(11), entry(12, state=F.UPLOADED)])
    assert journal.get_file(sha(10)) is None and journal.lookup_path(entry(10).path) is None


def test_a_transaction_is_all_or_nothing_and_nests(journal: Journal) -> None:
    journal.add_file(entry(1))
    with pytest.raises(RuntimeError), journal.transaction():
        journal.add_files([entry(2), entry(3)])
        journal.set_file_state(sha(1), F.DESCRIBED)
        journal.set_meta("cursor", 3)
        raise RuntimeError("power cut")
    assert journal.get_file(sha(2)) is None
    assert journal.get_file(sha(1)).state == F.IMPORTED  # type: ignore[union-attr]
    assert journal.get_meta("cursor", "unset") == "unset"
    with journal.transaction():
        journal.add_file(entry(2))
        with pytest.raises(IllegalTransition), journal.transaction():
            journal.add_file(entry(3))
            journal.set_file_state(sha(2), F.FINISHED)
        journal.set_file_state(sha(2), F.DESCRIBED)
    assert journal.get_file(sha(3)) is None  # only the inner block was undone
    assert journal.get_file(sha(2)).state == F.DESCRIBED  # type: ignore[union-attr]


# -- sequences and uploads ------------------------------------------------------------------------


def described(journal: Journal, ns: range) -> list[str]:
    journal.add_files([entry(n) for n in ns])
    journal.set_file_states([StateChange(sha(n), F.DESCRIBED) for n in ns])
    return [sha(n) for n in ns]


def test_a_sequence_goes_up_exactly_once(journal: Journal) -> None:
    hashes = described(journal, range(4))
    order = [hashes[2], hashes[0], hashes[3], hashes[1]]
    assert journal.create_sequence("seq-1", order, source_root="/media/card") is True
    assert journal.create_sequence("seq-1", order) is False  # a retry after a crash
    with pytest.raises(JournalError, match="other images"):
        journal.create_sequence("seq-1", order[:2])
    assert [f.hash for f in journal.sequence_images("seq-1")] == order
    assert all(f.state == F.SEQUENCED for f in journal.sequence_images("seq-1"))
    [seq] = journal.sequences_in_state(SequenceState.PENDING)
    assert (seq.uuid, seq.image_count, seq.source_root) == ("seq-1", 4, "/media/card")

    up = journal.upsert_upload(order[0], "mly_tools_aa.jpg", "aa", 5000)
    assert (up.file_hash, up.key, up.md5, up.size, up.handle) == (
        order[0],
        "mly_tools_aa.jpg",
        "aa",
        5000,
        None,
    )
    resumed = journal.upsert_upload(order[0], "mly_tools_aa.jpg", "aa", 5000)
    assert resumed == up  # the same key: a resume finds the recorded object

    with pytest.raises(IllegalTransition, match="4 image"):
        journal.set_sequence_finished("seq-1", "cluster-1")
    for i, h in enumerate(order):
        key = f"mly_tools_{i}.jpg"
        journal.upsert_upload(h, key, str(i), 100)
        journal.record_handle(h, key, f"handle-{i}")
        journal.record_handle(h, key, f"handle-{i}")  # same handle again: no-op
    with pytest.raises(JournalError, match="already has handle"):
        journal.record_handle(order[0], "mly_tools_0.jpg", "another")
    with pytest.raises(JournalError, match="already uploaded"):
        journal.upsert_upload(order[0], "mly_tools_new.jpg", "new", 100)
    assert all(f.state == F.UPLOADED for f in journal.sequence_images("seq-1"))
    assert journal.get_file(order[1]).handle == "handle-1"  # type: ignore[union-attr]
    assert journal.upsert_upload(order[1], "mly_tools_1.jpg", "1", 100).handle == "handle-1"

    journal.record_manifest("seq-1", "uuid_ff.json")
    journal.record_manifest("seq-1", "uuid_ff.json", "manifest-handle")
    assert journal.set_sequence_finished("seq-1", "cluster-1") is True
    assert journal.set_sequence_finished("seq-1", "cluster-1") is False
    with pytest.raises(JournalError, match="already finished as cluster cluster-1"):
        journal.set_sequence_finished("seq-1", "cluster-2")
    seq = journal.get_sequence("seq-1")
    assert seq is not None
    assert (seq.state, seq.cluster_id, seq.manifest_key, seq.manifest_handle) == (
        SequenceState.FINISHED,
        "cluster-1",
        "uuid_ff.json",
        "manifest-handle",
    )
    assert journal.count_by_state()[F.FINISHED] == 4


def test_a_new_key_restarts_an_upload_that_has_no_handle(journal: Journal) -> None:
    [h] = described(journal, range(1))
    journal.create_sequence("s", [h])
    journal.upsert_upload(h, "mly_tools_a.jpg", "a", 10)
    new = journal.upsert_upload(h, "mly_tools_b.jpg", "b", 12)
    assert (new.key, new.md5, new.size, new.handle) == ("mly_tools_b.jpg", "b", 12, None)
    with pytest.raises(NotFound):  # the old key is gone
        journal.record_handle(h, "mly_tools_a.jpg", "handle-a")


def test_a_sequence_needs_described_images(journal: Journal) -> None:
    hashes = described(journal, range(2))
    journal.add_file(entry(99))
    with pytest.raises(IllegalTransition):
        journal.create_sequence("s", [hashes[0], sha(99)])
    assert journal.get_sequence("s") is None
    assert journal.get_file(hashes[0]).state == F.DESCRIBED  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        journal.create_sequence("s", [sha(404)])


def test_a_failed_sequence_can_be_retried(journal: Journal) -> None:
    hashes = described(journal, range(2))
    journal.create_sequence("s", hashes)
    with pytest.raises(ValueError):
        journal.set_sequence_state("s", SequenceState.FAILED)
    journal.set_sequence_state("s", SequenceState.FAILED, reason="finish_upload refused: 400")
    assert journal.get_sequence("s").reason == "finish_upload refused: 400"  # type: ignore[union-attr]
    with pytest.raises(IllegalTransition):
        journal.set_sequence_finished("s", "c")
    journal.set_sequence_state("s", SequenceState.PENDING)
    assert [s.uuid for s in journal.sequences_in_state(SequenceState.PENDING)] == ["s"]


# -- status ---------------------------------------------------------------------------------------


def test_summary_counts_bytes_errors_and_sources(journal: Journal) -> None:
    journal.add_files([entry(n) for n in range(3)])
    journal.add_files([entry(n, root="/home/me/in", source_kind="watch") for n in range(3, 8)])
    hashes = [sha(n) for n in range(8)]
    journal.set_file_state(hashes[0], F.REJECTED, reason="no capture time")
    journal.set_file_states([StateChange(h, F.DESCRIBED) for h in hashes[3:7]])
    journal.create_sequence("s", hashes[3:6])
    journal.upsert_upload(hashes[3], "mly_tools_3.jpg", "3", 5000)
    journal.set_file_state(hashes[6], F.DUPLICATE)
    journal.set_file_state(hashes[1], F.REJECTED, reason="truncated JPEG")

    s = journal.summary()
    json.dumps(s)
    assert s["images"] == {
        **{str(st): 0 for st in FileState},
        "imported": 2,
        "rejected": 2,
        "sequenced": 3,
        "duplicate": 1,
    }
    assert s["sequences"] == {"pending": 1, "finished": 0, "failed": 0}
    # the tagged bytes of the started upload, the whole file for the two others
    assert s["bytes_to_upload"] == 5000 + entry(4).size + entry(5).size
    assert [(e["path"], e["reason"]) for e in s["recent_errors"]] == [
        ("/media/card/DCIM/IMG_1.JPG", "truncated JPEG"),
        ("/media/card/DCIM/IMG_0.JPG", "no capture time"),
    ]
    assert s["sources"] == {
        "/home/me/in": {"kind": "watch", "images": {"sequenced": 3, "duplicate": 1, "imported": 1}},
        "/media/card": {"kind": "card", "images": {"rejected": 2, "imported": 1}},
    }
    assert len(journal.summary(errors=1)["recent_errors"]) == 1


def test_events_are_a_bounded_ring(journal: Journal) -> None:
    with journal.transaction():
        for i in range(EVENTS_KEPT + 50):
            journal.record_event("error" if i % 2 else "info", f"event {i}", sha(i))
    last = journal.recent_events(3)
    assert [e.message for e in last] == [f"event {EVENTS_KEPT + 50 - k}" for k in (1, 2, 3)]
    assert last[0].kind == "error" and last[0].file_hash == sha(EVENTS_KEPT + 49)
    assert len(journal.recent_events(10_000)) == EVENTS_KEPT


def test_meta_values_round_trip(journal: Journal) -> None:
    assert journal.get_meta("upload_rate") is None
    journal.set_meta("upload_rate", {"bytes_per_s": 1.5e6, "at": 12})
    journal.set_meta("upload_rate", {"bytes_per_s": 2.0e6, "at": 13})
    assert journal.get_meta("upload_rate") == {"bytes_per_s": 2.0e6, "at": 13}


# -- processes ------------------------------------------------------------------------------------

OPEN_WRITER = """
import sys
from daemon.journal import Journal, JournalError
try:
    Journal.open(sys.argv[1], busy_timeout=0.5)
except JournalError as exc:
    print(exc)
    sys.exit(3)
print("opened")
"""


def test_a_second_writer_process_is_refused(path: Path, journal: Journal) -> None:
    code, out, err = run_python(OPEN_WRITER, str(path))
    assert code == 3, err
    assert f"journal {path} is locked by another process (pid {os.getpid()})" in out
    journal.close()
    code, out, err = run_python(OPEN_WRITER, str(path))
    assert (code, out.strip()) == (0, "opened"), err


HOLD_SQLITE_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO settings VALUES ('intruder', '1')")
print("held", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""


def test_a_sqlite_lock_held_elsewhere_gives_a_clear_error(path: Path) -> None:
    with Journal.open(path, busy_timeout=0.3) as j:
        proc = python(HOLD_SQLITE_LOCK, str(path), stdin=subprocess.PIPE)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
            with pytest.raises(JournalError, match="locked by another process") as info:
                j.set_meta("k", 1)
            assert str(path) in str(info.value)
        finally:
            proc.communicate("\n", timeout=10)
        j.set_meta("k", 2)
        assert j.get_meta("k") == 2 and j.get_meta("intruder") is None


READ_COUNTS = """
import json, sys
from daemon.journal import Journal
with Journal.open_readonly(sys.argv[1]) as j:
    print(json.dumps({"counts": j.count_by_state(), "summary": j.summary()}))
"""


def read_in_other_process(path: Path) -> dict[str, object]:
    code, out, err = run_python(READ_COUNTS, str(path), timeout=20)
    assert code == 0, err
    return json.loads(out)


def test_a_reader_process_reads_while_the_writer_holds_a_transaction(
    path: Path, journal: Journal
) -> None:
    journal.add_files([entry(n) for n in range(3)])
    with journal.transaction():
        journal.add_files([entry(n) for n in range(3, 8)])
        journal.set_file_state(sha(0), F.REJECTED, reason="bad")
        started = time.monotonic()
        seen = read_in_other_process(path)
        assert time.monotonic() - started < 15
        assert seen["counts"]["imported"] == 3  # type: ignore[index]
        assert seen["summary"]["recent_errors"] == []  # type: ignore[index]
    after = read_in_other_process(path)
    assert after["counts"]["imported"] == 7 and after["counts"]["rejected"] == 1  # type: ignore[index]
    journal.close()
    # and with no writer at all (the WAL files are gone once the last writer closed)
    assert read_in_other_process(path)["counts"]["imported"] == 7  # type: ignore[index]


def test_a_reader_cannot_write(path: Path, journal: Journal) -> None:
    journal.add_file(entry(1))
    with Journal.open_readonly(path) as reader:
        assert reader.get_file(sha(1)) is not None
        with pytest.raises(JournalError, match="read-only"):
            reader.set_file_state(sha(1), F.DESCRIBED)
        with pytest.raises(JournalError, match="read-only"):
            reader.add_file(entry(2))
    assert journal.get_file(sha(1)).state == F.IMPORTED  # type: ignore[union-attr]


def test_an_old_journal_is_not_read_before_the_daemon_upgrades_it(path: Path) -> None:
    make_v1(path)
    with pytest.raises(JournalError, match="upgrade it"):
        Journal.open_readonly(path)


def test_a_full_disk_rolls_back_the_batch(path: Path) -> None:
    batch = 20
    with Journal.open(path, max_bytes=96 * 1024) as j:
        done = 0
        with pytest.raises(JournalError, match="disk full") as info:
            for b in range(500):
                j.add_files([entry(f"{b}-{i}", metadata={"pad": "x" * 200}) for i in range(batch)])
                done = b + 1
        assert str(path) in str(info.value)
        assert 0 < done < 500
        failed = [sha(f"{done}-{i}") for i in range(batch)]
        assert all(j.get_file(h) is None for h in failed)
        assert sum(j.count_by_state().values()) == done * batch
        assert j.integrity_check() == []
    with Journal.open(path) as j:  # room again: the same batch goes in whole
        assert sum(j.count_by_state().values()) == done * batch
        j.add_files([entry(f"{done}-{i}") for i in range(batch)])
        assert all(j.get_file(h) is not None for h in failed)


BATCH_WRITER = """
import hashlib, sys
from daemon.journal import Journal, NewFile, FileState, StateChange
path, size = sys.argv[1], int(sys.argv[2])
j = Journal.open(path)
b = j.get_meta("next_batch", 0)
while True:
    hashes = [hashlib.sha256(f"{b}/{i}".encode()).hexdigest() for i in range(size)]
    with j.transaction():
        j.add_files([
            NewFile(h, f"/card/{b}/{i}.jpg", "card", "/card", 10_000, 1.0, metadata={"batch": b})
            for i, h in enumerate(hashes)
        ])
        j.set_file_states([StateChange(h, FileState.DESCRIBED) for h in hashes])
        j.record_event("info", f"batch {b}")
        j.set_meta("next_batch", b + 1)
    print(b, flush=True)
    b += 1
"""


def test_kill_9_mid_batch_never_leaves_half_a_batch(path: Path) -> None:
    size = 40
    rng = random.Random(1234)
    last_printed = -1
    for _round in range(8):
        proc = python(BATCH_WRITER, str(path), str(size))
        assert proc.stdout is not None
        target = rng.randint(2, 12)
        for _ in range(target):
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            last_printed = int(line)
        time.sleep(rng.uniform(0, 0.02))  # land somewhere inside the next batch
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()  # type: ignore[union-attr]
        with Journal.open(path) as j:  # what the restarted daemon does
            assert j.integrity_check() == []
            next_batch = j.get_meta("next_batch")
            assert next_batch >= last_printed + 1  # every acknowledged batch is there
            assert j.recent_events(1)[0].message == f"batch {next_batch - 1}"
        raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        per_batch: dict[int, int] = {}
        for metadata, state in raw.execute("SELECT metadata, state FROM files"):
            assert state == "described"
            b = json.loads(metadata)["batch"]
            per_batch[b] = per_batch.get(b, 0) + 1
        raw.close()
        assert per_batch == dict.fromkeys(range(next_batch), size)


# -- asyncio --------------------------------------------------------------------------------------


async def test_async_journal_runs_on_one_thread_without_blocking_the_loop(path: Path) -> None:
    aj = await AsyncJournal.open(path)
    try:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        results = await asyncio.gather(*(aj.add_file(entry(n)) for n in range(30)))
        stop.set()
        await task
        assert results == [True] * 30
        assert ticks > 1  # the loop kept running while the journal committed
        threads = {await aj.run(lambda _j: threading.get_ident()) for _ in range(5)}
        assert len(threads) == 1 and threading.get_ident() not in threads

        def describe_all(j: Journal) -> int:
            with j.transaction():
                for f in j.files_of_root_page("/media/card", [F.IMPORTED])[0]:
                    j.set_file_state(f.hash, F.DESCRIBED)
            return j.count_by_state()[F.DESCRIBED]

        assert await aj.run(describe_all) == 30
        assert (await aj.summary())["images"]["described"] == 30
        with pytest.raises(IllegalTransition):
            await aj.set_file_state(sha(0), F.FINISHED)
        with pytest.raises(AttributeError):
            aj.close  # noqa: B018 - only the journal's data methods are offered
    finally:
        await aj.aclose()
    with Journal.open_readonly(path) as reader:
        assert reader.count_by_state()[F.DESCRIBED] == 30


def test_async_journal_methods_are_the_journals_with_the_same_signatures() -> None:
    offered = [
        name
        for name, fn in inspect.getmembers(AsyncJournal, inspect.iscoroutinefunction)
        if not name.startswith("_") and name not in ("open", "run", "aclose")
    ]
    assert len(offered) > 20
    for name in offered:
        ours = inspect.signature(getattr(AsyncJournal, name))
        theirs = inspect.signature(getattr(Journal, name))
        assert [(p.name, p.kind, p.default, p.annotation) for p in ours.parameters.values()] == [
            (p.name, p.kind, p.default, p.annotation) for p in theirs.parameters.values()
        ], name
        assert ours.return_annotation == theirs.return_annotation, name
