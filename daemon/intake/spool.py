"""Getting photos off cards and into our hands: copied into the spool, hashed, durably.

A card's file is copied by the kernel (copy_file_range, else sendfile, else read/write) to a
temporary name in the spool; its SHA-256 is then computed over that copy through a read-only
mapping of the page cache, so the name always describes the bytes we hold, and no byte passes
through Python. The copies of a batch are renamed to ``<spool>/<hash[:2]>/<hash>.jpg`` and
then made durable, data and names, by one flush. Only then may the card go. A card pulled out
mid-copy leaves no trace in the spool and raises :class:`SourceGone`, so the caller tries
again when the card is back. Files of local watch folders are only hashed, never written.
Nothing here touches the journal: callers journal what these functions return, after it is
durable.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import mmap
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from daemon.core.durable import (
    PRIVATE_FILE,
    fsync_dirs,
    make_private_folders,
    put_in_place,
    sync_files,
    write_all,
)
from daemon.core.files import open_regular
from daemon.core.hashing import hash_file

CHUNK = 1 << 20
MAP_WINDOW = 16 << 20  # a multiple of mmap.ALLOCATIONGRANULARITY
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


class SpoolError(OSError):
    """Our side failed, not the card: the spool could not be written (its disk full, read-only
    or failing). The card's file is fine and must be copied again later; ``strerror`` says
    why ("No space left on device")."""


def _ours(exc: OSError) -> SpoolError:
    if isinstance(exc, SpoolError):
        return exc
    return SpoolError(exc.errno, exc.strerror or str(exc), exc.filename)


@dataclass(frozen=True)
class ImportedFile:
    hash: str
    spool_path: Path
    size: int
    src: Path


@dataclass(frozen=True)
class Staged:
    """A checked copy under a temporary name, waiting for its rename and flush."""

    src: Path
    tmp: Path
    digest: str
    size: int


def spool_name(digest: str, suffix: str) -> str:
    """``<hash[:2]>/<hash>.jpg``; tracks keep ``.gpx``.

    >>> spool_name("ab12", ".JPEG"), spool_name("cd34", ".gpx")
    ('ab/ab12.jpg', 'cd/cd34.gpx')
    """
    ext = suffix.lower()
    ext = ".jpg" if ext in ("", ".jpg", ".jpeg") else ext
    return f"{digest[:2]}/{digest}{ext}"


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, PRIVATE_FILE)


def _gone(src: Path, exc: OSError) -> SourceGone:
    return SourceGone(f"{src}: {exc.strerror or exc}")


def _same_file(src: Path, opened: os.stat_result) -> bool:
    try:
        st = os.stat(src)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (opened.st_dev, opened.st_ino)


# The kernel cannot copy between these two files (another file system, an old kernel, macOS):
# the next way down is tried from where the copy stands.
_NO_KERNEL_COPY = frozenset(
    {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ETXTBSY}
)
# Errors that can only be the spool's (a full or read-only disk).
_OUR_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


def _copy_chunk(fin: int, fout: int, done: int, count: int, how: list[str]) -> int:
    """Copy up to ``count`` bytes from offset ``done`` of ``fin`` to the same offset of
    ``fout`` by the first way in ``how`` that works (copy_file_range, sendfile, then "read":
    read/write, always last). A way that cannot copy here, or that copies nothing before the
    end, is dropped for the rest of the file; 0 from plain reads means the source ended."""
    while True:
        way = how[0]
        try:
            if way == "copy_file_range":
                n = os.copy_file_range(fin, fout, count, done, done)
            else:
                os.lseek(fout, done, os.SEEK_SET)
                if way == "sendfile":
                    n = os.sendfile(fout, fin, done, count)
                else:
                    data = os.pread(fin, count, done)
                    write_all(fout, data)
                    return len(data)
        except OSError as exc:
            if way == "read" or exc.errno not in _NO_KERNEL_COPY:
                raise
            n = 0
        if n:
            return n
        how.pop(0)


def _kernel_ways() -> list[str]:
    ways = ["read"]
    if hasattr(os, "sendfile") and os.uname().sysname == "Linux":  # macOS: sockets only
        ways.insert(0, "sendfile")
    if hasattr(os, "copy_file_range"):
        ways.insert(0, "copy_file_range")
    return ways


def _hash_copy(fd: int, size: int) -> str:
    """SHA-256 of the copy we have just written, read through a mapping (no copy into
    Python). Only such a copy is mapped: its pages are still in memory, while reading a
    mapped page that fails (a card pulled, a damaged file) would kill the process (SIGBUS)
    instead of raising OSError."""
    digest = hashlib.sha256()
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
    for offset in range(0, size, MAP_WINDOW):  # a window at a time: a huge file, small RSS
        length = min(MAP_WINDOW, size - offset)
        with mmap.mmap(fd, length, flags=flags, prot=mmap.PROT_READ, offset=offset) as window:
            digest.update(window)
    return digest.hexdigest()


def _source_fails(fin: int, src: Path, opened: os.stat_result, at: int) -> bool:
    """After an error copying: whether the card is to blame (gone, changed or unreadable at
    ``at``) rather than our disk."""
    if not _same_file(src, opened):
        return True
    try:
        os.pread(fin, 1, min(at, max(0, opened.st_size - 1)))
    except OSError:
        return True
    return False


def _copy_and_hash(
    src: Path,
    tmp: Path,
    progress: Progress | None,
    fsync: bool = True,
    ways: list[str] | None = None,
) -> tuple[str, int]:
    """Copy ``src`` to ``tmp`` (by the first of ``ways`` that works, default all this system
    has) and hash the copy. Failures reading the card, or a card that changes or goes, are
    SourceGone; failures on our side are SpoolError; a card file that is there but cannot be
    opened (no permission) is a plain OSError."""
    try:
        fin = open_regular(src, 0)  # closed below; errors sorted apart (a FIFO: NotRegularFile)
    except OSError as exc:
        raise _gone(src, exc) if exc.errno in GONE_ERRNOS else exc from None
    try:
        # Private whatever the umask: the spool holds where someone drove.
        out = open(tmp, "xb+", buffering=0, opener=_private)  # noqa: SIM115 (closed below)
    except OSError as exc:
        fin.close()
        raise _ours(exc) from None
    with fin, out as fout:
        opened = os.fstat(fin.fileno())
        with contextlib.suppress(OSError, AttributeError):  # a larger read-ahead off the card
            os.posix_fadvise(fin.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        how = [w for w in (ways or _kernel_ways()) if w != "read"] + ["read"]
        size = 0
        while size < opened.st_size:
            try:
                n = _copy_chunk(fin.fileno(), fout.fileno(), size, CHUNK, how)
            except OSError as exc:
                if exc.errno in _OUR_ERRNOS or not _source_fails(fin.fileno(), src, opened, size):
                    raise _ours(exc) from None
                raise _gone(src, exc) from None
            if not n:
                break
            size += n
            # An unlinked file stays readable on POSIX, so a pulled card is noticed by its path.
            if not _same_file(src, opened):
                raise SourceGone(f"{src}: disappeared while being copied")
            if progress is not None:
                progress(size, opened.st_size)
        now = os.fstat(fin.fileno())
        if (
            size != opened.st_size
            or (now.st_size, now.st_mtime_ns) != (opened.st_size, opened.st_mtime_ns)
            or os.fstat(fout.fileno()).st_size != size
            or not _same_file(src, opened)
        ):
            raise SourceGone(
                f"{src}: changed while being copied ({size} of {opened.st_size} bytes)"
            )
        try:  # our copy, our disk
            digest = _hash_copy(fout.fileno(), size)
            if fsync:
                os.fsync(fout.fileno())
        except OSError as exc:
            raise _ours(exc) from None
    return digest, size


def _stage(src: Path, spool: Path, progress: Progress | None = None, fsync: bool = True) -> Staged:
    tmp = spool / f"{TEMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex}{TEMP_SUFFIX}"
    try:
        digest, size = _copy_and_hash(src, tmp, progress, fsync)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Staged(src, tmp, digest, size)


def _holds(path: Path, digest: str, size: int) -> bool:
    """Whether ``path`` holds the bytes hashed to ``digest``. Read, not mapped: this file may
    be damaged, and a read error must be an answer, not SIGBUS."""
    try:
        got, length = hash_file(path)
    except OSError:
        return False
    return (got, length) == (digest, size)


def _place(
    staged: Staged, spool: Path, dirty: set[Path], placed: list[Path] | None = None
) -> ImportedFile:
    """Rename into place (or drop the copy when the same photo is there); collect the folders
    to fsync in ``dirty`` and the names newly put in place in ``placed``. A final name already
    there is trusted only when its bytes hash right: a power cut between a batch's renames and
    its flush can leave a name on unwritten data, and the next copy of that photo repairs it."""
    final = spool / spool_name(staged.digest, staged.src.suffix)
    try:
        twin = final.exists() and _holds(final, staged.digest, staged.size)
        if twin:
            staged.tmp.unlink(missing_ok=True)  # the same photo came before (a card seen twice)
        elif not final.parent.is_dir():
            make_private_folders(final.parent)
            dirty.add(spool)
    except BaseException:
        staged.tmp.unlink(missing_ok=True)
        raise
    if not twin:
        put_in_place(staged.tmp, final)
        if placed is not None:
            placed.append(final)
    dirty.add(final.parent)  # a name a killed run left may not be durable yet either
    return ImportedFile(staged.digest, final, staged.size, staged.src)


def import_file(
    src: str | os.PathLike[str],
    spool_dir: str | os.PathLike[str],
    progress: Progress | None = None,
) -> ImportedFile:
    """Copy ``src`` into the spool under its content hash; durable when this returns.

    Raises SourceGone when the source disappears or changes during the copy (nothing is left
    in the spool), and SpoolError for problems on our side (a full spool disk). ``progress`` is
    called with (bytes done, bytes in all) after each chunk.
    """
    src, spool = Path(src), Path(spool_dir)
    try:
        make_private_folders(spool)
    except OSError as exc:
        raise _ours(exc) from None
    dirty: set[Path] = set()
    staged = _stage(src, spool, progress)
    try:
        got = _place(staged, spool, dirty)
        fsync_dirs(dirty)
    except OSError as exc:
        raise _ours(exc) from None
    return got


def stage_files(
    srcs: Iterable[str | os.PathLike[str]],
    spool_dir: str | os.PathLike[str],
    workers: int = 2,
) -> list[Staged | SourceGone | OSError]:
    """Copy many files (a card's batch, ~64 files) to temp names in ``workers`` threads and
    hash them, no flush. Returns, in order, a Staged copy or the error for each source.
    Nothing counts until :func:`commit_staged`; a crash in between leaves only temps, which
    :func:`clean_spool_temps` removes. Two halves, so that one batch can be copied while the
    one before it is flushed."""
    spool = Path(spool_dir)
    try:
        make_private_folders(spool)
    except OSError as exc:  # the whole batch fails, on our side
        raise _ours(exc) from None

    def stage(src: str | os.PathLike[str]) -> Staged | SourceGone | OSError:
        try:
            return _stage(Path(src), spool, fsync=False)
        except (SourceGone, OSError) as exc:
            return exc

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(stage, srcs))


def commit_staged(
    staged: list[Staged | SourceGone | OSError], spool_dir: str | os.PathLike[str]
) -> list[ImportedFile | SourceGone | OSError]:
    """The second half of a batch import: rename the copies into place, then make data
    and names durable with one flush (one syncfs on Linux; each file and folder fsynced
    elsewhere). Every ImportedFile returned is durable; callers journal only those. A flush
    that fails raises OSError and removes the names this batch placed: the page cache may
    still hold their bytes while the disk does not, so a later check could not tell."""
    spool = Path(spool_dir)
    dirty: set[Path] = set()
    placed: list[Path] = []
    out: list[ImportedFile | SourceGone | OSError] = []
    for item in staged:
        if isinstance(item, Staged):
            try:
                out.append(_place(item, spool, dirty, placed))
            except OSError as exc:  # a rename or folder in the spool: ours
                out.append(_ours(exc))
        else:
            out.append(item)
    try:
        sync_files(spool, [got.spool_path for got in out if isinstance(got, ImportedFile)], dirty)
    except OSError as exc:
        for path in placed:
            with contextlib.suppress(OSError):
                path.unlink()
        raise _ours(exc) from None
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
