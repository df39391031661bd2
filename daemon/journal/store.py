"""``Journal``: the synchronous journal, the stores put together with opening and closing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from daemon.core.durable import fsync_dirs, make_private_folders
from daemon.journal.errors import JournalError
from daemon.journal.events import EventStore
from daemon.journal.lock import WriterLock
from daemon.journal.meta import MetaStore
from daemon.journal.place import Watch, create_private_file, real_path
from daemon.journal.schema import (
    SCHEMA_VERSION,
    check_header,
    check_version,
    connect,
    default_journal_path,
    migrate,
    prepare_writer,
    user_version,
)
from daemon.journal.sequences import SequenceStore
from daemon.journal.summary import RECENT_ERRORS, read_summary
from daemon.journal.uploads import UploadStore
from daemon.journal.waiting import WaitingStore

DEFAULT_BUSY_TIMEOUT = 5.0


class Journal(SequenceStore, UploadStore, WaitingStore, EventStore, MetaStore):
    """The synchronous journal. Open with ``Journal.open(path)`` (the one writer) or
    ``Journal.open_readonly(path)`` (any number of readers); close with ``close()`` or ``with``.

    Every public method is thread-safe; each write is its own transaction unless it runs inside
    ``with journal.transaction():``, which makes everything inside one commit.
    """

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
        real = real_path(path)  # one journal, one lock, whatever symlinks lead to it
        try:
            made = make_private_folders(real.parent)
        except OSError as exc:
            raise JournalError(f"journal {path}: cannot create its folder: {exc}") from exc
        lock = WriterLock(path, real)
        lock.acquire(busy_timeout)
        try:
            try:
                create_private_file(real)  # SQLite would make it (so its -wal, -shm) 0644
            except OSError as exc:
                raise JournalError(f"journal {path} cannot be created: {exc.strerror}") from exc
            is_new = check_header(path)
            conn = connect(path, str(real), uri=False, busy_timeout=busy_timeout)
            journal = cls(path, conn, lock, readonly=False)
            try:
                journal._setup_writer(max_bytes)
                journal._watch = journal._watched(real, lock.held)
            except BaseException:
                conn.close()
                raise
        except BaseException:
            lock.release()
            raise
        if is_new:
            # the new file's directory entry (and those of new folders) must survive a power cut
            fsync_dirs({real.parent, *(folder.parent for folder in made)})
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
        check_header(path)
        real = real_path(path)
        uri = f"file:{quote(str(real))}?mode=ro"
        conn = connect(path, uri, uri=True, busy_timeout=busy_timeout)
        journal = cls(path, conn, None, readonly=True)
        try:
            journal._watch = journal._watched(real, None)
            with journal._guard():
                version = user_version(conn)
            check_version(path, version)
            if version < SCHEMA_VERSION:
                raise JournalError(
                    f"journal {path} has schema version {version}; start the daemon once to "
                    f"upgrade it to {SCHEMA_VERSION}"
                )
        except BaseException:
            journal.close()
            raise
        return journal

    def _watched(self, real: Path, writer_lock: Path | None) -> Watch:
        try:
            return Watch(self.path, real, writer_lock=writer_lock)
        except OSError as exc:
            raise JournalError(f"journal {self.path} cannot be watched: {exc.strerror}") from exc

    def _setup_writer(self, max_bytes: int | None) -> None:
        with self._guard():
            prepare_writer(self._conn, self.path, max_bytes)
        with self.transaction():  # an upgrade is all of its steps or none
            migrate(self._conn, self.path)

    def summary(self, errors: int = RECENT_ERRORS) -> dict[str, Any]:
        """Figures for ``status``, JSON-serialisable, read in one consistent snapshot.

        Keys: ``images`` (count per file state), ``sequences`` (count per sequence state),
        ``bytes_to_upload`` (what sequenced images of pending sequences still need to send:
        the tagged size of a started upload the server does not hold yet, else the file's size),
        ``failed_sequences`` (the last ``errors`` failed sequences: uuid, reason, images),
        ``recent_errors`` (the last ``errors`` rejected or failed images: hash, path, state,
        reason, at), ``sources`` (per source root: kind and count per state).
        """
        with self._lock, self._guard():
            in_txn = self._conn.in_transaction
            if not in_txn:
                self._conn.execute("BEGIN")  # one read snapshot for all the figures
            try:
                return read_summary(self._conn, errors)
            finally:
                if not in_txn:
                    self._conn.execute("COMMIT")

    def integrity_check(self) -> list[str]:
        """SQLite's full integrity check: an empty list when the journal is sound, else problems."""
        rows = self._read("PRAGMA integrity_check")
        problems = [r[0] for r in rows]
        return [] if problems == ["ok"] else problems
