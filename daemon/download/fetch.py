"""One image to disk: fetch the thumbnail into ``<id>.jpg.part``, check it, tag it, rename it.

The ``.part`` file only ever holds bytes as the server sent them, so a retry (or a rerun after a
crash) asks for the rest with a ``Range`` request; a server that ignores it simply sends the
whole file again. Only a complete JPEG within the size cap is kept: its position, capture time
and compass angle are written into its EXIF and the result appears under its final name by an
atomic rename. A file under its final name is therefore always finished, and a rerun skips it.
No access token is sent with thumbnails: they are signed URLs, often on another host.

Each try has a deadline besides the per-read timeout, so that a server that drip-feeds bytes
cannot hold a file for ever: ``max(min_seconds, size / min_rate)``, the size being what the
reply announces (or, without a length, what has arrived so far). A try that runs past it is a
retriable failure that does not count as progress, so the retry budget ends it.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import piexif

from daemon.core.durable import put_in_place
from daemon.download.search import RemoteImage, log_retry
from daemon.mapillary.errors import RejectedError
from daemon.mapillary.http import TRANSPORT_ERRORS, connection_failure, reply_failure
from daemon.mapillary.retry import Failure, RetryPolicy, Verdict, retrying
from daemon.media import exif

DEFAULT_MAX_BYTES = 64 * 2**20  # originals of 360° cameras reach ~30 MB; thumbnails ~1 MB
DEFAULT_MIN_RATE = 50_000.0  # bytes/s a file must average once past its first MIN_SECONDS
DEFAULT_MIN_SECONDS = 60.0
CHUNK = 64 * 1024
PART = ".part"
JPEG_START = b"\xff\xd8\xff"  # SOI and the next marker's first byte
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


def final_path(out: Path, image: RemoteImage) -> Path:
    """``out/<id>.jpg``; the id was checked to be digits, so this cannot leave ``out``."""
    if not image.id.isascii() or not image.id.isdigit():
        raise ValueError(f"image id {image.id!r} is not digits")
    return out / f"{image.id}.jpg"


def is_done(final: Path) -> bool:
    """True when an earlier run finished this image (a whole JPEG under its final name)."""
    return final.is_file() and exif.is_complete_jpeg(final)


def part_path(final: Path) -> Path:
    return final.with_name(final.name + PART)


def temp_path(final: Path) -> Path:
    """Where the tagged bytes are written just before the rename (hidden from watchers)."""
    return final.with_name(f".{final.name}.tmp")


def exif_update(image: RemoteImage) -> Any:
    """The EXIF edit for a download: GPS position, heading and time; capture time in UTC."""
    moment = (
        datetime.fromtimestamp(image.captured_at / 1000, UTC)
        if image.captured_at is not None
        else None
    )
    gps = exif.gps_tags(image.lat, image.lon, direction=image.compass_angle, utc_time=moment)
    times: dict[int, Any] = {}
    if moment is not None:
        times = exif.capture_time_tags(moment, subsec=f"{moment.microsecond // 1000:03d}")

    def update(data: dict[str, Any]) -> None:
        data["GPS"] = gps
        ifd = data.setdefault("Exif", {})
        for stale in (piexif.ExifIFD.SubSecTimeOriginal, piexif.ExifIFD.OffsetTimeOriginal):
            ifd.pop(stale, None)
        ifd.update(times)

    return update


@dataclass(frozen=True)
class Pace:
    """How slow a try may be: ``min_rate`` bytes/s, but never cut before ``min_seconds``.

    >>> Pace(50_000, 60.0).allowed(None), Pace(50_000, 60.0).allowed(10_000_000)
    (60.0, 200.0)
    """

    min_rate: float = DEFAULT_MIN_RATE
    min_seconds: float = DEFAULT_MIN_SECONDS

    def allowed(self, size: int | None) -> float:
        """Seconds a try may take to bring ``size`` bytes (None: not known yet)."""
        return max(self.min_seconds, (size or 0) / self.min_rate)


@dataclass
class _Try:
    """What one try has got so far (for the progress and too-slow verdicts)."""

    have: int
    offset: int = 0
    received: int = 0
    length: int | None = None  # the body's announced length, once the reply is in


class Fetcher:
    """Downloads thumbnails with one session, under the retry policy, the size cap and the
    deadline of each try."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        policy: RetryPolicy | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        pace: Pace | None = None,
    ) -> None:
        self.session = session
        self.policy = policy or RetryPolicy()
        self.max_bytes = max_bytes
        self.pace = pace or Pace()
        self.bytes_received = 0

    async def download(self, image: RemoteImage, out: Path) -> Path:
        """Fetch, check, tag and rename one image; a MapillaryError if it fails (a
        RejectedError says why, for the summary).

        The ``.part`` file is kept after a transfer failure (the next try resumes it) and
        removed when the content is refused (too large, not a JPEG).
        """
        final = final_path(out, image)
        part = part_path(final)
        label = f"image {image.id}"
        try:
            await retrying(
                lambda: self._attempt(image.thumb_url, part, label),
                self.policy,
                label,
                on_retry=log_retry(label),
            )
            await asyncio.to_thread(_finish, image, part, final, label)
        except RejectedError:
            part.unlink(missing_ok=True)
            raise
        except exif.MediaError as exc:
            part.unlink(missing_ok=True)
            raise RejectedError(
                f"{label}: the thumbnail is a damaged JPEG: {exc}", reason="not a JPEG"
            ) from None
        return final

    async def _attempt(self, url: str, part: Path, label: str) -> None:
        now = time.monotonic()
        got = _Try(_usable_part(part))
        deadline = asyncio.timeout(self.pace.allowed(None))
        try:
            async with deadline:
                await self._transfer(url, part, label, got, deadline)
        except TimeoutError:
            if not deadline.expired():  # not ours (transport timeouts became Failures inside)
                raise
            seconds = time.monotonic() - now
            raise Failure(
                Verdict.RETRY,
                f"too slow: {got.received} bytes in {seconds:.1f} s (the floor is "
                f"{self.pace.min_rate / 1000:g} kB/s after the first {self.pace.min_seconds:g} s)",
            ) from None

    async def _transfer(
        self, url: str, part: Path, label: str, got: _Try, deadline: asyncio.Timeout
    ) -> None:
        started = asyncio.get_running_loop().time()  # the clock the deadline is set on
        headers = {"Range": f"bytes={got.have}-"} if got.have else {}
        try:
            async with self.session.get(url, headers=headers) as response:
                if response.status not in (200, 206, 416):
                    raise await reply_failure(response, token_sent=False)
                got.offset = self._start(response, got.have, label)
                if got.offset < 0:  # what we hold is not a prefix the server knows: start over
                    part.unlink(missing_ok=True)
                    raise Failure(
                        Verdict.RETRY,
                        f"the server did not resume at byte {got.have}; starting over",
                    )
                got.length = response.content_length
                deadline.reschedule(started + self.pace.allowed(got.length))
                await self._write_body(response, part, label, got, deadline, started)
        except TRANSPORT_ERRORS as exc:
            # Progress means holding more than before: a server that restarts from byte 0 and
            # cuts early every time must still run out of attempts.
            raise connection_failure(exc, progressed=got.offset + got.received > got.have) from None

    async def _write_body(
        self,
        response: aiohttp.ClientResponse,
        part: Path,
        label: str,
        got: _Try,
        deadline: asyncio.Timeout,
        started: float,
    ) -> None:
        offset = got.offset
        head = b"" if offset == 0 else JPEG_START
        with open(part, "r+b" if offset else "wb") as fh:
            fh.seek(offset)
            fh.truncate()
            async for chunk in response.content.iter_chunked(CHUNK):
                if len(head) < len(JPEG_START):
                    head += chunk[: len(JPEG_START) - len(head)]
                    if not JPEG_START.startswith(head):
                        _not_jpeg(chunk, label)
                got.received += len(chunk)
                self.bytes_received += len(chunk)
                if offset + got.received > self.max_bytes:
                    raise _too_large(label, offset + got.received, self.max_bytes)
                fh.write(chunk)
                if got.length is None:  # no length announced: judge by what came so far
                    deadline.reschedule(started + self.pace.allowed(got.received))

    def _start(self, response: aiohttp.ClientResponse, have: int, label: str) -> int:
        """Where this reply's body goes in the file: 0, ``have``, or -1 when the server did not
        resume where asked (the part is then dropped); raises for a bad reply."""
        if response.status == 200:
            offset = 0
        elif response.status == 206 and have:
            offset = _range_start(response.headers.get("Content-Range", ""))
            if offset != have:
                return -1
        elif response.status == 416:
            return -1
        else:
            raise Failure(Verdict.RETRY, f"HTTP {response.status} without a range asked for")
        length = response.content_length
        if length is not None and offset + length > self.max_bytes:
            raise _too_large(label, offset + length, self.max_bytes)
        return offset


