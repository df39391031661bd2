"""What every part of the ``Journal`` shares: the one connection, the lock around it, and
transactions (one commit each, nested ones as savepoints)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from daemon.journal.errors import JournalError, JournalGone
from daemon.journal.lock import WriterLock
from daemon.journal.place import Watch
from daemon.journal.schema import translate


class JournalBase:
    """A connection to a journal file, thread-safe behind one re-entrant lock.

    The stores (files, sequences, uploads, events, meta) build on it; ``Journal`` puts them
    together with opening and closing.
    """

    def __init__(
        self, path: Path, conn: sqlite3.Connection, lock: WriterLock | None, readonly: bool
    ) -> None:
        self.path = path
        self.readonly = readonly
        self._conn = conn
        self._writer_lock = lock
        self._lock = threading.RLock()
        self._depth = 0
        self._watch: Watch | None = None  # set once opened; see check_in_place

    def close(self) -> None:
        """Close the connection and release the writer lock. Safe to call twice."""
        with self._lock:
            try:
                self._conn.close()
            finally:
                try:
                    if self._watch is not None:
                        self._watch.close()  # after the connection: see place._O_PATH
                        self._watch = None
                finally:
                    if self._writer_lock is not None:
                        self._writer_lock.release()

    def check_in_place(self) -> str | None:
        """None while the journal file held open is still the one at its path; else one line
        naming the journal and what happened: deleted, replaced by another file (another inode
        or device at the path, a symlink re-pointed), its folder removed or moved, its
        write-ahead log or (for the writer) its lock file deleted or replaced, or the path no
        longer readable.

        Never raises and runs no SQL (a few stats), so it may be called often. A journal that
        is not in place must not be written on: a restart would start from another file (or a
        new empty one) and upload everything again. Transactions already refuse, at their start
        and at their commit, with JournalGone. After ``close()`` it returns None.
        """
        with self._lock:
            return self._watch.check() if self._watch is not None else None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[Self]:
        """Everything inside is one commit (one fsync); an exception rolls all of it back.

        Nests: an inner block is a savepoint, rolled back alone if it raises. The journal's lock is
        held for the whole block, so keep slow work (hashing, network) outside it. Raises
        JournalGone (nothing recorded) when the journal is no longer in place at its start or at
        its commit: see ``check_in_place``.
        """
        with self._lock, self._guard():
            if self.readonly:
                raise JournalError(f"journal {self.path} is open read-only")
            if self._depth == 0:
                self._refuse_if_gone()
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
                self._refuse_if_gone()
                self._conn.execute("COMMIT")
            else:
                self._conn.execute(f"RELEASE sp{self._depth}")
        except BaseException:
            self._rollback()
            raise

    def _refuse_if_gone(self) -> None:
        """Write nothing more into a file a restart would not find (SQLite in WAL mode would)."""
        gone = self._watch.check() if self._watch is not None else None
        if gone is not None:
            raise JournalGone(f"{gone}; the change was not recorded")

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
            raise translate(self.path, exc) from exc

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock, self._guard():
            return self._conn.execute(sql, params).fetchall()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """The rows of one read of a journal opened read-only, for a reader whose questions
        are its own (the status page's map, the photos of a sequence); errors as JournalError."""
        if not self.readonly:
            raise JournalError(f"journal {self.path}: query is for read-only journals")
        return self._read(sql, params)
