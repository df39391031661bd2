"""Making writes survive a power cut: fsync a folder after a rename, flush a batch at once.

One home for these, since the importer, the journal, the token store, EXIF writes and the
downloader all rename files into place and each must make the new name durable.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Callable, Iterable
from pathlib import Path


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened or
    fsynced: the rename itself is still atomic)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs_function() -> Callable[[int], int] | None:
    """Linux's syncfs(2): one flush of a whole file system instead of one fsync per file."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syncfs
    except (OSError, AttributeError):
        return None


SYNCFS = _syncfs_function()


def sync_files(
    folder: str | os.PathLike[str], files: Iterable[Path], folders: Iterable[Path] = ()
) -> None:
    """Make ``files`` and the entries of ``folders`` (all on the file system holding
    ``folder``) durable: one syncfs where there is one, else an fsync each (folders after
    files, deepest first). Raises OSError when the disk reports a write error."""
    if SYNCFS is not None:
        fd = os.open(folder, os.O_RDONLY)
        try:
            if SYNCFS(fd) == 0:
                return
        finally:
            os.close(fd)
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fsync_dirs(folders)


def fsync_dirs(folders: Iterable[Path]) -> None:
    """fsync_dir each of ``folders``, deepest first: a new subfolder before the one holding it."""
    for path in sorted(folders, reverse=True):
        fsync_dir(path)


PRIVATE_FILE = 0o600  # where someone drove: the journal, the spool
PRIVATE_FOLDER = 0o700
NAME_MAX = 255  # bytes of one file name on every file system we meet (ext4, FAT/exFAT, APFS)


def temp_beside(path: Path) -> Path:
    """A hidden, unique temp name in the folder of ``path``: folder watchers skip dotfiles,
    and a rename within one folder is atomic. The original name is shortened where needed so
    that a photo whose name is already near the limit can still be rewritten."""
    tail = f".{os.getpid()}.{os.urandom(3).hex()}.tmp"
    room = NAME_MAX - len(tail.encode()) - 1
    stem = os.fsencode(path.name)[:room].decode("utf-8", "ignore") if room > 0 else ""
    return path.with_name(f".{stem}{tail}")


def put_in_place(staged: Path, path: str | os.PathLike[str]) -> None:
    """Rename ``staged`` over ``path`` (atomic); the staged file is gone either way.
    The caller makes the folder durable (:func:`fsync_dir`), once per batch of these."""
    try:
        os.replace(staged, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(staged)
        raise


def write_all(fd: int, data: bytes | memoryview) -> None:
    """All of ``data`` written to ``fd`` (``os.write`` may take only part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_temp(
    path: str | os.PathLike[str],
    data: bytes | str,
    *,
    mode: int | None = None,
    fsync: bool = True,
) -> Path:
    """``data`` written to a new temp file beside ``path`` (not yet in place). The temp file
    takes ``mode`` if given, else the mode of ``path`` where it exists; it is removed if
    anything fails."""
    target = Path(path)
    tmp = temp_beside(target)
    if mode is None:
        try:
            mode = os.stat(target).st_mode & 0o7777
        except OSError:
            mode = 0o644
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            with contextlib.suppress(OSError):  # FAT and some network mounts refuse modes
                os.fchmod(fd, mode)  # whatever the umask
            write_all(fd, data.encode() if isinstance(data, str) else data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def write_atomically(
    path: str | os.PathLike[str],
    data: bytes | str,
    *,
    mode: int | None = None,
    durable: bool = True,
) -> None:
    """Write ``data`` over ``path``: a temp file beside it, (fsync,) rename, (fsync the folder).

    A crash at any point leaves the old file or the new one, never a mix. ``durable=False``
    skips both fsyncs, for files a later run can simply make again.
    """
    target = Path(path)
    put_in_place(write_temp(target, data, mode=mode, fsync=durable), target)
    if durable:
        fsync_dir(target.parent)


def make_private_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents, each 0700; the ones created, outermost first.

    A folder that already exists is left as it is. Raises OSError.
    """
    missing: list[Path] = []
    current = folder
    while not current.is_dir() and current != current.parent:
        missing.append(current)
        current = current.parent
    created: list[Path] = []
    for each in reversed(missing):
        try:
            os.mkdir(each, PRIVATE_FOLDER)
        except FileExistsError:
            if not each.is_dir():
                raise
            continue  # made meanwhile by someone else: theirs, not ours to chmod
        os.chmod(each, PRIVATE_FOLDER)  # the umask may have taken more than it should
        created.append(each)
    return created
