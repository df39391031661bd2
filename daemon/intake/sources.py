"""Where photos come from: watched folders and camera cards, and when a file is ready.

The truth is a scan; file events are hints. One watchdog Observer watches every root
(:mod:`~daemon.intake.watcher`); its hints mark folders dirty here, and dirty folders are
listed again (:mod:`~daemon.intake.scan`). What a listing finds waits in the
:class:`~daemon.intake.settler.Settler` until it is complete and quiet, then is handed on as a
:class:`~daemon.intake.events.SettledFile`. Cards (:mod:`~daemon.intake.roots`) are folders with
``DCIM/`` that appear under a mount root; a new mount fires no file events, so they are found by
polling the mount table and listing the mount roots, scanned whole, and announced imported
once every file has been handed on.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from daemon.core import log
from daemon.core.aio import wait_event
from daemon.core.files import is_photo_or_track
from daemon.intake.events import CardImported, SourceEvent
from daemon.intake.roots import Rescans, Roots
from daemon.intake.scan import hidden_below, listing
from daemon.intake.settler import TICK_SECONDS, Settler
from daemon.intake.watcher import Hints, Watcher

MOUNT_POLL_SECONDS = 2.0
RESCAN_SECONDS = 3600.0  # full rescans of watch folders: the truth behind the events
# Settled files waiting in the queue at most: the rest of a 50,000-file card stays a candidate
# (a few hundred bytes each) and is read only when the consumer has room, so the queue never
# holds a card's worth of events and the completeness checks keep pace with the copying.
MAX_QUEUED = 1024


class Sources:
    """Watched folders and mount roots, turned into a queue of :data:`SourceEvent`.

    ``await start()``, then ``await next_event()`` in a loop; ``add_root``/``remove_root`` at
    runtime; ``status()`` per root; ``await stop()``.
    """

    def __init__(
        self,
        watch: Iterable[Path] = (),
        mount_roots: Iterable[Path] = (),
        extra: Iterable[Path] | None = None,
        settle_seconds: float = 5.0,
        batch_quiet_seconds: float = 30.0,
        poll_interval: float = 0.0,
        ignore: Iterable[Path] | None = None,
        give_up_seconds: float | None = None,
        mount_poll_seconds: float = MOUNT_POLL_SECONDS,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self.poll_interval = poll_interval
        self.max_queued = max_queued
        self.mount_poll_seconds = mount_poll_seconds
        self.ignore = tuple(Path(p).resolve() for p in ignore or [])
        self.settler = Settler(settle_seconds, batch_quiet_seconds, give_up_seconds)
        self._events: asyncio.Queue[SourceEvent] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._rescans = Rescans(self._wake)
        self._roots = Roots(self.settler, self._rescans, self._events.put_nowait)
        for p in [*watch, *(extra or [])]:
            self._roots.add(Path(p).resolve(), "watch", Path(os.path.abspath(p)))
        for p in mount_roots:
            self._roots.add(Path(p).resolve(), "mounts", Path(os.path.abspath(p)))
        self._mounts_due = asyncio.Event()
        self._started = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._watcher: Watcher | None = None
        self.log = log.get("sources")

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._watcher = Watcher(asyncio.get_running_loop(), self._on_hints, self.poll_interval)
        self._watcher.start()
        self._roots.watcher = self._watcher
        self._tasks = [
            asyncio.create_task(self._settle_loop(), name="sources-settle"),
            asyncio.create_task(self._mounts_loop(), name="sources-mounts"),
            asyncio.create_task(self._rescan_loop(), name="sources-rescan"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._watcher is not None:
            await asyncio.to_thread(self._watcher.stop)

    @property
    def polling(self) -> bool:
        return bool(self._watcher and self._watcher.polling)

    async def add_root(self, path: Path, card_root: bool = False) -> None:
        given, path = Path(os.path.abspath(path)), Path(path).resolve()
        kind = "mounts" if card_root else "watch"
        if not self._roots.add(path, kind, given):
            return
        self.log.info("root_added", root=str(path), kind=kind)
        await self._roots.check()
        self._wake.set()

    async def remove_root(self, path: Path) -> None:
        found = self._roots.find(Path(os.path.abspath(path))) or Path(path).resolve()
        root = self._roots.remove(found)
        if root is not None:
            self.log.info("root_removed", root=str(root.path))

    # -- what the daemon reads ----------------------------------------------------------------

    async def next_event(self) -> SourceEvent:
        return await self._events.get()

    def recheck(self, path: Path) -> None:
        """Offer ``path`` again (the wiring could not read it, e.g. the card went mid-copy)."""
        self.settler.recheck(Path(path))
        self._rescans.mark(Path(path).parent, False)
        self._roots.offered_again(Path(path))

    def still_imported(self, event: CardImported) -> bool:
        """Whether a CardImported taken from the queue still holds: no file of the card was
        offered again (or newly found) since it was sent."""
        return self._roots.still_imported(event)

    def status(self) -> dict[str, str]:
        """Root or card → its state in words (watching, N settling, importing N left, ...)."""
        seconds = self._watcher.poll_seconds if self._watcher else 0.0
        return self._roots.status(f" (polling every {seconds:g} s)" if self.polling else "")

    def settling_under(self, root: str) -> int:
        """Files under ``root`` still settling (being written, or not yet looked at)."""
        return self.settler.pending_under(Path(root))

    def missing_roots(self) -> set[str]:
        """The roots that are not there right now (a drive unplugged, a mount root gone)."""
        return self._roots.missing()

    async def wait_settled(self) -> None:
        """Return once the first scan is done and nothing is pending (for ``run --once``).

        "Nothing pending" here is the sources' side only: no candidate, no folder to rescan,
        and the event queue empty. The queue is empty as soon as the consumer has *taken* the
        last event, possibly before it has acted on it, so the caller must also wait for its
        own in-flight work (the event it is handling, batches it has not flushed) before it
        treats the intake as finished.
        """
        await self._started.wait()
        while self.settler.candidates or self._rescans or not self._events.empty():
            await asyncio.sleep(TICK_SECONDS)

    # -- hints and rescans --------------------------------------------------------------------

    def _on_hints(self, hints: Hints) -> None:
        for path, is_dir in hints.items():
            self._hint(path, is_dir)

    def _hint(self, path: Path, is_dir: bool) -> None:
        if any(path == i or i in path.parents for i in self.ignore):
            return
        owner = self._roots.owner(path)
        if owner is None:
            if self._roots.under_mount_root(path):
                self._mounts_due.set()  # a folder came or went under a mount root
            return
        if hidden_below(path, owner[0]):
            return
        if is_dir:
            self._rescans.mark(path, True)
        elif is_photo_or_track(path.name):
            self._rescans.mark(path.parent, False)

    async def _rescan_dirty(self) -> None:
        for folder, recursive in self._rescans.take().items():
            owner = self._roots.owner(folder)
            if owner is None:
                continue
            found = await asyncio.to_thread(listing, folder, recursive, self.ignore)
            now = time.monotonic()
            for path, entries in found:  # in path order: 100GOPRO first
                if self._roots.owner(path) == owner:  # not removed meanwhile
                    self.settler.sync_folder(path, entries, *owner, now)
            if recursive:
                self._roots.scanned(folder)

    # -- the loops ----------------------------------------------------------------------------

    async def _settle_loop(self) -> None:
        await self._guarded("mounts", self._roots.check)
        await self._guarded("scan", self._rescan_dirty)
        self._started.set()
        last_step = time.monotonic()
        while True:
            self._wake.clear()
            delay = TICK_SECONDS if self._rescans else self.settler.next_delay(time.monotonic())
            # A batch deadline far off must not delay a new hint.
            await wait_event(self._wake, delay)
            # At most one step per tick, however many events arrive: no busy looping.
            pause = TICK_SECONDS - (time.monotonic() - last_step)
            if pause > 0:
                await asyncio.sleep(pause)
            last_step = time.monotonic()
            await self._guarded("settle", self._settle_step)

    async def _settle_step(self) -> None:
        await self._rescan_dirty()
        # Back-pressure: no more files read (and handed on) than the queue has room for.
        room = self.max_queued - self._events.qsize()
        self.settler.look_again(time.monotonic())
        looks = await asyncio.to_thread(Settler.look, self.settler.snapshot(room))
        now = time.monotonic()
        ready: list[SourceEvent] = [*self.settler.apply(looks, now), *self.settler.batches(now)]
        for event in ready:
            self._events.put_nowait(event)
        self._roots.announce_cards()

    async def _guarded(self, what: str, step: Callable[[], Any]) -> None:
        """One step of a loop; a surprise is logged and the loop goes on (never dies silently,
        which would stop all intake)."""
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.log.error("sources_step_failed", step=what, reason=repr(exc), exc_info=True)
            await asyncio.sleep(self.mount_poll_seconds)

    async def _mounts_loop(self) -> None:
        while True:
            await wait_event(self._mounts_due, self.mount_poll_seconds)
            self._mounts_due.clear()
            await self._guarded("mounts", self._roots.check)

    async def _rescan_loop(self) -> None:
        while True:
            await asyncio.sleep(RESCAN_SECONDS)
            for path in self._roots.present_watch_roots():
                self._rescans.mark(path, True)