def _range_start(header: str) -> int:
    """
    >>> _range_start("bytes 100-199/200"), _range_start("nonsense")
    (100, -1)
    """
    match = _CONTENT_RANGE.match(header.strip())
    return int(match.group(1)) if match else -1


def _usable_part(part: Path) -> int:
    """Bytes of an earlier try worth resuming: only a file that starts like a JPEG."""
    try:
        with open(part, "rb") as fh:
            head = fh.read(3)
            size = os.fstat(fh.fileno()).st_size
    except FileNotFoundError:
        return 0
    if head != JPEG_START:
        part.unlink(missing_ok=True)
        return 0
    return size


def _not_jpeg(chunk: bytes, label: str) -> None:
    start = chunk[:16].decode("latin-1").encode("unicode_escape").decode()
    raise RejectedError(
        f"{label}: the thumbnail is not a JPEG (it starts with '{start}')", reason="not a JPEG"
    )


def _too_large(label: str, size: int, cap: int) -> RejectedError:
    return RejectedError(
        f"{label}: the thumbnail is larger than the cap of {cap} bytes ({size} or more)",
        reason="too large",
    )


def _finish(image: RemoteImage, part: Path, final: Path, label: str) -> None:
    """Check the finished ``.part``, tag it and put it under ``final``; blocking."""
    if not exif.is_complete_jpeg(part):
        raise RejectedError(f"{label}: the thumbnail is not a complete JPEG", reason="not a JPEG")
    _write_final(final, exif.updated_bytes(part, exif_update(image)))
    part.unlink(missing_ok=True)


def _write_final(final: Path, data: bytes) -> None:
    """``data`` under ``final`` all at once: a hidden temp beside it, then a rename.

    No fsync per file (it costs more than the download on a busy disk): a file that a power
    cut left empty or short is not a complete JPEG, and the next run fetches it again.
    """
    tmp = temp_path(final)  # a fixed name, so that a rerun finds what a crash left
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    put_in_place(tmp, final)
