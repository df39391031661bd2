"""The journal: one SQLite file, the single source of truth of the daemon and the upload command.

It records every file seen (identity = SHA-256 of its content), the paths it was seen at, its
state and reason, the sequences cut from those files, and each upload object with every figure
needed to resume after a crash or a power cut. On start the daemon resumes from the journal alone.

Durability: WAL with ``synchronous=FULL``; every state change is one transaction, made by the
caller after the work it records is durable. Each commit costs an fsync (slow on an SD card), so
the batch methods (``add_files``, ``set_file_states``) and ``transaction()`` group many changes
into one commit; an exception inside a batch leaves nothing of it behind.

Concurrency: one writer per journal, enforced with an exclusive ``flock`` on ``<path>.lock`` (a
second daemon gets a clear error) and SQLite's own locks with a busy timeout. ``Journal`` is
synchronous and thread-safe (one connection behind a lock); ``AsyncJournal`` runs the same calls
on one dedicated thread so the event loop never blocks. Readers (``status``) use
``Journal.open_readonly``, which works while a writer is busy.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from daemon.core.config import JOURNAL_FILE, state_dir
from daemon.core.durable import fsync_dir

try:
    import fcntl
except ImportError:  # not on Windows, which we do not target; SQLite's own locks still apply
    fcntl = None  # type: ignore[assignment]

T = TypeVar("T")

SQLITE_HEADER = b"SQLite format 3\x00"
DEFAULT_BUSY_TIMEOUT = 5.0
EVENTS_KEPT = 200
RECENT_ERRORS = 20


class JournalError(Exception):
    """The journal cannot do what was asked; ``str(exc)`` is one line naming the file."""


class IllegalTransition(JournalError, ValueError):
    """A state change the state machine does not allow (a bug in the caller, not in the data)."""


class NotFound(JournalError, LookupError):
    """No file, sequence or upload with that key."""


class FileState(StrEnum):
    """Where an image is on its way; stored as the string value."""

    DISCOVERED = "discovered"
    IMPORTED = "imported"
    DESCRIBED = "described"
    WAITING_FOR_POSITION = "waiting_for_position"
    REJECTED = "rejected"
    SEQUENCED = "sequenced"
    DUPLICATE = "duplicate"
    UPLOADED = "uploaded"
    FINISHED = "finished"
    FAILED = "failed"


class SequenceState(StrEnum):
    """A sequence is pending until its cluster id is recorded; failed keeps it for a user retry."""

    PENDING = "pending"
    FINISHED = "finished"
    FAILED = "failed"


_F = FileState
# Forward moves of the flow, plus the ways back a user retry takes (rejected, failed, duplicate
# and waiting images can be processed again from `imported`; a failed image can be re-queued).
# A sequenced image that can no longer be read as it was hashed is rejected: its sequence goes up
# without it.
TRANSITIONS: dict[FileState, frozenset[FileState]] = {
    _F.DISCOVERED: frozenset({_F.IMPORTED, _F.REJECTED}),
    _F.IMPORTED: frozenset({_F.DESCRIBED, _F.WAITING_FOR_POSITION, _F.REJECTED}),
    _F.WAITING_FOR_POSITION: frozenset({_F.DESCRIBED, _F.REJECTED, _F.IMPORTED}),
    _F.DESCRIBED: frozenset({_F.SEQUENCED, _F.DUPLICATE, _F.REJECTED, _F.IMPORTED}),
    _F.REJECTED: frozenset({_F.IMPORTED}),
    _F.DUPLICATE: frozenset({_F.IMPORTED}),
    _F.SEQUENCED: frozenset({_F.UPLOADED, _F.FAILED, _F.REJECTED}),
    _F.UPLOADED: frozenset({_F.FINISHED, _F.FAILED}),
    _F.FINISHED: frozenset(),
    _F.FAILED: frozenset({_F.SEQUENCED, _F.IMPORTED}),
}
NEEDS_REASON = frozenset({_F.REJECTED, _F.FAILED})
SEQUENCE_TRANSITIONS: dict[SequenceState, frozenset[SequenceState]] = {
    SequenceState.PENDING: frozenset({SequenceState.FINISHED, SequenceState.FAILED}),
    SequenceState.FAILED: frozenset({SequenceState.PENDING}),
    SequenceState.FINISHED: frozenset(),
}
_SETTABLE_FIELDS = frozenset({"spool_path", "handle", "metadata"})


def check_transition(old: FileState, new: FileState) -> None:
    """Raise IllegalTransition unless ``old → new`` is allowed (staying put always is).

    >>> check_transition(FileState.IMPORTED, FileState.DESCRIBED)
    >>> check_transition(FileState.FINISHED, FileState.IMPORTED)
    Traceback (most recent call last):
    ...
    daemon.journal.IllegalTransition: illegal state change finished → imported
    """
    if old != new and new not in TRANSITIONS[old]:
        raise IllegalTransition(f"illegal state change {old} → {new}")


# -- schema ---------------------------------------------------------------------------------------

# One entry per schema version: MIGRATIONS[i] upgrades a journal from version i to i + 1. Never
# edit a released step; append a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE sequences (
            uuid TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            reason TEXT,
            source_root TEXT,
            cluster_id TEXT,
            manifest_key TEXT,
            manifest_handle TEXT,
            created_at REAL NOT NULL,
            finished_at REAL
        )""",
        """CREATE TABLE files (
            hash TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            reason TEXT,
            source_kind TEXT NOT NULL,
            source_root TEXT NOT NULL,
            spool_path TEXT,
            size INTEGER NOT NULL,
            mtime REAL NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}',
            sequence_id TEXT REFERENCES sequences(uuid),
            seq_index INTEGER,
            handle TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )""",
        "CREATE INDEX files_state ON files(state, updated_at)",
        "CREATE INDEX files_sequence ON files(sequence_id, seq_index)",
        """CREATE TABLE file_paths (
            hash TEXT NOT NULL REFERENCES files(hash),
            path TEXT NOT NULL,
            source_kind TEXT NOT NULL,
            source_root TEXT NOT NULL,
            size INTEGER NOT NULL,
            mtime REAL NOT NULL,
            seen_at REAL NOT NULL,
            PRIMARY KEY (hash, path)
        )""",
        "CREATE INDEX file_paths_path ON file_paths(path, seen_at)",
        """CREATE TABLE uploads (
            file_hash TEXT PRIMARY KEY REFERENCES files(hash),
            key TEXT NOT NULL UNIQUE,
            md5 TEXT NOT NULL,
            size INTEGER NOT NULL,
            bytes_confirmed INTEGER NOT NULL DEFAULT 0,
            handle TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            updated_at REAL NOT NULL
        )""",
    ),
    (
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            kind TEXT NOT NULL,
            message TEXT NOT NULL,
            file_hash TEXT
        )""",
        "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ),
    # Upload progress and error counts were planned but never written: nothing resumes from them
    # (the server's offset is asked instead). DROP COLUMN needs SQLite 3.35 or newer.
    (
        "ALTER TABLE uploads DROP COLUMN bytes_confirmed",
        "ALTER TABLE uploads DROP COLUMN attempts",
        "ALTER TABLE uploads DROP COLUMN last_error",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def default_journal_path() -> Path:
    """Where the journal lives unless configured otherwise."""
    return state_dir() / JOURNAL_FILE


GPX_META = "gpx_files"  # the GPX files the daemon knows: {content hash: path}
ASIDE_META = "set_aside_files"  # files set aside at intake: {path: reason}
RUNTIME_META = "daemon_runtime"  # the running daemon's own state, for `status` (meta table)

# -- records --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewFile:
    """A file to record. ``path`` is where it was seen; ``spool_path`` the copy we own, if any.

    ``source_kind`` is "card", "watch" or "cli"; ``source_root`` the watch folder or card mount.
    ``metadata`` must be JSON-serialisable (capture time as an ISO string, lat, lon, ...).
    """

    hash: str
    path: str | os.PathLike[str]
    source_kind: str
    source_root: str | os.PathLike[str]
    size: int
    mtime: float
    spool_path: str | os.PathLike[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    state: FileState = FileState.IMPORTED


@dataclass(frozen=True)
class FileRow:
    """A file as recorded. ``paths`` lists every path it was seen at, oldest first."""

    hash: str
    state: FileState
    reason: str | None
    source_kind: str
    source_root: str
    spool_path: str | None
    size: int
    mtime: float
    metadata: dict[str, Any]
    sequence_id: str | None
    seq_index: int | None
    handle: str | None
    created_at: float
    updated_at: float
    paths: tuple[str, ...]

    @property
    def readable_path(self) -> str:
        """Where to read its bytes: our spool copy if there is one, else where it was seen."""
        return self.spool_path or self.paths[0]


@dataclass(frozen=True)
class StateChange:
    """One entry of ``set_file_states``; ``fields`` as in ``set_file_state``."""

    hash: str
    state: FileState
    reason: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SequenceRow:
    uuid: str
    state: SequenceState
    reason: str | None
    source_root: str | None
    cluster_id: str | None
    manifest_key: str | None
    manifest_handle: str | None
    created_at: float
    finished_at: float | None
    image_count: int


@dataclass(frozen=True)
class UploadRow:
    """One upload object: ``key`` is the session key ``mly_tools_<md5>.jpg``; ``handle`` is set
    once the server holds all of it."""

    file_hash: str
    key: str
    md5: str
    size: int
    handle: str | None
    updated_at: float


@dataclass(frozen=True)
class Event:
    id: int
    at: float
    kind: str
    message: str
    file_hash: str | None


# -- helpers --------------------------------------------------------------------------------------


def _path_value(path: str | os.PathLike[str] | None) -> str | bytes | None:
    """A path as SQLite can store it: text, or raw bytes for names that are not valid UTF-8."""
    if path is None:
        return None
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text)
    return text


def _path_text(value: str | bytes | None) -> str | None:
    return os.fsdecode(value) if isinstance(value, bytes) else value


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


_FILE_COLUMNS = (
    "f.hash, f.state, f.reason, f.source_kind, f.source_root, f.spool_path, f.size, f.mtime, "
    "f.metadata, f.sequence_id, f.seq_index, f.handle, f.created_at, f.updated_at"
)
_FILE_SELECT = f"SELECT {_FILE_COLUMNS} FROM files f"
_SEQUENCE_SELECT = (
    "SELECT s.uuid, s.state, s.reason, s.source_root, s.cluster_id, s.manifest_key, "
    "s.manifest_handle, s.created_at, s.finished_at, "
    "(SELECT count(*) FROM files WHERE sequence_id = s.uuid) FROM sequences s"
)
_UPLOAD_COLUMNS = "u.file_hash, u.key, u.md5, u.size, u.handle, u.updated_at"


def _sequence_row(row: Sequence[Any]) -> SequenceRow:
    return SequenceRow(
        row[0], SequenceState(row[1]), row[2], _path_text(row[3]), *row[4:9], image_count=row[9]
    )


class _WriterLock:
    """An exclusive flock on ``<journal>.lock`` held for the writer's lifetime.

    The lock file is never deleted (deleting it would let two processes lock two different files);
    it holds the owner's pid so the error can name it.
    """

    def __init__(self, journal_path: Path) -> None:
        self.path = journal_path.with_name(journal_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self, journal_path: Path, timeout: float) -> None:
        if fcntl is None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise JournalError(
                f"journal {journal_path}: cannot open lock file {self.path}: {exc.strerror}"
            ) from exc
        # Wait a little, like SQLite's busy timeout: a restarted daemon's predecessor may still
        # be exiting.
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
                os.close(fd)
                raise JournalError(
                    f"journal {journal_path} is locked by another process (pid {owner})"
                ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


# -- the journal ----------------------------------------------------------------------------------


class Journal:
    """The synchronous journal. Open with ``Journal.open(path)`` (the one writer) or
    ``Journal.open_readonly(path)`` (any number of readers); close with ``close()`` or ``with``.

    Every public method is thread-safe; each write is its own transaction unless it runs inside
    ``with journal.transaction():``, which makes everything inside one commit.
    """

    def __init__(
        self, path: Path, conn: sqlite3.Connection, lock: _WriterLock | None, readonly: bool
    ) -> None:
        self.path = path
        self.readonly = readonly
        self._conn = conn
        self._writer_lock = lock
        self._lock = threading.RLock()
        self._depth = 0

    # -- opening and closing ----------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        max_bytes: int | None = None,
    ) -> Journal:
        """Open (creating or upgrading) the journal at ``path`` (default: ``default_journal_path()``)
        as its one writer.

        ``max_bytes`` caps the database size (a full disk is then reported before the real one
        fills). Raises JournalError when another process holds the journal, when the file is not a
        journal (it is left untouched) or when it was written by a newer version of this program.
        """
        path = Path(path) if path is not None else default_journal_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(f"journal {path}: cannot create its folder: {exc}") from exc
        lock = _WriterLock(path)
        lock.acquire(path, busy_timeout)
        try:
            is_new = _check_header(path)
            conn = _connect(path, str(path), uri=False, busy_timeout=busy_timeout)
            journal = cls(path, conn, lock, readonly=False)
            try:
                journal._setup_writer(max_bytes)
            except BaseException:
                conn.close()
                raise
        except BaseException:
            lock.release()
            raise
        if is_new:
            fsync_dir(path.parent)  # the new file's directory entry must survive a power cut
        return journal

    @classmethod
    def open_readonly(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
    ) -> Journal:
        """Open the journal for reading only, e.g. for ``status`` while the daemon runs.

        Write methods then raise JournalError. The journal must exist and be of this version.
        """
        path = Path(path) if path is not None else default_journal_path()
        if not path.exists():
            raise JournalError(f"no journal at {path}")
        _check_header(path)
        uri = f"file:{quote(str(path.resolve()))}?mode=ro"
        conn = _connect(path, uri, uri=True, busy_timeout=busy_timeout)
        journal = cls(path, conn, None, readonly=True)
        try:
            with journal._guard():
                version = conn.execute("PRAGMA user_version").fetchone()[0]
            journal._check_version(version)
            if version < SCHEMA_VERSION:
                raise JournalError(
                    f"journal {path} has schema version {version}; start the daemon once to "
                    f"upgrade it to {SCHEMA_VERSION}"
                )
        except BaseException:
            conn.close()
            raise
        return journal

    def close(self) -> None:
        """Close the connection and release the writer lock. Safe to call twice."""
        with self._lock:
            try:
                self._conn.close()
            finally:
                if self._writer_lock is not None:
                    self._writer_lock.release()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _setup_writer(self, max_bytes: int | None) -> None:
        with self._guard():
            # Check the version before anything writes: switching to WAL rewrites the header.
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            self._check_version(version)
            if version == 0 and self._conn.execute("SELECT 1 FROM sqlite_master").fetchone():
                raise JournalError(
                    f"{self.path} is a SQLite database but not a journal; it was left untouched"
                )
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise JournalError(f"journal {self.path}: cannot use WAL mode (got {mode})")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            if max_bytes is not None:
                page = self._conn.execute("PRAGMA page_size").fetchone()[0]
                self._conn.execute(f"PRAGMA max_page_count={max(1, max_bytes // page)}")
        self._migrate()

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"journal {self.path} has schema version {version}, newer than this program "
                f"knows ({SCHEMA_VERSION}): upgrade mapillary-daemon"
            )

    def _migrate(self) -> None:
        """Bring an older journal up to SCHEMA_VERSION in one transaction."""
        with self.transaction():
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            self._check_version(version)
            for step in MIGRATIONS[version:]:
                for statement in step:
                    self._conn.execute(statement)
            if version < SCHEMA_VERSION:
                self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # -- transactions and errors ------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Journal]:
        """Everything inside is one commit (one fsync); an exception rolls all of it back.

        Nests: an inner block is a savepoint, rolled back alone if it raises. The journal's lock is
        held for the whole block, so keep slow work (hashing, network) outside it.
        """
        with self._lock, self._guard():
            if self.readonly:
                raise JournalError(f"journal {self.path} is open read-only")
            if self._depth == 0:
                self._conn.execute("BEGIN IMMEDIATE")
            else:
                self._conn.execute(f"SAVEPOINT sp{self._depth}")
            self._depth += 1
            try:
                yield self
            except BaseException:
                self._depth -= 1
                self._rollback()
                raise
            self._depth -= 1
            self._commit()

    def _commit(self) -> None:
        try:
            if self._depth == 0:
                self._conn.execute("COMMIT")
            else:
                self._conn.execute(f"RELEASE sp{self._depth}")
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        if not self._conn.in_transaction:
            return  # SQLite already rolled back (it does on some errors, e.g. SQLITE_FULL)
        try:
            if self._depth == 0:
                self._conn.execute("ROLLBACK")
            else:
                self._conn.execute(f"ROLLBACK TO sp{self._depth}")
                self._conn.execute(f"RELEASE sp{self._depth}")
        except sqlite3.Error:
            if self._depth == 0 and self._conn.in_transaction:
                raise

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn SQLite's errors into one-line JournalErrors naming the file."""
        try:
            yield
        except sqlite3.Error as exc:
            raise _translate(self.path, exc) from exc

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock, self._guard():
            return self._conn.execute(sql, params).fetchall()

    # -- files ------------------------------------------------------------------------------------

    def add_file(self, entry: NewFile) -> bool:
        """Record a file seen at ``entry.path``. Returns True if its hash is new.

        A known hash is never a second file: the path is recorded as one more place it was seen
        (and a spool path filled in if it had none); its state is left as it is.
        """
        return self.add_files([entry])[0]

    def add_files(self, entries: Iterable[NewFile]) -> list[bool]:
        """``add_file`` for many files in one transaction; one bool per entry, in order."""
        now = time.time()
        added: list[bool] = []
        with self.transaction():
            for e in entries:
                if e.state not in (FileState.DISCOVERED, FileState.IMPORTED):
                    raise IllegalTransition(
                        f"a new file starts discovered or imported, not {e.state}"
                    )
                cur = self._conn.execute(
                    "INSERT INTO files (hash, state, source_kind, source_root, spool_path, size, "
                    "mtime, metadata, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT(hash) DO NOTHING",
                    (
                        e.hash,
                        str(e.state),
                        e.source_kind,
                        _path_value(e.source_root),
                        _path_value(e.spool_path),
                        e.size,
                        e.mtime,
                        _dump(e.metadata),
                        now,
                        now,
                    ),
                )
                is_new = cur.rowcount == 1
                if not is_new and e.spool_path is not None:
                    self._conn.execute(
                        "UPDATE files SET spool_path = ?, updated_at = ? "
                        "WHERE hash = ? AND spool_path IS NULL",
                        (_path_value(e.spool_path), now, e.hash),
                    )
                self._conn.execute(
                    "INSERT INTO file_paths (hash, path, source_kind, source_root, size, mtime, "
                    "seen_at) VALUES (?,?,?,?,?,?,?) ON CONFLICT(hash, path) DO UPDATE SET "
                    "source_kind = excluded.source_kind, source_root = excluded.source_root, "
                    "size = excluded.size, mtime = excluded.mtime, seen_at = excluded.seen_at",
                    (
                        e.hash,
                        _path_value(e.path),
                        e.source_kind,
                        _path_value(e.source_root),
                        e.size,
                        e.mtime,
                        now,
                    ),
                )
                added.append(is_new)
        return added

    def get_file(self, file_hash: str) -> FileRow | None:
        """The file with this content hash, or None."""
        rows = self._file_rows(f"{_FILE_SELECT} WHERE f.hash = ?", (file_hash,))
        return rows[0] if rows else None

    def lookup_path(self, path: str | os.PathLike[str]) -> tuple[str, int, float] | None:
        """``(hash, size, mtime)`` last recorded for a path, or None: a scan can skip re-hashing a
        file whose size and mtime have not changed."""
        rows = self._read(
            "SELECT hash, size, mtime FROM file_paths WHERE path = ? "
            "ORDER BY seen_at DESC, rowid DESC LIMIT 1",
            (_path_value(path),),
        )
        return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

    def roots_in_states(self, states: Iterable[FileState]) -> dict[str, int]:
        """How many files each source root has in ``states`` (a cheap look before loading)."""
        wanted = [str(FileState(s)) for s in states]
        marks = ",".join("?" * len(wanted))
        rows = self._read(
            f"SELECT source_root, count(*) FROM files WHERE state IN ({marks}) "
            "GROUP BY source_root",
            wanted,
        )
        return {_path_text(root): n for root, n in rows}

    def files_of_root_page(
        self, root: str, states: Iterable[FileState], after: int = 0, limit: int = 1000
    ) -> tuple[list[FileRow], int]:
        """At most ``limit`` files of one source root in ``states``, in the order they were
        recorded, starting after the position ``after`` (0: from the start); returns them and
        the position to continue from. A big root is read page by page, never all at once."""
        wanted = [str(FileState(s)) for s in states]
        marks = ",".join("?" * len(wanted))
        where = f"f.state IN ({marks}) AND f.source_root = ?"
        params = (*wanted, _path_value(root))
        last = self._read(
            f"SELECT max(rowid) FROM (SELECT f.rowid AS rowid FROM files f WHERE {where} "
            "AND f.rowid > ? ORDER BY f.rowid LIMIT ?)",
            (*params, after, limit),
        )[0][0]
        if last is None:
            return [], after
        rows = self._file_rows(
            f"{_FILE_SELECT} WHERE {where} AND f.rowid > ? AND f.rowid <= ? ORDER BY f.rowid",
            (*params, after, last),
        )
        return rows, last

    def oldest_of_root(self, root: str, states: Iterable[FileState]) -> float | None:
        """When the longest-known file of a source root in ``states`` was recorded, or None."""
        wanted = [str(FileState(s)) for s in states]
        marks = ",".join("?" * len(wanted))
        return self._read(
            f"SELECT min(created_at) FROM files WHERE state IN ({marks}) AND source_root = ?",
            (*wanted, _path_value(root)),
        )[0][0]

    def set_file_state(
        self, file_hash: str, state: FileState, reason: str | None = None, **fields: Any
    ) -> None:
        """Move a file to ``state`` with ``reason`` (required for rejected and failed; cleared
        otherwise unless given). ``fields`` may set ``spool_path``, ``handle`` and ``metadata``
        (merged into the recorded metadata). Raises IllegalTransition or NotFound."""
        self.set_file_states([StateChange(file_hash, state, reason, fields)])

    def set_file_states(self, changes: Iterable[StateChange]) -> None:
        """Many ``set_file_state`` calls in one transaction: all of them or (on error) none."""
        now = time.time()
        with self.transaction():
            for change in changes:
                self._set_state(change, now)

    def _set_state(self, change: StateChange, now: float) -> None:
        state = FileState(change.state)
        unknown = set(change.fields) - _SETTABLE_FIELDS
        if unknown:
            raise ValueError(f"cannot set file fields {sorted(unknown)}")
        if state in NEEDS_REASON and not change.reason:
            raise ValueError(f"a file set {state} needs a reason")
        row = self._conn.execute(
            "SELECT state, metadata FROM files WHERE hash = ?", (change.hash,)
        ).fetchone()
        if row is None:
            raise NotFound(f"journal {self.path}: no file {change.hash}")
        check_transition(FileState(row[0]), state)
        sets = ["state = ?", "reason = ?", "updated_at = ?"]
        params: list[Any] = [str(state), change.reason, now]
        for name, value in change.fields.items():
            if name == "metadata":
                value = _dump({**json.loads(row[1]), **value})
            elif name == "spool_path":
                value = _path_value(value)
            sets.append(f"{name} = ?")
            params.append(value)
        self._conn.execute(
            f"UPDATE files SET {', '.join(sets)} WHERE hash = ?", (*params, change.hash)
        )

    def count_by_state(self) -> dict[FileState, int]:
        """How many files are in each state (every state present, zeros included)."""
        counts = dict.fromkeys(FileState, 0)
        for state, n in self._read("SELECT state, count(*) FROM files GROUP BY state"):
            counts[FileState(state)] = n
        return counts

    def _file_rows(self, sql: str, params: Sequence[Any]) -> list[FileRow]:
        with self._lock, self._guard():
            rows = self._conn.execute(sql, params).fetchall()
            paths: dict[str, list[str]] = {}
            hashes = [r[0] for r in rows]
            for start in range(0, len(hashes), 500):  # stay under SQLite's bound-variable limit
                chunk = hashes[start : start + 500]
                for h, p in self._conn.execute(
                    "SELECT hash, path FROM file_paths WHERE hash IN "
                    f"({','.join('?' * len(chunk))}) ORDER BY seen_at, rowid",
                    chunk,
                ):
                    paths.setdefault(h, []).append(_path_text(p))
        return [
            FileRow(
                hash=r[0],
                state=FileState(r[1]),
                reason=r[2],
                source_kind=r[3],
                source_root=_path_text(r[4]),
                spool_path=_path_text(r[5]),
                size=r[6],
                mtime=r[7],
                metadata=json.loads(r[8]),
                sequence_id=r[9],
                seq_index=r[10],
                handle=r[11],
                created_at=r[12],
                updated_at=r[13],
                paths=tuple(paths.get(r[0], ())),
            )
            for r in rows
        ]

    # -- sequences --------------------------------------------------------------------------------

    def create_sequence(
        self,
        uuid: str,
        image_hashes: Sequence[str],
        *,
        source_root: str | os.PathLike[str] | None = None,
    ) -> bool:
        """Record a sequence of described images in capture order and set them sequenced, in
        one transaction. Returns False if this exact sequence already exists (a retry after a
        crash); a different one under the same uuid is an error."""
        if not image_hashes:
            raise ValueError("a sequence needs at least one image")
        now = time.time()
        with self.transaction():
            existing = self._conn.execute(
                "SELECT hash FROM files WHERE sequence_id = ? ORDER BY seq_index", (uuid,)
            ).fetchall()
            if self._conn.execute("SELECT 1 FROM sequences WHERE uuid = ?", (uuid,)).fetchone():
                if [r[0] for r in existing] == list(image_hashes):
                    return False
                raise JournalError(f"journal {self.path}: sequence {uuid} exists with other images")
            self._conn.execute(
                "INSERT INTO sequences (uuid, state, source_root, created_at) VALUES (?,?,?,?)",
                (uuid, str(SequenceState.PENDING), _path_value(source_root), now),
            )
            for index, file_hash in enumerate(image_hashes):
                row = self._conn.execute(
                    "SELECT state FROM files WHERE hash = ?", (file_hash,)
                ).fetchone()
                if row is None:
                    raise NotFound(f"journal {self.path}: no file {file_hash}")
                if row[0] != FileState.DESCRIBED:
                    raise IllegalTransition(
                        f"illegal state change {row[0]} → sequenced for {file_hash}"
                    )
                self._conn.execute(
                    "UPDATE files SET state = ?, reason = NULL, sequence_id = ?, seq_index = ?, "
                    "updated_at = ? WHERE hash = ?",
                    (str(FileState.SEQUENCED), uuid, index, now, file_hash),
                )
        return True

    def seen_at(self, hashes: Sequence[str]) -> dict[str, list[tuple[str, int, float]]]:
        """Every path each file was seen at, oldest first, with the size and mtime it had then:
        what to check before reading a file in place (it may have been edited since)."""
        out: dict[str, list[tuple[str, int, float]]] = {}
        with self._lock, self._guard():
            for start in range(0, len(hashes), 500):  # stay under SQLite's bound-variable limit
                chunk = list(hashes[start : start + 500])
                for h, p, size, mtime in self._conn.execute(
                    "SELECT hash, path, size, mtime FROM file_paths WHERE hash IN "
                    f"({','.join('?' * len(chunk))}) ORDER BY seen_at, rowid",
                    chunk,
                ):
                    out.setdefault(h, []).append((_path_text(p), size, mtime))
        return out

    def get_sequence(self, uuid: str) -> SequenceRow | None:
        """The sequence with this uuid, or None."""
        rows = self._read(f"{_SEQUENCE_SELECT} WHERE s.uuid = ?", (uuid,))
        return _sequence_row(rows[0]) if rows else None

    def sequences_in_state(self, state: SequenceState) -> list[SequenceRow]:
        """Sequences in ``state``, oldest first."""
        rows = self._read(
            f"{_SEQUENCE_SELECT} WHERE s.state = ? ORDER BY s.created_at, s.rowid",
            (str(SequenceState(state)),),
        )
        return [_sequence_row(r) for r in rows]

    def sequence_images(self, uuid: str) -> list[FileRow]:
        """The images of a sequence in capture order."""
        return self._file_rows(
            f"{_FILE_SELECT} WHERE f.sequence_id = ? ORDER BY f.seq_index", (uuid,)
        )

    def record_manifest(self, uuid: str, key: str, handle: str | None = None) -> None:
        """Record the manifest's session key (before uploading it, so a resume reuses the key)
        and, once uploaded, its handle."""
        with self.transaction():
            cur = self._conn.execute(
                "UPDATE sequences SET manifest_key = ?, manifest_handle = ? WHERE uuid = ?",
                (key, handle, uuid),
            )
            if cur.rowcount == 0:
                raise NotFound(f"journal {self.path}: no sequence {uuid}")

    def set_sequence_finished(self, uuid: str, cluster_id: str) -> bool:
        """Record the cluster id from ``finish_upload``: the sequence and its images are finished.

        Every image must be uploaded or rejected (set aside: left out of the manifest, it stays
        rejected). Returns False if it was already finished with this cluster id; a different
        cluster id raises JournalError (the sequence must never finish twice).
        """
        now = time.time()
        with self.transaction():
            row = self._conn.execute(
                "SELECT state, cluster_id FROM sequences WHERE uuid = ?", (uuid,)
            ).fetchone()
            if row is None:
                raise NotFound(f"journal {self.path}: no sequence {uuid}")
            if row[0] == SequenceState.FINISHED:
                if row[1] == cluster_id:
                    return False
                raise JournalError(
                    f"journal {self.path}: sequence {uuid} already finished as cluster {row[1]}, "
                    f"not {cluster_id}"
                )
            if row[0] != SequenceState.PENDING:
                raise IllegalTransition(f"illegal sequence state change {row[0]} → finished")
            waiting = self._conn.execute(
                "SELECT count(*) FROM files WHERE sequence_id = ? AND state NOT IN (?, ?)",
                (uuid, str(FileState.UPLOADED), str(FileState.REJECTED)),
            ).fetchone()[0]
            if waiting:
                raise IllegalTransition(
                    f"sequence {uuid} cannot finish: {waiting} image(s) not uploaded"
                )
            self._conn.execute(
                "UPDATE sequences SET state = ?, cluster_id = ?, reason = NULL, finished_at = ? "
                "WHERE uuid = ?",
                (str(SequenceState.FINISHED), cluster_id, now, uuid),
            )
            self._conn.execute(
                "UPDATE files SET state = ?, updated_at = ? WHERE sequence_id = ? AND state = ?",
                (str(FileState.FINISHED), now, uuid, str(FileState.UPLOADED)),
            )
        return True

    def set_sequence_state(
        self, uuid: str, state: SequenceState, reason: str | None = None
    ) -> None:
        """Mark a sequence failed (with a reason, e.g. finish_upload refused) or pending again for
        a retry. Use ``set_sequence_finished`` to finish one."""
        state = SequenceState(state)
        if state == SequenceState.FINISHED:
            raise IllegalTransition("use set_sequence_finished to finish a sequence")
        if state == SequenceState.FAILED and not reason:
            raise ValueError("a failed sequence needs a reason")
        with self.transaction():
            row = self._conn.execute(
                "SELECT state FROM sequences WHERE uuid = ?", (uuid,)
            ).fetchone()
            if row is None:
                raise NotFound(f"journal {self.path}: no sequence {uuid}")
            old = SequenceState(row[0])
            if old != state and state not in SEQUENCE_TRANSITIONS[old]:
                raise IllegalTransition(f"illegal sequence state change {old} → {state}")
            self._conn.execute(
                "UPDATE sequences SET state = ?, reason = ? WHERE uuid = ?",
                (str(state), reason, uuid),
            )

    # -- uploads ----------------------------------------------------------------------------------

    def upsert_upload(self, file_hash: str, key: str, md5: str, size: int) -> UploadRow:
        """Start (or find) the upload object of a file and return it.

        The same key returns the recorded object (a resume). A new key (the tagged bytes changed)
        replaces it, unless the file already has a handle: then JournalError, since an image is
        never sent twice once the server holds it.
        """
        with self.transaction():
            old = self._upload_where("u.file_hash = ?", file_hash)
            if old is not None and old.key == key:
                return old
            if old is not None and old.handle is not None:
                raise JournalError(
                    f"journal {self.path}: file {file_hash} was already uploaded as {old.key}"
                )
            self._conn.execute(
                "INSERT INTO uploads (file_hash, key, md5, size, updated_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT(file_hash) DO UPDATE SET key = excluded.key, md5 = excluded.md5, "
                "size = excluded.size, updated_at = excluded.updated_at",
                (file_hash, key, md5, size, time.time()),
            )
            new = self._upload_where("u.file_hash = ?", file_hash)
        assert new is not None
        return new

    def record_handle(self, file_hash: str, key: str, handle: str) -> None:
        """The server returned ``handle`` for ``key``: the upload is complete and the file is
        uploaded, in one transaction. Recording the same handle again is a no-op."""
        now = time.time()
        with self.transaction():
            upload = self._upload_where("u.key = ?", key)
            if upload is None or upload.file_hash != file_hash:
                raise NotFound(f"journal {self.path}: no upload {key} for file {file_hash}")
            if upload.handle is not None and upload.handle != handle:
                raise JournalError(
                    f"journal {self.path}: upload {key} already has handle {upload.handle}"
                )
            self._conn.execute(
                "UPDATE uploads SET handle = ?, updated_at = ? WHERE key = ?", (handle, now, key)
            )
            self._set_state(
                StateChange(file_hash, FileState.UPLOADED, None, {"handle": handle}), now
            )

    def _upload_where(self, where: str, value: str) -> UploadRow | None:
        row = self._conn.execute(
            f"SELECT {_UPLOAD_COLUMNS} FROM uploads u WHERE {where}", (value,)
        ).fetchone()
        return UploadRow(*row) if row else None

    # -- events, settings, status -----------------------------------------------------------------

    def record_event(self, kind: str, message: str, file_hash: str | None = None) -> None:
        """Append to the recent-activity ring (the last EVENTS_KEPT rows are kept)."""
        with self.transaction():
            cur = self._conn.execute(
                "INSERT INTO events (at, kind, message, file_hash) VALUES (?,?,?,?)",
                (time.time(), kind, message, file_hash),
            )
            self._conn.execute("DELETE FROM events WHERE id <= ?", (cur.lastrowid - EVENTS_KEPT,))

    def recent_events(self, n: int = 20) -> list[Event]:
        """The last ``n`` events, newest first."""
        rows = self._read(
            "SELECT id, at, kind, message, file_hash FROM events ORDER BY id DESC LIMIT ?", (n,)
        )
        return [Event(*r) for r in rows]

    def get_meta(self, key: str, default: Any = None) -> Any:
        """A value from the settings table (JSON-decoded), or ``default``."""
        rows = self._read("SELECT value FROM settings WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable value under ``key`` in the settings table."""
        with self.transaction():
            self._conn.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, _dump(value)),
            )

    def summary(self, errors: int = RECENT_ERRORS) -> dict[str, Any]:
        """Figures for ``status``, JSON-serialisable, read in one consistent snapshot.

        Keys: ``images`` (count per file state), ``sequences`` (count per sequence state),
        ``bytes_to_upload`` (what sequenced images of pending sequences still need to send:
        the tagged size of a started upload the server does not hold yet, else the file's size),
        ``failed_sequences`` (the last ``errors``
        failed sequences: uuid, reason, images), ``recent_errors`` (the last ``errors`` rejected
        or failed images: hash, path, state, reason, at), ``sources`` (per source root: kind and
        count per state).
        """
        with self._lock, self._guard():
            in_txn = self._conn.in_transaction
            if not in_txn:
                self._conn.execute("BEGIN")  # one read snapshot for all the figures
            try:
                return self._summary(errors)
            finally:
                if not in_txn:
                    self._conn.execute("COMMIT")

    def _summary(self, errors: int) -> dict[str, Any]:
        q = self._conn.execute
        images = {str(s): 0 for s in FileState}
        images.update(q("SELECT state, count(*) FROM files GROUP BY state").fetchall())
        sequences = {str(s): 0 for s in SequenceState}
        sequences.update(q("SELECT state, count(*) FROM sequences GROUP BY state").fetchall())
        # Only sequences still pending will send anything: a failed one waits for the user. A
        # started upload sends its tagged bytes, unless the server already holds them (a handle).
        left = q(
            "SELECT coalesce(sum(CASE WHEN u.file_hash IS NULL THEN f.size "
            "WHEN u.handle IS NULL THEN u.size ELSE 0 END), 0) FROM files f "
            "JOIN sequences s ON s.uuid = f.sequence_id "
            "LEFT JOIN uploads u ON u.file_hash = f.hash WHERE f.state = ? AND s.state = ?",
            (str(FileState.SEQUENCED), str(SequenceState.PENDING)),
        ).fetchone()[0]
        failed = [
            {"uuid": u, "reason": r, "images": n}
            for u, r, n in q(
                "SELECT s.uuid, s.reason, (SELECT count(*) FROM files WHERE sequence_id = s.uuid) "
                "FROM sequences s WHERE s.state = ? ORDER BY s.created_at DESC, s.rowid DESC "
                "LIMIT ?",
                (str(SequenceState.FAILED), errors),
            )
        ]
        recent = [
            {"hash": h, "path": _path_text(p), "state": s, "reason": r, "at": at}
            for h, s, r, at, p in q(
                "SELECT f.hash, f.state, f.reason, f.updated_at, (SELECT path FROM file_paths "
                "WHERE hash = f.hash ORDER BY seen_at DESC, rowid DESC LIMIT 1) FROM files f "
                "WHERE f.state IN (?, ?) ORDER BY f.updated_at DESC, f.rowid DESC LIMIT ?",
                (str(FileState.REJECTED), str(FileState.FAILED), errors),
            )
        ]
        sources: dict[str, dict[str, Any]] = {}
        for root, kind, state, n in q(
            "SELECT source_root, source_kind, state, count(*) FROM files "
            "GROUP BY source_root, source_kind, state ORDER BY source_root"
        ):
            entry = sources.setdefault(_path_text(root), {"kind": kind, "images": {}})
            entry["images"][state] = entry["images"].get(state, 0) + n
        return {
            "images": images,
            "sequences": sequences,
            "bytes_to_upload": left,
            "failed_sequences": failed,
            "recent_errors": recent,
            "sources": sources,
        }

    def integrity_check(self) -> list[str]:
        """SQLite's full integrity check: an empty list when the journal is sound, else problems."""
        rows = self._read("PRAGMA integrity_check")
        problems = [r[0] for r in rows]
        return [] if problems == ["ok"] else problems


