"""The writer lock: one process at a time may write a journal, and a second one is told who
holds it instead of waiting on SQLite's locks forever."""

from __future__ import annotations

import os
import time
from pathlib import Path

from daemon.journal.errors import JournalError
from daemon.journal.place import open_private, real_path

try:
    import fcntl
except ImportError:  # not on Windows, which we do not target; SQLite's own locks still apply
    fcntl = None  # type: ignore[assignment]  # a module or nothing: checked before use


class WriterLock:
    """An exclusive flock on ``<journal>.lock`` held for the writer's lifetime.

    The lock file is never deleted (deleting it would let two processes lock two different files);
    it holds the owner's pid so the error can name it. It sits beside the real journal file, every
    symlink resolved, so two paths to one journal (a symlink to the file or to a folder on the way)
    take one lock. It is created 0600.
    """

    def __init__(self, journal_path: Path, real: Path | None = None) -> None:
        """``journal_path`` as the user gave it (for messages), ``real`` the file it names."""
        self.journal_path = journal_path
        real = real if real is not None else real_path(journal_path)
        self.path = real.with_name(real.name + ".lock")
        self._fd: int | None = None

    def acquire(self, timeout: float) -> None:
        """Take the lock, waiting up to ``timeout`` seconds; JournalError names the holder."""
        if fcntl is None:
            return
        try:
            fd, _created = open_private(self.path, os.O_RDWR)
        except OSError as exc:
            raise JournalError(
                f"journal {self.journal_path}: cannot open lock file {self.path}: {exc.strerror}"
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
                    f"journal {self.journal_path} is locked by another process (pid {owner})"
                ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    @property
    def held(self) -> Path | None:
        """The lock file while held, else None (also where flock does not exist)."""
        return self.path if self._fd is not None else None

    def release(self) -> None:
        """Drop the lock (safe to call twice)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
