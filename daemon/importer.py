"""Getting photos off cards and into our hands: copy-while-hashing into the spool, durably.

A card's file is copied to a temporary name in the spool while its SHA-256 is computed in the
same pass (one read of the card; sendfile/copy_file_range would copy without letting us hash),
fsynced, and renamed to ``<spool>/<hash[:2]>/<hash>.jpg``; the folder is fsynced after the
rename. Only then may the card go. A card pulled out mid-copy leaves no trace in the spool and
raises :class:`SourceGone`, so the caller tries again when the card is back. Files of local watch
folders are only hashed, never written. Nothing here touches the journal: callers journal what
these functions return, after it is durable.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20
TEMP_PREFIX = ".import-"
TEMP_SUFFIX = ".part"
# Errors that mean "the card (or the file on it) went away", as opposed to trouble on our side.
GONE_ERRNOS = frozenset(
    {
        errno.ENOENT,
        errno.EIO,
        errno.ENXIO,
        errno.ENODEV,
        errno.ESTALE,
        errno.ENOTDIR,
        errno.EBADF,
        getattr(errno, "ENOMEDIUM", errno.ENODEV),
    }
)

Progress = Callable[[int, int], None]  # bytes done, bytes in all


class SourceGone(Exception):
    """The source vanished or changed while we read it (a card pulled out): try again later."""


@dataclass(frozen=True)
class ImportedFile:
    hash: str
    spool_path: Path
    size: int
    src: Path


@dataclass(frozen=True)
class _Staged:
    """A verified, fsynced copy under a temporary name, waiting for its rename."""

    src: Path
    tmp: Path
    digest: str
    size: int


def hash_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """SHA-256 hex digest and size of a file read in place (1 MB chunks, never written)."""
    digest = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    size = 0
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            digest.update(view[:n])
            size += n
    return digest.hexdigest(), size


def spool_name(digest: str, suffix: str) -> str:
    """``<hash[:2]>/<hash>.jpg``; tracks keep ``.gpx``.

    >>> spool_name("ab12", ".JPEG"), spool_name("cd34", ".gpx")
    ('ab/ab12.jpg', 'cd/cd34.gpx')
    """
    ext = suffix.lower()
    ext = ".jpg" if ext in ("", ".jpg", ".jpeg") else ext
    return f"{digest[:2]}/{digest}{ext}"


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _gone(src: Path, exc: OSError) -> SourceGone:
    return SourceGone(f"{src}: {exc.strerror or exc}")


def _same_file(src: Path, opened: os.stat_result) -> bool:
    try:
        st = os.stat(src)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (opened.st_dev, opened.st_ino)


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view) :]


def _syncfs_function() -> Callable[[int], int] | None:
    """Linux's syncfs(2): one flush of a whole file system instead of one fsync per file."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syncfs  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


_SYNCFS = _syncfs_function()


def sync_files(folder: Path, files: Iterable[Path]) -> None:
    """Make ``files`` (all on the file system holding ``folder``) durable: one syncfs where
    there is one, else an fsync each. Raises OSError when the disk reports a write error."""
    if _SYNCFS is not None:
        fd = os.open(folder, os.O_RDONLY)
        try:
            if _SYNCFS(fd) == 0:
                return
        finally:
            os.close(fd)
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _copy_hashing(
    src: Path, tmp: Path, progress: Progress | None, fsync: bool = True
) -> tuple[str, int]:
    """Read ``src`` once: hash and write each chunk. Read failures are the source's fault
    (SourceGone); write failures are ours (OSError)."""
    digest = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    size = 0
    try:
        fin = open(src, "rb", buffering=0)  # noqa: SIM115 (closed below, errors sorted apart)
    except OSError as exc:
        raise _gone(src, exc) if exc.errno in GONE_ERRNOS else exc from None
    with fin, open(tmp, "xb", buffering=0) as fout:
        opened = os.fstat(fin.fileno())
        while True:
            try:
                n = fin.readinto(buf)
            except OSError as exc:
                raise _gone(src, exc) from None
            if not n:
                break
            digest.update(view[:n])
            _write_all(fout.fileno(), view[:n])
            size += n
            # An unlinked file stays readable on POSIX, so a pulled card is noticed by its path.
            if not _same_file(src, opened):
                raise SourceGone(f"{src}: disappeared while being copied")
            if progress is not None:
                progress(size, opened.st_size)
        now = os.fstat(fin.fileno()).st_size
        if size != opened.st_size or now != opened.st_size or not _same_file(src, opened):
            raise SourceGone(
                f"{src}: changed while being copied ({size} of {opened.st_size} bytes)"
            )
        if fsync:
            os.fsync(fout.fileno())
    return digest.hexdigest(), size


def _stage(src: Path, spool: Path, progress: Progress | None = None, fsync: bool = True) -> _Staged:
    tmp = spool / f"{TEMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex}{TEMP_SUFFIX}"
    try:
        digest, size = _copy_hashing(src, tmp, progress, fsync)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return _Staged(src, tmp, digest, size)