# -- opening helpers ------------------------------------------------------------------------------


def _check_header(path: Path) -> bool:
    """Refuse a file that is not a SQLite database, before SQLite touches it. True if new/empty."""
    try:
        with path.open("rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return True
    except OSError as exc:
        raise JournalError(f"journal {path} cannot be read: {exc.strerror}") from exc
    if not head:
        return True
    if head != SQLITE_HEADER:
        raise JournalError(
            f"journal {path} is not a SQLite database (corrupt or another file); it was left "
            "untouched: move it away to start a new journal"
        )
    return False


def _connect(path: Path, target: str, *, uri: bool, busy_timeout: float) -> sqlite3.Connection:
    try:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so batches are exactly ours.
        conn = sqlite3.connect(
            target, timeout=busy_timeout, isolation_level=None, check_same_thread=False, uri=uri
        )
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        conn.execute("PRAGMA schema_version").fetchone()  # reads page 1: a bad file fails here
    except sqlite3.Error as exc:
        raise _translate(path, exc) from exc
    return conn


def _translate(path: Path, exc: sqlite3.Error) -> JournalError:
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(exc)
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in text:
        return JournalError(f"journal {path} is locked by another process ({text})")
    if primary == sqlite3.SQLITE_FULL or "disk is full" in text:
        return JournalError(f"journal {path}: disk full, the change was not recorded ({text})")
    if primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return JournalError(
            f"journal {path} is corrupt ({text}); it was left untouched: move it away to start "
            "a new journal"
        )
    if primary == sqlite3.SQLITE_READONLY:
        return JournalError(f"journal {path} is read-only here ({text})")
    if primary == sqlite3.SQLITE_CANTOPEN:
        return JournalError(f"journal {path} cannot be opened ({text})")
    return JournalError(f"journal {path}: {text}")


# -- asyncio --------------------------------------------------------------------------------------

_ASYNC_METHODS = frozenset(
    {
        "add_file",
        "add_files",
        "get_file",
        "lookup_path",
        "set_file_state",
        "set_file_states",
        "count_by_state",
        "create_sequence",
        "get_sequence",
        "sequences_in_state",
        "sequence_images",
        "seen_at",
        "record_manifest",
        "set_sequence_finished",
        "set_sequence_state",
        "upsert_upload",
        "record_handle",
        "record_event",
        "recent_events",
        "get_meta",
        "set_meta",
        "summary",
        "integrity_check",
    }
)


class AsyncJournal:
    """The journal for asyncio code: the same methods as ``Journal``, as coroutines, all run on
    one dedicated thread (so calls keep their order and the loop never waits on an fsync).

    ``await aj.run(fn)`` runs ``fn(journal)`` on that thread, e.g. a function doing several
    calls inside ``with journal.transaction():``.
    """

    def __init__(self, journal: Journal, executor: ThreadPoolExecutor | None = None) -> None:
        self.journal = journal
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")

    @classmethod
    async def open(cls, path: str | os.PathLike[str] | None = None, **kwargs: Any) -> AsyncJournal:
        """``Journal.open`` on the journal thread (it may wait up to the busy timeout)."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        loop = asyncio.get_running_loop()
        try:
            journal = await loop.run_in_executor(
                executor, functools.partial(Journal.open, path, **kwargs)
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(journal, executor)

    async def run(self, fn: Callable[[Journal], T]) -> T:
        """Run ``fn(journal)`` on the journal thread and return its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, self.journal)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in _ASYNC_METHODS:
            raise AttributeError(name)
        method = getattr(self.journal, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._executor, functools.partial(method, *args, **kwargs)
            )

        call.__name__ = name
        call.__doc__ = method.__doc__
        return call

    async def aclose(self) -> None:
        """Finish queued calls, close the journal and stop the thread."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.journal.close)
        self._executor.shutdown(wait=True)

    async def __aenter__(self) -> AsyncJournal:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
