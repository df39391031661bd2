"""A whole download: search the box, fetch every image in parallel, write the index.

The job knows nothing about terminals: it reports through a :class:`Listener` (the command
turns that into a progress bar and per-image lines), and returns an :class:`Outcome` with the
counts and timings a summary needs.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from daemon import __version__
from daemon.core.durable import fsync_dir
from daemon.download.box import Box
from daemon.download.fetch import (
    DEFAULT_MAX_BYTES,
    Fetcher,
    Pace,
    final_path,
    is_done,
    part_path,
    temp_path,
)
from daemon.download.index import write_index
from daemon.download.search import BoxSearch, Filters, RemoteImage, SearchResult
from daemon.mapillary.errors import MapillaryError, RejectedError
from daemon.mapillary.retry import RetryPolicy

DEFAULT_CONCURRENCY = 8
SOCK_TIMEOUT = 30.0  # a connection or a body that stalls this long is retried


@dataclass(frozen=True)
class Options:
    box: Box
    out: Path
    size: str = "1024"
    max_results: int | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    filters: Filters = field(default_factory=Filters)
    max_bytes: int = DEFAULT_MAX_BYTES
    pace: Pace = field(default_factory=Pace)


class Listener:
    """What a job tells as it goes; the default tells nobody."""

    def searched(self, found: int) -> None:
        """``found`` distinct images are known so far."""

    def planned(self, total: int) -> None:
        """The search is over; ``total`` images will be on disk when all goes well."""

    def done(self, image: RemoteImage, fetched: bool) -> None:
        """One image is on disk (``fetched`` False: it was there from an earlier run)."""

    def failed(self, line: str, reason: str) -> None:
        """One image (or search) failed or was refused: the line to show, the reason to count."""


@dataclass
class Outcome:
    search: SearchResult
    fetched: list[RemoteImage] = field(default_factory=list)
    already: list[RemoteImage] = field(default_factory=list)
    failed: int = 0
    bytes_received: int = 0
    search_seconds: float = 0.0
    fetch_seconds: float = 0.0
    index: Path | None = None

    @property
    def images_per_second(self) -> float:
        return len(self.fetched) / self.fetch_seconds if self.fetch_seconds > 0 else 0.0


def session(concurrency: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency + 1),
        timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=SOCK_TIMEOUT, sock_read=SOCK_TIMEOUT
        ),
        headers={"User-Agent": f"mapillary-daemon/{__version__}"},
    )


async def download_box(
    graph: str,
    token: str,
    options: Options,
    *,
    policy: RetryPolicy | None = None,
    listener: Listener | None = None,
) -> Outcome:
    """Download every image of ``options.box`` into ``options.out``; AuthError on a bad token.

    Images already under their final name are not fetched again; each failure is told to the
    listener and counted, the others go on.
    """
    tell = listener or Listener()
    policy = policy or RetryPolicy()
    options.out.mkdir(parents=True, exist_ok=True)
    async with session(options.concurrency) as http:
        started = time.monotonic()
        search = BoxSearch(
            http,
            graph,
            token,
            options.size,
            filters=options.filters,
            max_results=options.max_results,
            policy=policy,
            on_found=tell.searched,
        )
        found = await search.run(options.box)
        outcome = Outcome(found, search_seconds=time.monotonic() - started)
        for bad in found.bad:
            outcome.failed += 1
            tell.failed(f"{bad.label}: {bad.message}", bad.reason)
        for line in found.failed:
            tell.failed(line, "search failed")
        tell.planned(len(found.images))
        started = time.monotonic()
        fetcher = Fetcher(http, policy, options.max_bytes, options.pace)
        await _fetch_all(fetcher, found.images, options, outcome, tell)
        outcome.fetch_seconds = time.monotonic() - started
        outcome.bytes_received = fetcher.bytes_received
    on_disk = sorted(outcome.fetched + outcome.already, key=lambda i: (i.captured_at or 0, i.id))
    outcome.index = write_index(options.out, ((i, f"{i.id}.jpg") for i in on_disk))
    fsync_dir(options.out)
    return outcome


async def _fetch_all(
    fetcher: Fetcher,
    images: list[RemoteImage],
    options: Options,
    outcome: Outcome,
    tell: Listener,
) -> None:
    queue: asyncio.Queue[RemoteImage] = asyncio.Queue()
    done = await asyncio.to_thread(_finished_before, images, options.out)
    for image in images:
        if image.id in done:
            outcome.already.append(image)
            tell.done(image, fetched=False)
        else:
            queue.put_nowait(image)

    async def worker() -> None:
        while not queue.empty():
            image = queue.get_nowait()
            try:
                await fetcher.download(image, options.out)
            except MapillaryError as exc:
                outcome.failed += 1
                tell.failed(str(exc), _counted_as(exc))
            except OSError as exc:  # our disk, not the server: say which file
                outcome.failed += 1
                where = exc.filename or options.out
                tell.failed(
                    f"image {image.id}: cannot write {where}: {exc.strerror}", "cannot write"
                )
            else:
                outcome.fetched.append(image)
                tell.done(image, fetched=True)

    async with asyncio.TaskGroup() as group:
        for _ in range(min(options.concurrency, queue.qsize())):
            group.create_task(worker())


def _counted_as(exc: MapillaryError) -> str:
    """The reason the summary counts a failed image under: what refused it, else the
    transfer itself failed (still failing after the retries: a rerun may get it)."""
    return exc.reason if isinstance(exc, RejectedError) else "download failed"


def _finished_before(images: list[RemoteImage], out: Path) -> set[str]:
    """Ids of the images an earlier run finished; their leftover ``.part`` files go, and so
    does any temp file a crash left between tagging and renaming."""
    done = set()
    for image in images:
        final = final_path(out, image)
        temp_path(final).unlink(missing_ok=True)
        if is_done(final):
            part_path(final).unlink(missing_ok=True)
            done.add(image.id)
    return done
