"""The writer lock: one process at a time may write a journal, and a second one is told who
holds it instead of waiting on SQLite's locks forever."""

from __future__ import annotations

import os
import time
from pathlib import Path

from daemon.journal.errors import JournalError

try:
    import fcntl
except ImportError:  # not on Windows, which we do not target; SQLite's own locks still apply
    fcntl = None  # type: ignore[assignment]


class WriterLock:
    """An exclusive flock on ``<journal>.lock`` held for the writer's lifetime.

    The lock file is never deleted (deleting it would let two processes lock two different files);
    it holds the owner's pid so the error can name it.
    """

    def __init__(self, journal_path: Path) -> None:
        self.journal_path = journal_path
        self.path = journal_path.with_name(journal_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self, timeout: float) -> None:
        """Take the lock, waiting up to ``timeout`` seconds; JournalError names the holder."""
        if fcntl is None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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

    def release(self) -> None:
        """Drop the lock (safe to call twice)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
