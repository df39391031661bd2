"""An image's upload body: its tagged header from memory, the rest streamed from its file.

The Mapillary description goes into the photo's EXIF header, so the bytes sent differ from
the file only there: ``head`` (the file's first bytes with the new APP1 segment, kilobytes)
is built in memory and the rest of the file is read from disk as it is sent, a block at a
time in a worker thread. A photo of any size costs one block of memory per upload slot. The
MD5 that names the upload is computed by a first pass over the same bytes (:meth:`md5`).

The body holds its file open from the first pass to the end of the upload (so a retry reads
the file that was measured, even if it was renamed meanwhile) and checks at every block that
it is still that file unchanged (size and mtime): bytes other than those the MD5 promises are
never sent. :meth:`FileBody.close` never waits: called during a read in a thread (an upload
cancelled mid-read), the file is closed by that read as it ends, so a ``finally`` on the loop
closes it for certain, with no await a second cancel could cut short.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import threading
from collections.abc import AsyncIterator
from types import TracebackType

from daemon.core.files import open_regular

READ_BLOCK = 1 << 20

Identity = tuple[int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns


class Unreadable(Exception):
    """An image that cannot be sent as it was hashed; ``str(exc)`` names the file and why."""


class Changed(Exception):
    """The file is no longer the one measured (written to, truncated, replaced)."""


def identity(st: os.stat_result) -> Identity:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class FileBody:
    """``head``, then bytes ``[start, end)`` of the open file ``fh``: what one image upload
    sends (a ``daemon.mapillary.upload_service.Body``). Close it when the upload is over."""

    def __init__(
        self, path: str, head: bytes, start: int, end: int, fh: io.FileIO, seen: Identity
    ) -> None:
        self.path = path
        self.head = head
        self.start = start
        self.end = end
        self._fh = fh
        self._seen = seen
        self._lock = threading.Lock()  # guards the two below, never held during a read
        self._reading = 0  # reads in flight (in threads)
        self._closing = False

    @classmethod
    def open(
        cls, path: str, head: bytes, start: int, end: int, expected: os.stat_result
    ) -> FileBody:
        """Open ``path``; Changed when it is no longer the file ``expected`` describes
        (blocking; OSError, NotRegularFile when it cannot be opened)."""
        fh = open_regular(path, 0)
        body = cls(path, head, start, end, fh, identity(expected))
        try:
            body._check()
        except BaseException:
            fh.close()
            raise
        return body

    @property
    def size(self) -> int:
        return len(self.head) + self.end - self.start

    def close(self) -> None:
        """Close the file now, or (a read in flight) as soon as that read ends."""
        with self._lock:
            self._closing = True
            idle = self._reading == 0
        if idle:
            self._fh.close()

    def __enter__(self) -> FileBody:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _check(self) -> None:
        if identity(os.fstat(self._fh.fileno())) != self._seen:
            raise Changed(self.path)

    def _block(self, pos: int, count: int) -> bytes:
        """``count`` bytes of the file from ``pos``, from the file measured (blocking)."""
        with self._lock:
            if self._closing:
                raise ValueError(f"upload body of {self.path} read after its close")
            self._reading += 1
        try:
            data = os.pread(self._fh.fileno(), count, pos)
            # After the read: a write during it changed the mtime, so these bytes are suspect.
            self._check()
        finally:
            with self._lock:
                self._reading -= 1
                last = self._closing and self._reading == 0
            if last:  # closed while we read: ours to close
                self._fh.close()
        if len(data) != count:
            raise Changed(self.path)
        return data

    def md5(self) -> str:
        """The MD5 (hex) of the whole body, reading the file once (blocking; OSError, Changed)."""
        digest = hashlib.md5(self.head)
        for pos in range(self.start, self.end, READ_BLOCK):
            digest.update(self._block(pos, min(READ_BLOCK, self.end - pos)))
        return digest.hexdigest()

    async def chunks(self, offset: int, chunk_size: int) -> AsyncIterator[bytes | memoryview]:
        """The body from ``offset`` (a resumed upload skips what the server holds), in pieces
        of at most ``chunk_size``; Unreadable when the file changed or cannot be read."""
        head = memoryview(self.head)
        for at in range(min(offset, len(head)), len(head), chunk_size):
            yield head[at : at + chunk_size]
        pos = self.start + max(0, offset - len(head))
        while pos < self.end:
            try:
                block = await asyncio.to_thread(self._block, pos, min(READ_BLOCK, self.end - pos))
            except Changed:
                raise Unreadable(f"changed while being uploaded: {self.path}") from None
            except OSError as exc:
                why = exc.strerror or str(exc)
                raise Unreadable(f"{self.path}: cannot read: {why}") from None
            view = memoryview(block)
            for at in range(0, len(view), chunk_size):
                yield view[at : at + chunk_size]
            pos += len(block)
