"""Where photos come from: watched folders and camera cards, and when a file is ready.

The truth is a scan; file events are hints. One watchdog Observer watches every root; its thread
only hands paths to the asyncio loop (``call_soon_threadsafe``), where they become candidates.
A candidate is *settled* when it is complete (a JPEG ending in EOI, a GPX ending in ``</gpx>``) and
its size and mtime have not changed for ``settle_seconds``. Cards are folders with ``DCIM/`` that
appear under a mount root; they are found by listing the mount roots (a new mount fires no file
events), identified by file-system UUID or label where the system tells, scanned whole, and
announced imported once every file of theirs has been handed on.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from daemon import log
from daemon.media.exif import is_complete_jpeg

PHOTO_SUFFIXES = {".jpg", ".jpeg"}
TRACK_SUFFIXES = {".gpx"}
TEMP_SUFFIXES = {".tmp", ".part", ".partial", ".crdownload", ".swp"}
TICK_SECONDS = 0.5  # settling checks, only while something is pending
MOUNT_POLL_SECONDS = 2.0
RESCAN_SECONDS = 300.0  # full rescans of watch folders: the truth behind the events
STALE_FACTOR = 6  # an incomplete file unchanged this many settle periods goes on (to be judged)


@dataclass(frozen=True)
class SettledFile:
    path: Path
    root: Path
    kind: str  # "watch" or "card"
    size: int
    mtime: float
    complete: bool = True


@dataclass(frozen=True)
class CardInserted:
    root: Path
    card_id: str


@dataclass(frozen=True)
class CardImported:
    root: Path
    card_id: str


@dataclass(frozen=True)
class CardRemoved:
    root: Path
    card_id: str


@dataclass
class _Candidate:
    root: Path
    kind: str
    size: int = -1
    mtime: float = -1.0
    stable_since: float = 0.0


@dataclass
class _Card:
    root: Path
    card_id: str
    scanned: bool = False
    announced_done: bool = False


@dataclass
class _Root:
    path: Path
    kind: str  # "watch" (a folder read in place) or "mounts" (a folder where cards appear)
    watch: Any = None
    cards: dict[Path, _Card] = field(default_factory=dict)


def wanted(name: str) -> bool:
    """Photos and tracks, minus dotfiles and temporary names.

    >>> [wanted(n) for n in ("G001.JPG", ".G001.JPG", "a.jpg.part", "t.gpx", "~x.jpg", "a.png")]
    [True, False, False, True, False, False]
    """
    if name.startswith((".", "~")):
        return False
    suffix = os.path.splitext(name)[1].lower()
    if suffix in TEMP_SUFFIXES:
        return False
    return suffix in PHOTO_SUFFIXES or suffix in TRACK_SUFFIXES


def scan(folder: Path, ignore: tuple[Path, ...] = ()) -> Iterator[Path]:
    """Every wanted file under ``folder``, iteratively (no recursion limit, little memory)."""
    stack = [folder]
    while stack:
        current = stack.pop()
        if any(current == i or i in current.parents for i in ignore):
            continue
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        elif entry.is_file() and wanted(entry.name):
                            yield Path(entry.path)
                    except OSError:
                        continue
        except OSError:
            continue


def is_complete(path: Path) -> bool:
    if path.suffix.lower() in TRACK_SUFFIXES:
        try:
            with open(path, "rb") as fh:
                fh.seek(max(0, os.fstat(fh.fileno()).st_size - 256))
                return b"</gpx>" in fh.read()
        except OSError:
            return False
    return is_complete_jpeg(path)


def card_identity(mount: Path) -> str:
    """The file-system UUID (or label) of the device mounted at ``mount``, else its folder name."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return mount.name
    device = None
    for line in lines:
        parts = line.split(" - ")
        left = parts[0].split()
        if len(left) > 4 and left[4].replace("\\040", " ") == str(mount) and len(parts) > 1:
            right = parts[1].split()
            device = right[1] if len(right) > 1 else None
    if device and device.startswith("/dev/"):
        for kind in ("by-uuid", "by-label"):
            folder = Path("/dev/disk") / kind
            with contextlib.suppress(OSError):
                for link in folder.iterdir():
                    if os.path.realpath(link) == os.path.realpath(device):
                        return f"{kind[3:]}:{link.name}"
    return mount.name