def _place(staged: _Staged, spool: Path, dirty: set[Path]) -> ImportedFile:
    """Rename into place (or drop the copy when the same photo is there); collect the folders
    to fsync in ``dirty``."""
    final = spool / spool_name(staged.digest, staged.src.suffix)
    try:
        if final.exists() and final.stat().st_size == staged.size:
            staged.tmp.unlink(missing_ok=True)  # the same photo came before (a card seen twice)
        else:
            if not final.parent.is_dir():
                final.parent.mkdir(exist_ok=True)
                dirty.add(spool)
            os.replace(staged.tmp, final)
            dirty.add(final.parent)
    except BaseException:
        staged.tmp.unlink(missing_ok=True)
        raise
    return ImportedFile(staged.digest, final, staged.size, staged.src)


def import_file(
    src: str | os.PathLike[str],
    spool_dir: str | os.PathLike[str],
    progress: Progress | None = None,
) -> ImportedFile:
    """Copy ``src`` into the spool under its content hash; durable when this returns.

    Raises SourceGone when the source disappears or changes during the copy (nothing is left
    in the spool), and OSError for problems on our side (a full spool disk). ``progress`` is
    called with (bytes done, bytes in all) after each chunk.
    """
    src, spool = Path(src), Path(spool_dir)
    spool.mkdir(parents=True, exist_ok=True)
    dirty: set[Path] = set()
    got = _place(_stage(src, spool, progress), spool, dirty)
    for folder in sorted(dirty, reverse=True):  # the new subfolder before the spool holding it
        fsync_dir(folder)
    return got


def import_files(
    srcs: Iterable[str | os.PathLike[str]],
    spool_dir: str | os.PathLike[str],
    workers: int = 2,
) -> list[ImportedFile | SourceGone | OSError]:
    """Import many files (a card's batch, ~100 files): copies run in ``workers`` threads, then
    the whole batch is made durable at once (one syncfs on Linux, fsyncs elsewhere) before
    the renames, and once more after them. Returns, in order, an ImportedFile or the error for
    each source; every ImportedFile is durable when this returns. A spool that cannot be
    written at all (missing, full disk at flush time) raises OSError, leaving no temp."""
    return commit_staged(stage_files(srcs, spool_dir, workers), spool_dir)


Staged = _Staged


def stage_files(
    srcs: Iterable[str | os.PathLike[str]],
    spool_dir: str | os.PathLike[str],
    workers: int = 2,
) -> list[Staged | SourceGone | OSError]:
    """The first half of :func:`import_files`: copy while hashing to temp names, no flush.
    Nothing counts until :func:`commit_staged`; a crash in between leaves only temps, which
    :func:`clean_spool_temps` removes. Split so that one batch can be copied while the one
    before it is flushed."""
    spool = Path(spool_dir)
    spool.mkdir(parents=True, exist_ok=True)

    def stage(src: str | os.PathLike[str]) -> _Staged | SourceGone | OSError:
        try:
            return _stage(Path(src), spool, fsync=False)
        except (SourceGone, OSError) as exc:
            return exc

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(stage, srcs))


def commit_staged(
    staged: list[Staged | SourceGone | OSError], spool_dir: str | os.PathLike[str]
) -> list[ImportedFile | SourceGone | OSError]:
    """The second half of :func:`import_files`: flush the copies, rename them into place,
    flush the names. Every ImportedFile returned is durable."""
    spool = Path(spool_dir)
    copies = [s.tmp for s in staged if isinstance(s, _Staged)]
    try:
        # Data before names: a power cut never leaves a final name on unwritten data.
        sync_files(spool, copies)
    except BaseException:
        for tmp in copies:
            tmp.unlink(missing_ok=True)
        raise
    dirty: set[Path] = set()
    out: list[ImportedFile | SourceGone | OSError] = []
    for item in staged:
        if isinstance(item, _Staged):
            try:
                out.append(_place(item, spool, dirty))
            except OSError as exc:
                out.append(exc)
        else:
            out.append(item)
    if _SYNCFS is not None and len(dirty) > 2:
        sync_files(spool, [])
    else:
        for folder in sorted(dirty, reverse=True):
            fsync_dir(folder)
    return out


def _is_bucket(name: str) -> bool:
    return len(name) == 2 and all(c in "0123456789abcdef" for c in name)


def clean_spool_temps(spool_dir: str | os.PathLike[str]) -> int:
    """Remove copies left half-done by a crash or power cut (call before importing starts).

    Temps sit at the top of the spool they were imported into, which may be a subfolder of
    this one (the daemon's ``gpx/``); hash buckets hold finished copies only, so they are
    not listed."""
    removed = 0
    with contextlib.suppress(FileNotFoundError), os.scandir(spool_dir) as entries:
        for entry in entries:
            if entry.name.startswith(TEMP_PREFIX) and entry.name.endswith(TEMP_SUFFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
            elif entry.is_dir(follow_symlinks=False) and not _is_bucket(entry.name):
                removed += clean_spool_temps(entry.path)
    return removed


def free_mb(path: str | os.PathLike[str]) -> float:
    """Free space (MB) on the file system holding ``path`` (or its nearest existing parent)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free / (1024 * 1024)


def remove_spool_file(
    path: str | os.PathLike[str], spool_dir: str | os.PathLike[str] | None = None
) -> None:
    """Delete one of our spool copies and its folder once empty. With ``spool_dir``, a path
    outside the spool is refused: a user's original is never deleted here."""
    p = Path(path)
    if spool_dir is not None:
        spool = Path(spool_dir).resolve()
        if spool not in p.resolve().parents:
            raise ValueError(f"{p}: not in the spool {spool}")
    p.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        p.parent.rmdir()
