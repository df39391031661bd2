"""Where the journal is on disk: the real file behind a symlinked path, created private, and
watched while it is open.

The journal's files (the database, its ``-wal`` and ``-shm``, the ``.lock``) are created 0600 and
the folders made for them 0700, whatever the umask: they tell where someone drove. SQLite gives
the ``-wal`` and ``-shm`` the main file's mode, so creating that one private is enough.

A journal deleted or replaced while the daemon runs would be recreated empty on the next start,
and every photo uploaded again, so ``Watch`` tells when the file held open is no longer the one
at the path.
"""

from __future__ import annotations

import os
from pathlib import Path

from daemon.core.durable import PRIVATE_FILE
from daemon.journal.errors import JournalError

# An O_PATH descriptor pins the inode (its number cannot be reused while held) without opening
# the file: closing it does not drop the POSIX locks SQLite holds on the same file, as closing
# any other descriptor of this process on it would.
_O_PATH: int | None = getattr(os, "O_PATH", None)


def real_path(path: Path) -> Path:
    """``path`` absolute with every symlink resolved, also where the file does not exist yet.

    >>> real_path(Path("/")) == Path("/")
    True
    """
    try:
        return path.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise JournalError(f"journal {path}: cannot resolve its path: {exc}") from exc


def open_private(path: Path, flags: int) -> tuple[int, bool]:
    """Open ``path`` with ``flags``, creating it 0600 if missing; (descriptor, created).

    Raises OSError.
    """
    while True:
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
        except FileExistsError:
            pass
        else:
            try:
                os.fchmod(fd, PRIVATE_FILE)
            except BaseException:
                os.close(fd)
                raise
            return fd, True
        try:
            return os.open(path, flags), False
        except FileNotFoundError:
            continue  # deleted between the two opens: try creating it again


def create_private_file(path: Path) -> bool:
    """Create ``path`` empty and 0600 unless it exists; True if it was created. Raises OSError.

    An existing file is not even opened: closing a descriptor of it would drop the POSIX locks
    SQLite connections of this process hold on it.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)
    return True


class _Held:
    """One file as it was when opened: its identity, pinned by a descriptor where possible."""

    def __init__(self, real: Path, at: Path | None = None) -> None:
        """Hold ``real``; ``at`` is the path to compare it with later (default: ``real``)."""
        self.at = Path(os.path.abspath(at if at is not None else real))  # immune to chdir
        self.fd: int | None = None
        if _O_PATH is not None:
            self.fd = os.open(real, _O_PATH)
            st = os.fstat(self.fd)
        else:  # identity only; never a real descriptor (see _O_PATH)
            st = os.stat(real)
        self.identity = (st.st_dev, st.st_ino)

    def moved(self) -> str | None:
        """'deleted' or 'replaced' when the path no longer names the file held, else None.

        Raises OSError when the path cannot be looked at (other than not being there).
        """
        try:
            st = os.stat(self.at)
        except FileNotFoundError:
            return "deleted"
        return None if (st.st_dev, st.st_ino) == self.identity else "replaced"

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Watch:
    """The journal file as opened (and, for a writer, its write-ahead log and lock file), to
    tell whether they are still the files at their paths. ``check()`` costs a few stats, no SQL.
    """

    def __init__(self, path: Path, real: Path, *, writer_lock: Path | None = None) -> None:
        """``path`` as given (compared as a restart would open it), ``real`` the file it named;
        for a writer, ``writer_lock`` the lock file it holds."""
        self.path = path
        self.main = _Held(real, at=path)  # a symlink re-pointed elsewhere is a replacement too
        self.others: list[tuple[str, _Held]] = []
        try:
            if writer_lock is not None:
                wal = real.with_name(real.name + "-wal")
                self.others.append((f"write-ahead log {wal}", _Held(wal)))
                # without it a second writer could lock a new lock file and start
                self.others.append((f"lock file {writer_lock}", _Held(writer_lock)))
        except BaseException:
            self.close()
            raise

    def check(self) -> str | None:
        """None while the journal is in place, else one line saying what happened to it."""
        path = self.path
        try:
            what = self.main.moved()
            if what == "deleted" and not self.main.at.parent.is_dir():
                return f"journal {path}: its folder {path.parent} was removed or moved while in use"
            if what is not None:
                return f"journal {path} was {what} while in use"
            for name, held in self.others:
                what = held.moved()
                if what is not None:
                    return f"journal {path}: its {name} was {what} while in use"
        except OSError as exc:
            return f"journal {path} cannot be checked: {exc.strerror or exc}"
        return None

    def close(self) -> None:
        """Let go of the files (safe to call twice)."""
        self.main.close()
        for _name, held in self.others:
            held.close()