class _Handler(FileSystemEventHandler):
    """Runs on the observer thread: only passes paths on to the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, hint: Any) -> None:
        self._loop = loop
        self._hint = hint

    def on_any_event(self, event: FileSystemEvent) -> None:
        path = getattr(event, "dest_path", None) or event.src_path
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        self._loop.call_soon_threadsafe(self._hint, Path(path), event.is_directory)


class Sources:
    def __init__(
        self,
        watch: list[Path],
        mount_roots: list[Path],
        extra: list[Path] | None = None,
        settle_seconds: float = 5.0,
        batch_quiet_seconds: float = 30.0,
        poll_interval: float = 0.0,
        ignore: list[Path] | None = None,
    ) -> None:
        self.settle_seconds = settle_seconds
        self.batch_quiet_seconds = batch_quiet_seconds
        self.poll_interval = poll_interval
        self.ignore = tuple(Path(p).resolve() for p in ignore or [])
        self._roots: dict[Path, _Root] = {}
        for p in [*watch, *(extra or [])]:
            self._roots[Path(p).resolve()] = _Root(Path(p).resolve(), "watch")
        for p in mount_roots:
            self._roots[Path(p).resolve()] = _Root(Path(p).resolve(), "mounts")
        self._candidates: dict[Path, _Candidate] = {}
        self._emitted: dict[Path, tuple[int, float]] = {}
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._observer: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._initial_scan_done = asyncio.Event()
        self._scans: set[asyncio.Future[int]] = set()
        self.log = log.get("sources")

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._observer = self._new_observer()
        for root in self._roots.values():
            self._schedule(root)
        self._observer.start()
        self._tasks = [
            asyncio.create_task(self._settle_loop(), name="settle"),
            asyncio.create_task(self._mount_loop(), name="mounts"),
            asyncio.create_task(self._rescan_loop(), name="rescan"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._observer is not None:
            self._observer.stop()
            await asyncio.to_thread(self._observer.join, 5)

    def _new_observer(self) -> Any:
        if self.poll_interval > 0:
            return PollingObserver(timeout=self.poll_interval)
        return Observer()

    def _schedule(self, root: _Root) -> None:
        if not root.path.is_dir():
            self.log.warning("root_missing", root=str(root.path))
            return
        assert self._loop is not None
        handler = _Handler(self._loop, self._hint)
        try:
            root.watch = self._observer.schedule(handler, str(root.path), recursive=True)
        except OSError as exc:
            if exc.errno != errno.ENOSPC or isinstance(self._observer, PollingObserver):
                raise
            # inotify's watch limit: fall back to polling for everything, and say so.
            self.log.warning("inotify_limit_reached", root=str(root.path), fallback="polling")
            self._observer.stop()
            self.poll_interval = self.poll_interval or 2.0
            self._observer = self._new_observer()
            for r in self._roots.values():
                if r.path.is_dir():
                    r.watch = self._observer.schedule(
                        _Handler(self._loop, self._hint), str(r.path), recursive=True
                    )
            self._observer.start()

    async def add_root(self, path: Path, card_root: bool = False) -> None:
        path = Path(path).resolve()
        if path in self._roots:
            return
        root = _Root(path, "mounts" if card_root else "watch")
        self._roots[path] = root
        self._schedule(root)
        if root.kind == "watch":
            await self._scan_into(path, path, "watch")
        self._wake.set()
        self.log.info("root_added", root=str(path), kind=root.kind)

    async def remove_root(self, path: Path) -> None:
        root = self._roots.pop(Path(path).resolve(), None)
        if root is None:
            return
        if root.watch is not None:
            with contextlib.suppress(KeyError, OSError):
                self._observer.unschedule(root.watch)
        for p in [p for p, c in self._candidates.items() if c.root == root.path]:
            del self._candidates[p]
        self.log.info("root_removed", root=str(path))

    # -- what the daemon reads -----------------------------------------------------------------

    async def next_event(self) -> Any:
        return await self._events.get()

    def status(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for root in self._roots.values():
            if root.kind == "watch":
                pending = sum(1 for c in self._candidates.values() if c.root == root.path)
                out[str(root.path)] = (
                    f"watching, {pending} file(s) settling" if pending else "watching"
                )
            else:
                out[str(root.path)] = "waiting for cards" if not root.cards else "cards mounted"
                for card in root.cards.values():
                    pending = sum(1 for c in self._candidates.values() if c.root == card.root)
                    state = f"importing, {pending} file(s) left" if pending else "imported"
                    out[str(card.root)] = f"card {card.card_id}: {state}"
        return out

    async def wait_settled(self) -> None:
        """Return once the first scan is done and no candidate is left (for ``run --once``)."""
        await self._initial_scan_done.wait()
        while self._candidates or not self._events.empty():
            await asyncio.sleep(TICK_SECONDS)

    # -- candidates ----------------------------------------------------------------------------

    def _root_of(self, path: Path) -> tuple[Path, str] | None:
        for root in self._roots.values():
            if root.kind == "watch" and (path == root.path or root.path in path.parents):
                return root.path, "watch"
            for card in root.cards.values():
                if card.root in path.parents:
                    return card.root, "card"
        return None

    def _hint(self, path: Path, is_dir: bool) -> None:
        if any(path == i or i in path.parents for i in self.ignore):
            return
        if is_dir:
            found = self._root_of(path)
            if found:
                task = asyncio.ensure_future(self._scan_into(path, *found))
                self._scans.add(task)
                task.add_done_callback(self._scans.discard)
            return
        if not wanted(path.name):
            return
        found = self._root_of(path)
        if found:
            self._add_candidate(path, *found)

    def _add_candidate(self, path: Path, root: Path, kind: str) -> None:
        if path not in self._candidates:
            self._candidates[path] = _Candidate(root, kind)
            self._wake.set()

    def _listing(self, folder: Path) -> list[tuple[Path, int, float]]:
        """Wanted files under ``folder`` with size and mtime (blocking: run in a thread)."""
        out = []
        for path in scan(folder, self.ignore):
            with contextlib.suppress(OSError):
                st = path.stat()
                out.append((path, st.st_size, st.st_mtime))
        return out

    async def _scan_into(self, folder: Path, root: Path, kind: str) -> int:
        """Scan in a thread; candidates are only touched on the loop."""
        n = 0
        for path, size, mtime in await asyncio.to_thread(self._listing, folder):
            if self._emitted.get(path) != (size, mtime):
                self._add_candidate(path, root, kind)
                n += 1
        return n

    async def _settle_loop(self) -> None:
        for root in list(self._roots.values()):
            if root.kind == "watch":
                await self._scan_into(root.path, root.path, "watch")
        await self._check_mounts()
        self._initial_scan_done.set()
        while True:
            if not self._candidates:
                self._wake.clear()
                await self._wake.wait()
            await asyncio.sleep(TICK_SECONDS)
            snapshot = [(p, c.size, c.mtime, c.stable_since) for p, c in self._candidates.items()]
            looks = await asyncio.to_thread(self._look, snapshot, time.monotonic())
            self._apply_looks(looks, time.monotonic())
            self._announce_cards()

    def _look(
        self, snapshot: list[tuple[Path, int, float, float]], now: float
    ) -> list[tuple[Path, int, float, bool | None] | tuple[Path, None, None, None]]:
        """Stat the candidates, and check completeness of those quiet long enough (thread)."""
        out: list[Any] = []
        for path, size, mtime, since in snapshot:
            try:
                st = path.stat()
            except OSError:
                out.append((path, None, None, None))
                continue
            same = (st.st_size, st.st_mtime) == (size, mtime)
            quiet = same and now - since >= self.settle_seconds
            complete = (st.st_size > 0 and is_complete(path)) if quiet else None
            out.append((path, st.st_size, st.st_mtime, complete))
        return out

    def _apply_looks(self, looks: list[Any], now: float) -> None:
        for path, size, mtime, complete in looks:
            cand = self._candidates.get(path)
            if cand is None:
                continue
            if size is None:
                del self._candidates[path]  # gone: deleted, renamed, or the card pulled out
                continue
            if (size, mtime) != (cand.size, cand.mtime):
                cand.size, cand.mtime, cand.stable_since = size, mtime, now
                continue
            if complete is None:
                continue
            if not complete and now - cand.stable_since < self.settle_seconds * STALE_FACTOR:
                continue  # still being written, or broken: give it time before judging
            del self._candidates[path]
            self._emitted[path] = (size, mtime)
            self._events.put_nowait(SettledFile(path, cand.root, cand.kind, size, mtime, complete))

    # -- cards ---------------------------------------------------------------------------------

    async def _mount_loop(self) -> None:
        while True:
            await asyncio.sleep(MOUNT_POLL_SECONDS)
            await self._check_mounts()

    async def _check_mounts(self) -> None:
        for root in list(self._roots.values()):
            if root.kind != "mounts":
                continue
            present = await asyncio.to_thread(self._card_folders, root.path)
            for folder in present - root.cards.keys():
                card = _Card(folder, await asyncio.to_thread(card_identity, folder))
                root.cards[folder] = card
                self._events.put_nowait(CardInserted(folder, card.card_id))
                self.log.info("card_found", root=str(folder), card=card.card_id)
                await self._scan_into(folder, folder, "card")
                card.scanned = True
                self._wake.set()
            for folder in root.cards.keys() - present:
                card = root.cards.pop(folder)
                for p in [p for p, c in self._candidates.items() if c.root == folder]:
                    del self._candidates[p]
                for p in [p for p in self._emitted if folder in p.parents]:
                    del self._emitted[p]  # a reinserted card is scanned again in full
                self._events.put_nowait(CardRemoved(folder, card.card_id))
        self._announce_cards()

    @staticmethod
    def _card_folders(mount_root: Path) -> set[Path]:
        found = set()
        with contextlib.suppress(OSError), os.scandir(mount_root) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.is_dir() and os.path.isdir(os.path.join(entry.path, "DCIM")):
                        found.add(Path(entry.path))
        return found

    def _announce_cards(self) -> None:
        for root in self._roots.values():
            for card in root.cards.values():
                if (
                    card.scanned
                    and not card.announced_done
                    and not any(c.root == card.root for c in self._candidates.values())
                ):
                    card.announced_done = True
                    self._events.put_nowait(CardImported(card.root, card.card_id))

    async def _rescan_loop(self) -> None:
        while True:
            await asyncio.sleep(RESCAN_SECONDS)
            for root in list(self._roots.values()):
                if root.kind == "watch" and root.path.is_dir():
                    await self._scan_into(root.path, root.path, "watch")
            self._wake.set()
