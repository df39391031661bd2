"""The journal's file: where it lives, its schema and migrations, and opening it safely.

Opening refuses what it cannot trust before SQLite writes anything: a file that is not a SQLite
database, a SQLite database that is not a journal, a journal newer than this program.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from daemon.core.config import JOURNAL_FILE, state_dir
from daemon.journal.errors import JournalError

SQLITE_HEADER = b"SQLite format 3\x00"

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
    # (the server's offset is asked instead). The table is rebuilt rather than altered with
    # DROP COLUMN, which SQLite before 3.35 (Raspberry Pi OS bullseye has 3.34) does not know.
    (
        """CREATE TABLE uploads_new (
            file_hash TEXT PRIMARY KEY REFERENCES files(hash),
            key TEXT NOT NULL UNIQUE,
            md5 TEXT NOT NULL,
            size INTEGER NOT NULL,
            handle TEXT,
            updated_at REAL NOT NULL
        )""",
        """INSERT INTO uploads_new (file_hash, key, md5, size, handle, updated_at)
            SELECT file_hash, key, md5, size, handle, updated_at FROM uploads""",
        "DROP TABLE uploads",
        "ALTER TABLE uploads_new RENAME TO uploads",
    ),
    # What finish_upload made of a sequence: its cluster with the local files it covers (in
    # manifest order), and, once the service has processed it, its sequence and image ids; a
    # low-frequency follow-up asks for them (``checks``, ``next_check``, ``note``). Finished
    # sequences of older journals are filled in and will be asked about too.
    (
        """CREATE TABLE clusters (
            cluster_id TEXT PRIMARY KEY,
            sequence_uuid TEXT NOT NULL UNIQUE REFERENCES sequences(uuid),
            mapillary_sequence TEXT,
            checks INTEGER NOT NULL DEFAULT 0,
            next_check REAL,
            note TEXT
        )""",
        """CREATE TABLE cluster_files (
            file_hash TEXT PRIMARY KEY REFERENCES files(hash),
            cluster_id TEXT NOT NULL REFERENCES clusters(cluster_id),
            position INTEGER NOT NULL,
            image_id TEXT
        )""",
        "CREATE INDEX cluster_files_cluster ON cluster_files(cluster_id, position)",
        """INSERT INTO clusters (cluster_id, sequence_uuid, next_check)
            SELECT cluster_id, uuid, coalesce(finished_at, created_at) FROM sequences
            WHERE state = 'finished' AND cluster_id IS NOT NULL""",
        # Positions numbered in one pass: counting each file's earlier files is quadratic in a
        # sequence's length (26 s against 1.2 s for 50,000 photos in sequences of 2,500,
        # tests/bench/bench_migration.py; far more on a Pi, where systemd may kill the start
        # and the migration begins again).
        """INSERT INTO cluster_files (file_hash, cluster_id, position)
            SELECT f.hash, s.cluster_id,
                row_number() OVER (PARTITION BY f.sequence_id ORDER BY f.seq_index) - 1
            FROM files f JOIN sequences s ON s.uuid = f.sequence_id
            WHERE s.state = 'finished' AND s.cluster_id IS NOT NULL AND f.state = 'finished'""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def default_journal_path() -> Path:
    """Where the journal lives unless configured otherwise."""
    return state_dir() / JOURNAL_FILE


def check_header(path: Path) -> bool:
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


def connect(path: Path, target: str, *, uri: bool, busy_timeout: float) -> sqlite3.Connection:
    """A connection to ``target`` (the path, or a ``file:`` URI) that has read page 1."""
    try:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so batches are exactly ours.
        conn = sqlite3.connect(
            target, timeout=busy_timeout, isolation_level=None, check_same_thread=False, uri=uri
        )
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        conn.execute("PRAGMA schema_version").fetchone()  # reads page 1: a bad file fails here
    except sqlite3.Error as exc:
        raise translate(path, exc) from exc
    return conn


def translate(path: Path, exc: sqlite3.Error) -> JournalError:
    """SQLite's error as one line naming the journal and saying what it means for the user."""
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


def user_version(conn: sqlite3.Connection) -> int:
    """The schema version recorded in the file (0 for a new one)."""
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def check_version(path: Path, version: int) -> None:
    """Refuse a journal written by a newer version of this program."""
    if version > SCHEMA_VERSION:
        raise JournalError(
            f"journal {path} has schema version {version}, newer than this program "
            f"knows ({SCHEMA_VERSION}): upgrade mapillary-daemon"
        )


def prepare_writer(conn: sqlite3.Connection, path: Path, max_bytes: int | None) -> None:
    """Check the file is a journal we may write, then set WAL, full sync and foreign keys.

    ``max_bytes`` caps the database size (a full disk is then reported before the real one
    fills). Raises sqlite3.Error as it comes; the caller translates it.
    """
    # Check the version before anything writes: switching to WAL rewrites the header.
    version = user_version(conn)
    check_version(path, version)
    if version == 0 and conn.execute("SELECT 1 FROM sqlite_master").fetchone():
        raise JournalError(f"{path} is a SQLite database but not a journal; it was left untouched")
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode.lower() != "wal":
        raise JournalError(f"journal {path}: cannot use WAL mode (got {mode})")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    if max_bytes is not None:
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count={max(1, max_bytes // page)}")


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring an older journal up to SCHEMA_VERSION; the caller holds one transaction around it,
    so a step that fails part-way leaves the file as it was."""
    version = user_version(conn)
    check_version(path, version)
    for step in MIGRATIONS[version:]:
        for statement in step:
            conn.execute(statement)
    if version < SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
