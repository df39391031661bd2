"""The files of the journal: each image once (by content hash), every path it was seen at, and
its state with the reason."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

from daemon.core.files import valid_text
from daemon.journal.base import JournalBase
from daemon.journal.errors import IllegalTransition, NotFound
from daemon.journal.rows import (
    FILE_SELECT,
    FileRow,
    NewFile,
    StateChange,
    dump,
    file_row,
    path_text,
    path_value,
)
from daemon.journal.states import NEEDS_REASON, FileState, check_transition

SETTABLE_FIELDS = frozenset({"spool_path", "handle", "metadata"})
CHUNK = 500  # hashes per IN (...) query: stay under SQLite's bound-variable limit


def _marks(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


class FileStore(JournalBase):
    """Recording files, moving them between states, and reading them back."""

    def add_file(self, entry: NewFile) -> bool:
        """Record a file seen at ``entry.path``. Returns True if its hash is new.

        A known hash is never a second file: the path is recorded as one more place it was seen
        (and a spool path filled in if it had none); its state is left as it is.
        """
        return self.add_files([entry])[0]

    def add_files(self, entries: Iterable[NewFile]) -> list[bool]:
        """``add_file`` for many files in one transaction; one bool per entry, in order."""
        now = time.time()
        with self.transaction():
            return [self._add(e, now) for e in entries]

    def _add(self, e: NewFile, now: float) -> bool:
        if e.state not in (FileState.DISCOVERED, FileState.IMPORTED):
            raise IllegalTransition(f"a new file starts discovered or imported, not {e.state}")
        cur = self._conn.execute(
            "INSERT INTO files (hash, state, source_kind, source_root, spool_path, size, "
            "mtime, metadata, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(hash) DO NOTHING",
            (
                e.hash,
                str(e.state),
                e.source_kind,
                path_value(e.source_root),
                path_value(e.spool_path),
                e.size,
                e.mtime,
                dump(e.metadata),
                now,
                now,
            ),
        )
        is_new = cur.rowcount == 1
        if not is_new and e.spool_path is not None:
            self._conn.execute(
                "UPDATE files SET spool_path = ?, updated_at = ? "
                "WHERE hash = ? AND spool_path IS NULL",
                (path_value(e.spool_path), now, e.hash),
            )
        self._conn.execute(
            "INSERT INTO file_paths (hash, path, source_kind, source_root, size, mtime, "
            "seen_at) VALUES (?,?,?,?,?,?,?) ON CONFLICT(hash, path) DO UPDATE SET "
            "source_kind = excluded.source_kind, source_root = excluded.source_root, "
            "size = excluded.size, mtime = excluded.mtime, seen_at = excluded.seen_at",
            (
                e.hash,
                path_value(e.path),
                e.source_kind,
                path_value(e.source_root),
                e.size,
                e.mtime,
                now,
            ),
        )
        return is_new

    def get_file(self, file_hash: str) -> FileRow | None:
        """The file with this content hash, or None."""
        rows = self._file_rows(f"{FILE_SELECT} WHERE f.hash = ?", (file_hash,))
        return rows[0] if rows else None

    def lookup_path(self, path: str | os.PathLike[str]) -> tuple[str, int, float] | None:
        """``(hash, size, mtime)`` last recorded for a path, or None: a scan can skip re-hashing a
        file whose size and mtime have not changed."""
        rows = self._read(
            "SELECT hash, size, mtime FROM file_paths WHERE path = ? "
            "ORDER BY seen_at DESC, rowid DESC LIMIT 1",
            (path_value(path),),
        )
        return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

    def seen_at(self, hashes: Sequence[str]) -> dict[str, list[tuple[str, int, float]]]:
        """Every path each file was seen at, oldest first, with the size and mtime it had then:
        what to check before reading a file in place (it may have been edited since)."""
        out: dict[str, list[tuple[str, int, float]]] = {}
        with self._lock, self._guard():
            for start in range(0, len(hashes), CHUNK):
                chunk = list(hashes[start : start + CHUNK])
                for h, p, size, mtime in self._conn.execute(
                    f"SELECT hash, path, size, mtime FROM file_paths WHERE hash IN "
                    f"({_marks(chunk)}) ORDER BY seen_at, rowid",
                    chunk,
                ):
                    out.setdefault(h, []).append((path_text(p), size, mtime))
        return out

    def roots_in_states(self, states: Iterable[FileState]) -> dict[str, int]:
        """How many files each source root has in ``states`` (a cheap look before loading)."""
        wanted = [str(FileState(s)) for s in states]
        rows = self._read(
            f"SELECT source_root, count(*) FROM files WHERE state IN ({_marks(wanted)}) "
            "GROUP BY source_root",
            wanted,
        )
        return {path_text(root): n for root, n in rows}

    def files_of_root_page(
        self, root: str, states: Iterable[FileState], after: int = 0, limit: int = 1000
    ) -> tuple[list[FileRow], int]:
        """At most ``limit`` files of one source root in ``states``, in the order they were
        recorded, starting after the position ``after`` (0: from the start); returns them and
        the position to continue from. A big root is read page by page, never all at once."""
        wanted = [str(FileState(s)) for s in states]
        where = f"f.state IN ({_marks(wanted)}) AND f.source_root = ?"
        params = (*wanted, path_value(root))
        last = self._read(
            f"SELECT max(rowid) FROM (SELECT f.rowid AS rowid FROM files f WHERE {where} "
            "AND f.rowid > ? ORDER BY f.rowid LIMIT ?)",
            (*params, after, limit),
        )[0][0]
        if last is None:
            return [], after
        rows = self._file_rows(
            f"{FILE_SELECT} WHERE {where} AND f.rowid > ? AND f.rowid <= ? ORDER BY f.rowid",
            (*params, after, last),
        )
        return rows, last

    def oldest_of_root(self, root: str, states: Iterable[FileState]) -> float | None:
        """When the longest-known file of a source root in ``states`` was recorded, or None."""
        wanted = [str(FileState(s)) for s in states]
        oldest: float | None = self._read(
            f"SELECT min(created_at) FROM files WHERE state IN ({_marks(wanted)}) "
            "AND source_root = ?",
            (*wanted, path_value(root)),
        )[0][0]
        return oldest

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
        """One state change; the caller holds the transaction."""
        state = FileState(change.state)
        unknown = set(change.fields) - SETTABLE_FIELDS
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
        # A reason names the file: text SQLite can store, whatever bytes its name has.
        reason = valid_text(change.reason) if change.reason else change.reason
        params: list[Any] = [str(state), reason, now]
        for name, value in change.fields.items():
            if name == "metadata":
                value = dump({**json.loads(row[1]), **value})
            elif name == "spool_path":
                value = path_value(value)
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
        """The files a FILE_SELECT query finds, each with every path it was seen at."""
        with self._lock, self._guard():
            rows = self._conn.execute(sql, params).fetchall()
            paths: dict[str, list[str]] = {}
            hashes = [r[0] for r in rows]
            for start in range(0, len(hashes), CHUNK):
                chunk = hashes[start : start + CHUNK]
                for h, p in self._conn.execute(
                    f"SELECT hash, path FROM file_paths WHERE hash IN ({_marks(chunk)}) "
                    "ORDER BY seen_at, rowid",
                    chunk,
                ):
                    paths.setdefault(h, []).append(path_text(p))
        return [file_row(r, paths.get(r[0], ())) for r in rows]
