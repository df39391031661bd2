"""Getting photos off cards and into our hands: copy-while-hashing into the spool, durably.

A card's file is copied to a temporary name in the spool while its SHA-256 is computed in the
same pass (one read of the card), fsynced, and renamed to ``<spool>/<hash[:2]>/<hash><ext>``.
Only then may the card go. A card pulled out mid-copy leaves no trace in the spool.
Files of local watch folders are only hashed, never written.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20


class SourceGone(Exception):
    """The source vanished or changed while we read it (a card pulled out): try again later."""


@dataclass(frozen=True)
class ImportedFile:
    hash: str
    spool_path: Path
    size: int
    src: Path


def hash_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """SHA-256 hex digest and size of a file, read in 1 MB chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _copy_hashing(src: Path, tmp: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(src, "rb") as fin:
        expected = os.fstat(fin.fileno()).st_size
        with open(tmp, "wb") as fout:
            while chunk := fin.read(CHUNK):
                digest.update(chunk)
                fout.write(chunk)
                size += len(chunk)
            fout.flush()
            os.fsync(fout.fileno())
    if size != expected:
        raise SourceGone(f"{src}: changed while being copied ({size} of {expected} bytes)")
    return digest.hexdigest(), size


def import_file(src: str | os.PathLike[str], spool_dir: str | os.PathLike[str]) -> ImportedFile:
    """Copy ``src`` into the spool under its content hash; durable when this returns.

    Raises SourceGone when the source disappears or changes during the copy (nothing is left
    in the spool), and OSError for problems on our side (a full spool disk).
    """
    src, spool = Path(src), Path(spool_dir)
    spool.mkdir(parents=True, exist_ok=True)
    tmp = spool / f".import-{os.getpid()}-{uuid.uuid4().hex}.part"
    try:
        digest, size = _copy_hashing(src, tmp)
    except SourceGone:
        tmp.unlink(missing_ok=True)
        raise
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if not src.exists() or exc.filename in (str(src), os.fspath(src)) or exc.errno == 5:
            raise SourceGone(f"{src}: {exc.strerror or exc}") from None
        raise
    final_dir = spool / digest[:2]
    final = final_dir / f"{digest}{src.suffix.lower() or '.bin'}"
    if final.exists() and final.stat().st_size == size:
        tmp.unlink(missing_ok=True)  # the same photo came before (a card inserted twice)
    else:
        final_dir.mkdir(exist_ok=True)
        os.replace(tmp, final)
        fsync_dir(final_dir)
        fsync_dir(spool)
    return ImportedFile(digest, final, size, src)


def free_mb(path: str | os.PathLike[str]) -> float:
    """Free space (MB) on the file system holding ``path`` (or its nearest existing parent)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free / (1024 * 1024)


def remove_spool_file(path: str | os.PathLike[str]) -> None:
    """Delete one of our spool copies (never a user's file) and its folder once empty."""
    p = Path(path)
    p.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        p.parent.rmdir()
