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
        return libc.syncfs  # type: ignore[no-any-return]
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
