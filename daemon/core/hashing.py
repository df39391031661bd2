"""Content hashes: a photo's identity is the SHA-256 of its bytes."""

from __future__ import annotations

import hashlib
import os

from daemon.core.files import open_regular

CHUNK = 1 << 20


def hash_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """SHA-256 hex digest and size of a file read in place (1 MB chunks, never written)."""
    digest = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    size = 0
    with open_regular(path, 0) as fh:
        while n := fh.readinto(buf):
            digest.update(view[:n])
            size += n
    return digest.hexdigest(), size
