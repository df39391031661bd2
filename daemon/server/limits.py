"""What the server accepts from one client: object sizes, zip contents, how slowly a body may come.

The server is for trials and tests, but it listens on a socket: a client that sends too much,
a zip that unpacks to far more than it weighs, or a body that trickles in must cost a bounded
amount of disk, memory and time, and get a reply that says which limit it hit.
"""

from __future__ import annotations

import asyncio
import time
import zipfile

from aiohttp import StreamReader

from daemon.server import validate
from daemon.server.config import ServerConfig
from daemon.server.validate import Rejected

RATIO_FREE = 1 << 20  # entries that unpack to less than this are not judged by their ratio


class BodyTooLarge(Exception):
    """The body would make an object larger than its kind may be (HTTP 413)."""


class BodyTooSlow(Exception):
    """The body stalled or trickled in below the floor (HTTP 408, the connection is closed)."""


def object_cap(config: ServerConfig, key: str) -> tuple[int, str]:
    """The most bytes an uploaded object may hold, and what kind of object it is.

    >>> object_cap(ServerConfig(max_image_bytes=10), "mly_tools_x.jpg")
    (10, 'an image')
    >>> object_cap(ServerConfig(max_zip_bytes=20), "mly_tools_x.zip")
    (20, 'a zip')
    >>> object_cap(ServerConfig(max_manifest_bytes=30), "uuid_x.json")
    (30, 'a manifest')
    """
    if validate.is_jpeg_key(key):
        return config.max_image_bytes, "an image"
    if key.lower().endswith(".zip"):
        return config.max_zip_bytes, "a zip"
    return config.max_manifest_bytes, "a manifest"


def too_large(key: str, size: int, config: ServerConfig) -> BodyTooLarge:
    cap, kind = object_cap(config, key)
    return BodyTooLarge(
        f"{key}: the upload would hold {size} bytes or more; this server takes at most "
        f"{cap} bytes for {kind}"
    )


class BodyPace:
    """Reads a body and cuts it when it comes too slowly.

    Only the time spent waiting for the client counts (not the server's own pauses, such as
    its bandwidth cap): each ``window`` seconds of waiting must bring at least ``floor`` bytes
    per second of it, and at least one byte.
    """

    def __init__(self, window: float, floor: float) -> None:
        self.window = window
        self.need = max(1, int(floor * window))
        self.waited = 0.0
        self.got = 0

    async def read(self, content: StreamReader, size: int) -> bytes:
        """Up to ``size`` bytes, b"" at the end of the body; BodyTooSlow when below the floor."""
        while True:
            started = time.monotonic()
            chunk: bytes | None = None
            try:
                async with asyncio.timeout(self.window - self.waited):
                    chunk = await content.read(size)
            except TimeoutError:
                pass
            self.waited += time.monotonic() - started
            if chunk is not None:
                self.got += len(chunk)
            if self.waited >= self.window:
                self._judge()
            if chunk is not None:
                return chunk

    def _judge(self) -> None:
        if self.got < self.need:
            raise BodyTooSlow(
                f"the body came too slowly: {self.got} bytes in {self.waited:.1f} s "
                f"(this server wants at least {self.need} bytes every {self.window:g} s)"
            )
        self.waited, self.got = 0.0, 0


class ZipBudget:
    """What unpacking one zip may write: checked from its directory before anything is written,
    and again while reading, since the directory is the sender's word."""

    def __init__(self, config: ServerConfig, name: str) -> None:
        self.config = config
        self.name = name
        self.left = config.max_unzipped_bytes

    def check_directory(self, entries: list[zipfile.ZipInfo]) -> None:
        """Refuse from the declared sizes: any entry too large or too compressed, or too much
        in all."""
        for entry in entries:
            self._check_entry(entry)
        total = sum(entry.file_size for entry in entries)
        if total > self.config.max_unzipped_bytes:
            raise Rejected(
                f"{self.name}: its images unpack to {total} bytes, more than the "
                f"{self.config.max_unzipped_bytes} this server takes from one zip"
            )

    def _check_entry(self, entry: zipfile.ZipInfo) -> None:
        cap = self.config.max_image_bytes
        if entry.file_size > cap:
            raise Rejected(
                f"zip entry {entry.filename}: {entry.file_size} bytes unpacked, more than the "
                f"{cap} this server takes for an image"
            )
        ratio = entry.file_size / max(entry.compress_size, 1)
        if entry.file_size > RATIO_FREE and ratio > self.config.max_zip_ratio:
            raise Rejected(
                f"zip entry {entry.filename}: {entry.compress_size} bytes unpack to "
                f"{entry.file_size} ({ratio:.0f} times, more than {self.config.max_zip_ratio:g}): "
                "refused as a zip bomb"
            )

    def take(self, entry: zipfile.ZipInfo, written: int, block: int) -> None:
        """Before writing ``block`` more bytes of ``entry`` (``written`` so far)."""
        if written + block > min(entry.file_size, self.config.max_image_bytes):
            raise Rejected(
                f"zip entry {entry.filename}: unpacks to more than the {entry.file_size} "
                "bytes its header declares"
            )
        if block > self.left:
            raise Rejected(
                f"{self.name}: its images unpack to more than the "
                f"{self.config.max_unzipped_bytes} bytes this server takes from one zip"
            )
        self.left -= block
