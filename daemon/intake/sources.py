"""Where photos come from: watched folders and camera cards, and when a file is ready.

The truth is a scan; file events are hints. One watchdog Observer watches every root; its thread
only records which paths moved and wakes the asyncio loop (``call_soon_threadsafe``), where
folders are marked dirty and rescanned. A candidate is *settled* when it is complete (a JPEG
with its start-of-scan and an end-of-image marker after it, a GPX that parses to ``</gpx>``) and
its size and mtime have not changed for ``settle_seconds``. A quiet file that can never become
complete (no JPEG start marker, not XML, not ``<gpx>``) is handed on at once marked not
complete; one that may still be growing (empty, cut off) only after ``give_up_seconds``. Cards are folders with ``DCIM/`` that
appear under a mount root; a new mount fires no file events, so they are found by polling the
mount table and listing the mount roots, identified by file-system UUID or label (nothing is ever
written onto them), scanned whole, and announced imported once every file has been handed on.
An empty or vanished mount point means "unmounted", never "deleted".
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import re
import threading
import time
import xml.parsers.expat
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from daemon.core import log
from daemon.core.aio import wait_event
from daemon.media.exif import JpegState, jpeg_state

PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg"})
TRACK_SUFFIXES = frozenset({".gpx"})
TEMP_SUFFIXES = frozenset({".tmp", ".temp", ".part", ".partial", ".crdownload", ".swp"})
TICK_SECONDS = 0.5  # settling checks, only while something is pending
MOUNT_POLL_SECONDS = 2.0
RESCAN_SECONDS = 3600.0  # full rescans of watch folders: the truth behind the events
FALLBACK_POLL_SECONDS = 2.0
MIN_GIVE_UP_SECONDS = 60.0
# Settled files waiting in the queue at most: the rest of a 50,000-file card stays a candidate
# (a few hundred bytes each) and is read only when the consumer has room, so the queue never
# holds a card's worth of events and the completeness checks keep pace with the copying.
MAX_QUEUED = 1024
MOUNTINFO = Path("/proc/self/mountinfo")
DISK_BY = Path("/dev/disk")
# Event kinds worth a look; opens and read-only closes are left out, since our own reads
# (completeness checks, hashing) would otherwise wake us up again.
EVENT_TYPES: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    DirCreatedEvent,
    DirMovedEvent,
    DirDeletedEvent,
]


# -- what the daemon reads ------------------------------------------------------------------------


@dataclass(frozen=True)
class Card:
    """A camera card: where it is mounted and who it is (UUID and label when the system says)."""

    mount: Path
    card_id: str
    uuid: str | None = None
    label: str | None = None
    device: str | None = None


@dataclass(frozen=True)
class SettledFile:
    """A file that is complete and quiet, or one handed on to be set aside: ``complete`` is
    False for a file that can never be used (not a JPEG, not a GPX: at once) or that stayed
    unfinished (empty, cut off) long after its last change. ``reason`` then says why in one
    line ("empty file", "not a JPEG: no start-of-image marker", "not a GPX file: <parser
    message>", "cut off: no end-of-image marker 60 s after its last change"); None when
    complete."""

    path: Path
    root: Path
    kind: str  # "watch" (read in place) or "card" (to be copied into the spool)
    card_id: str | None
    size: int
    mtime: float
    complete: bool = True
    reason: str | None = None


@dataclass(frozen=True)
class BatchReady:
    """A watched folder had files settle and has been quiet for ``batch_quiet_seconds``."""

    folder: Path
    root: Path
    files: int


@dataclass(frozen=True)
class _CardEvent:
    card: Card

    @property
    def root(self) -> Path:
        return self.card.mount

    @property
    def card_id(self) -> str:
        return self.card.card_id


@dataclass(frozen=True)
class CardInserted(_CardEvent):
    """A card appeared under a mount root (its files follow as SettledFile events)."""


@dataclass(frozen=True)
class CardImported(_CardEvent):
    """Every file of the card has been handed on (queued before this event)."""


@dataclass(frozen=True)
class CardRemoved(_CardEvent):
    """The card's mount point went away or emptied: unmounted, never "deleted"."""


SourceEvent = SettledFile | BatchReady | CardInserted | CardImported | CardRemoved


# -- names and scans ------------------------------------------------------------------------------


def wanted(name: str) -> bool:
    """Photos and tracks, minus dotfiles and temporary names.

    >>> [wanted(n) for n in ("G001.JPG", ".G001.JPG", "a.jpg.part", "t.gpx", "~x.jpg", "a.png")]
    [True, False, False, True, False, False]
    """
    if name.startswith((".", "~")):
        return False
    suffix = os.path.splitext(name)[1].lower()
    return suffix in PHOTO_SUFFIXES or suffix in TRACK_SUFFIXES


def hidden_below(path: Path, root: Path) -> bool:
    """Whether a folder or file between ``root`` and ``path`` is a dotfile (``.thumbnails``)."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return False
    return any(part.startswith(".") for part in parts)


Entry = tuple[str, int, float]  # name, size, mtime


def list_folder(folder: Path) -> list[Entry] | None:
    """Wanted files directly in ``folder`` with size and mtime; None when it is gone."""
    out: list[Entry] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if not wanted(entry.name):
                    continue
                with contextlib.suppress(OSError):
                    if entry.is_file():
                        st = entry.stat()
                        out.append((entry.name, st.st_size, st.st_mtime))
    except OSError:
        return None
    return out


def walk(folder: Path, ignore: tuple[Path, ...] = ()) -> Iterator[tuple[Path, list[Entry]]]:
    """Every folder under ``folder`` (dot-folders and ``ignore`` skipped) with its wanted files.

    Iterative with os.scandir: no recursion limit, one folder's listing in memory at a time.
    """
    stack = [folder]
    while stack:
        current = stack.pop()
        if current in ignore:
            continue
        files: list[Entry] = []
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    with contextlib.suppress(OSError):
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        elif wanted(entry.name) and entry.is_file():
                            st = entry.stat()
                            files.append((entry.name, st.st_size, st.st_mtime))
        except OSError:
            continue
        yield current, files


def scan(folder: Path, ignore: Iterable[Path] = ()) -> Iterator[Path]:
    """Every wanted file under ``folder``."""
    for current, files in walk(folder, tuple(ignore)):
        for name, _size, _mtime in files:
            yield current / name


# -- is a file complete? --------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What reading a quiet file found. ``hopeless``: waiting cannot make it complete (the
    bytes already there are wrong), so it is handed on at once. ``dated``: the reason is
    finished with how long the file has been unchanged (the evidence that it is cut off)."""

    complete: bool
    reason: str | None = None
    hopeless: bool = False
    dated: bool = False


COMPLETE = Verdict(True)
EMPTY = "empty file"


def jpeg_verdict(path: str | os.PathLike[str]) -> Verdict:
    """Blocking. The JPEG rules live in :func:`daemon.media.exif.jpeg_state`."""
    state = jpeg_state(path)
    if state is JpegState.COMPLETE:
        return COMPLETE
    hopeless = state is JpegState.NOT_JPEG
    dated = state in (JpegState.CUT_OFF, JpegState.CORRUPT)
    return Verdict(False, state.value, hopeless, dated)


class _NotGpx(Exception):
    pass


def gpx_verdict(path: str | os.PathLike[str]) -> Verdict:
    """Blocking. Well-formed XML whose root is ``<gpx>``, streamed (little memory).

    Expat reports an error in the bytes read so far at once, but an unclosed document only at
    the end: the first is hopeless, the second a file still being written (or cut off).
    """

    def root(name: str, _attrs: Any) -> None:
        parser.StartElementHandler = None  # only the root element matters
        if name.rpartition(":")[2] != "gpx":
            raise _NotGpx(f"root element is <{name}>, not <gpx>")

    with open(path, "rb") as fh:
        parser = xml.parsers.expat.ParserCreate()
        parser.StartElementHandler = root
        empty = True
        try:
            while chunk := fh.read(1 << 20):
                empty = False
                parser.Parse(chunk, False)
        except (xml.parsers.expat.ExpatError, _NotGpx) as exc:
            return Verdict(False, f"not a GPX file: {exc}", hopeless=True)
        if empty:
            return Verdict(False, EMPTY)
        try:
            parser.Parse(b"", True)
        except xml.parsers.expat.ExpatError:
            return Verdict(False, "cut off: no closing </gpx> tag", dated=True)
    return COMPLETE


def verdict(path: str | os.PathLike[str]) -> Verdict:
    """Blocking: whether ``path`` is complete, and if not why and whether waiting may help."""
    try:
        if os.path.splitext(os.fspath(path))[1].lower() in TRACK_SUFFIXES:
            return gpx_verdict(path)
        return jpeg_verdict(path)
    except OSError as exc:  # unreadable (permissions?): may be fixed, so it waits like a cut one
        return Verdict(False, f"cannot read: {exc.strerror or exc}")


# -- mounts and card identity ---------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    mount_id: int
    point: str
    device: str
    fstype: str


def _unescape_mount(text: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def parse_mountinfo(text: str) -> dict[str, Mount]:
    """Mount point → mount (the last line wins: it is the one on top).

    >>> line = "36 25 8:17 / /media/pi/EOS\\\\040R rw - vfat /dev/sdb1 rw"
    >>> parse_mountinfo(line)["/media/pi/EOS R"].device
    '/dev/sdb1'
    """
    mounts: dict[str, Mount] = {}
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 2 or not fields[0].isdigit():
            continue
        point = _unescape_mount(fields[4])
        mounts[point] = Mount(int(fields[0]), point, _unescape_mount(tail[1]), tail[0])
    return mounts


def read_mountinfo() -> str | None:
    try:
        return MOUNTINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _udev_name(name: str) -> str:
    """udev escapes odd characters in by-label names as ``\\xNN``."""
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), name)


def _link_to(folder: Path, device: str) -> str | None:
    target = os.path.realpath(device)
    with contextlib.suppress(OSError), os.scandir(folder) as links:
        for link in links:
            if os.path.realpath(link.path) == target:
                return _udev_name(link.name)
    return None


def dcim_fingerprint(mount: Path) -> str:
    """A short digest of the DCIM folder names and the first file: stands in for a UUID."""
    digest = hashlib.sha256()
    with contextlib.suppress(OSError):
        folders = sorted(e.name for e in os.scandir(mount / "DCIM") if e.is_dir())
        digest.update("/".join(folders).encode())
        if folders:
            files = sorted(e.name for e in os.scandir(mount / "DCIM" / folders[0]))
            digest.update(files[0].encode() if files else b"")
    return digest.hexdigest()[:12]


def identify_card(
    mount: Path, mounts: dict[str, Mount] | None = None, disk_by: Path = DISK_BY
) -> Card:
    """Who the card at ``mount`` is: file-system UUID and label from /dev/disk when it is a real
    mount, else its folder name and a fingerprint of its DCIM listing."""
    if mounts is None:
        mounts = parse_mountinfo(read_mountinfo() or "")
    entry = mounts.get(str(mount))
    device = entry.device if entry and entry.device.startswith("/") else None
    uuid = _link_to(disk_by / "by-uuid", device) if device else None
    label = _link_to(disk_by / "by-label", device) if device else None
    if uuid:
        card_id = f"uuid:{uuid}"
    elif label:
        card_id = f"label:{label}"
    else:
        card_id = f"name:{mount.name}:{dcim_fingerprint(mount)}"
    return Card(mount, card_id, uuid, label, device)


def has_dcim(folder: str | os.PathLike[str]) -> bool:
    return os.path.isdir(os.path.join(folder, "DCIM"))


def find_cards(mount_root: Path) -> set[Path]:
    """Folders under a mount root holding ``DCIM/``: its children, or one level further down
    for the ``/media/<user>/<LABEL>`` layout of udisks."""
    found: set[Path] = set()
    for child in _subfolders(mount_root):
        if has_dcim(child):
            found.add(child)
        else:
            found.update(g for g in _subfolders(child) if has_dcim(g))
    return found


def _subfolders(folder: Path) -> list[Path]:
    out = []
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                if not entry.name.startswith(".") and entry.is_dir():
                    out.append(Path(entry.path))
    return out


def folder_identity(path: Path) -> tuple[int, int] | None:
    """Device and inode of a folder: a new pair means something was mounted or replaced."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if os.path.isdir(path) else None


# -- the observer bridge --------------------------------------------------------------------------


class _Handler(FileSystemEventHandler):
    """Runs on the observer thread: records the path and wakes the loop, nothing else."""

    def __init__(self, watcher: Watcher) -> None:
        self._watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        dest = getattr(event, "dest_path", None)
        if dest:  # a move: the file is reported where it went; its old folder is pruned
            self._watcher._from_thread(os.fsdecode(dest), event.is_directory)
            self._watcher._from_thread(os.fsdecode(event.src_path), event.is_directory, moved=True)
        else:
            self._watcher._from_thread(os.fsdecode(event.src_path), event.is_directory)


class Watcher:
    """ONE watchdog observer for every root; a PollingObserver when ``poll_interval`` is set
    (network mounts) or when inotify runs out of watches or instances.

    ``on_hints`` is called on the loop with ``{path: is_dir}`` for paths that saw events; the
    observer thread only adds to a locked dict and schedules one drain per burst.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_hints: Callable[[dict[Path, bool]], None],
        poll_interval: float = 0.0,
    ) -> None:
        self._loop = loop
        self._on_hints = on_hints
        self.poll_interval = poll_interval
        self.polling = poll_interval > 0
        self._observer: Any = None
        self._watches: dict[Path, tuple[Any, bool]] = {}
        self._handler = _Handler(self)
        self._lock = threading.Lock()
        self._pending: dict[Path, bool] = {}
        self.log = log.get("sources")

    def start(self) -> None:
        try:
            # watchdog may open its inotify instance here already (errno 24 when none is left)
            self._observer = self._new_observer()
            self._observer.start()
        except OSError as exc:
            if self.polling or exc.errno not in (errno.ENOSPC, errno.EMFILE):
                raise
            self._fall_back(exc)

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            with contextlib.suppress(RuntimeError):
                self._observer.join(5)
            self._observer = None

    def watch(self, path: Path, recursive: bool = True) -> bool:
        """Watch ``path`` (again: a removed root's watch is dead, so it is replaced)."""
        self.unwatch(path)
        while True:
            try:
                self._watches[path] = (self._schedule(path, recursive), recursive)
                return True
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EMFILE) or self.polling:
                    reason = exc.strerror or str(exc)
                    self.log.warning("watch_failed", root=str(path), reason=reason)
                    return False
                self._fall_back(exc)  # then try once more, polling

    def unwatch(self, path: Path) -> None:
        entry = self._watches.pop(path, None)
        if entry is not None and self._observer is not None:
            with contextlib.suppress(KeyError, OSError, RuntimeError):
                self._observer.unschedule(entry[0])

    def watching(self, path: Path) -> bool:
        return path in self._watches

    def _new_observer(self) -> Any:
        if self.polling:
            return PollingObserver(timeout=self.poll_interval or FALLBACK_POLL_SECONDS)
        return Observer()

    def _schedule(self, path: Path, recursive: bool) -> Any:
        return self._observer.schedule(
            self._handler, str(path), recursive=recursive, event_filter=EVENT_TYPES
        )

    def _fall_back(self, exc: OSError) -> None:
        """inotify ran out (errno 28 watches, 24 instances): poll every root instead, say so."""
        self.log.warning(
            "inotify_unavailable",
            reason=exc.strerror or str(exc),
            fallback=f"polling every {self.poll_interval or FALLBACK_POLL_SECONDS:g} s",
        )
        with contextlib.suppress(Exception):
            self._observer.stop()
        self.polling = True
        self._observer = self._new_observer()
        self._observer.start()
        for path, (_old, recursive) in list(self._watches.items()):
            try:
                self._watches[path] = (self._schedule(path, recursive), recursive)
            except OSError as err:
                del self._watches[path]
                self.log.warning("watch_failed", root=str(path), reason=err.strerror or str(err))

    def _from_thread(self, path: str, is_dir: bool, moved: bool = False) -> None:
        # A directory moved away needs no recursive rescan of where it was: its parent's
        # listing is enough to forget it.
        key, deep = (Path(path).parent, False) if moved and is_dir else (Path(path), is_dir)
        with self._lock:
            first = not self._pending
            self._pending[key] = self._pending.get(key, False) or deep
        if first:
            with contextlib.suppress(RuntimeError):  # the loop is closing: nothing to do
                self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        if pending:
            self._on_hints(pending)


# -- settling -------------------------------------------------------------------------------------


@dataclass(slots=True)  # one per file of a card not yet handed on: kept small
class _Candidate:
    root: Path
    kind: str
    card_id: str | None
    size: int
    mtime: float
    since: float  # monotonic time since when (size, mtime) has not changed
    checked: tuple[int, float] | None = None  # (size, mtime) found incomplete
    verdict: Verdict | None = None  # what was found then


@dataclass
class _Folder:
    root: Path
    kind: str
    last_change: float
    settled: int = 0


Look = tuple[Path, int | None, float | None, Verdict | None]  # path, size, mtime, if read


class Settler:
    """Candidates until they are complete and quiet; folders until they are quiet.

    Pure bookkeeping on the loop; the only I/O is in :meth:`look`, which runs in a thread.
    Reported files are remembered per folder by (size, mtime), so a rescan skips them unless
    they changed, and a file that changes after settling is examined again.
    """

    def __init__(
        self,
        settle_seconds: float,
        batch_quiet_seconds: float,
        give_up_seconds: float | None = None,
    ) -> None:
        self.settle_seconds = settle_seconds
        self.batch_quiet_seconds = batch_quiet_seconds
        self.give_up_seconds = give_up_seconds or max(MIN_GIVE_UP_SECONDS, 10 * settle_seconds)
        # Nothing writes to a card in a reader: an unfinished file there is cut off for good,
        # and waiting a minute for it would keep the user from pulling the card.
        self.card_give_up_seconds = min(self.give_up_seconds, max(2.0, 2 * settle_seconds))
        self.candidates: dict[Path, _Candidate] = {}
        self.reported: dict[Path, dict[str, tuple[int, float]]] = {}
        self.folders: dict[Path, _Folder] = {}
        self.log = log.get("sources")

    def consider(
        self,
        path: Path,
        size: int,
        mtime: float,
        root: Path,
        kind: str,
        card_id: str | None,
        now: float,
    ) -> bool:
        """A file seen by a scan. Returns whether it is (still) a candidate."""
        if self.reported.get(path.parent, {}).get(path.name) == (size, mtime):
            return False
        cand = self.candidates.get(path)
        if cand is None:
            since = now
            if kind == "card":
                # A card in a reader is not being written: its mtime says how long it has
                # been quiet already. Watch folders wait the full settle time.
                since = now - max(0.0, min(time.time() - mtime, self.settle_seconds))
            self.candidates[path] = _Candidate(root, kind, card_id, size, mtime, since)
            self._touch(path.parent, root, kind, now)
        return True

    def sync_folder(
        self,
        folder: Path,
        entries: list[Entry] | None,
        root: Path,
        kind: str,
        card_id: str | None,
        now: float,
    ) -> None:
        """Take a fresh listing of ``folder`` (None: it is gone) and forget what left it."""
        if entries is None:
            self.forget(folder)
            return
        names = set()
        for name, size, mtime in sorted(entries):  # handed on in name order, like the camera's
            names.add(name)
            self.consider(folder / name, size, mtime, root, kind, card_id, now)
        known = self.reported.get(folder)
        if known:
            for name in [n for n in known if n not in names]:
                del known[name]

    def forget(self, prefix: Path) -> None:
        """Drop everything at or below ``prefix`` (a removed card, root or folder)."""

        def under(p: Path) -> bool:
            return p == prefix or prefix in p.parents

        for table in (self.candidates, self.reported, self.folders):
            for p in [p for p in table if under(p)]:
                del table[p]

    def drop_candidates(self, prefix: Path) -> None:
        for p in [p for p in self.candidates if prefix in p.parents]:
            del self.candidates[p]

    def recheck(self, path: Path) -> None:
        """Forget that ``path`` was reported, so the next scan offers it again."""
        self.reported.get(path.parent, {}).pop(path.name, None)

    def pending_under(self, prefix: Path) -> int:
        return sum(
            1 for c in self.candidates.values() if c.root == prefix or prefix in c.root.parents
        )

    def snapshot(self, limit: int | None = None) -> list[tuple[Path, int, float, bool]]:
        """What :meth:`look` should examine: stat those still settling, read those quiet long
        enough, at most ``limit`` of them (the oldest candidates first). Quiet ones beyond the
        limit are left out entirely, neither read nor stat'ed, until there is room."""
        now = time.monotonic()
        room = len(self.candidates) if limit is None else max(0, limit)
        out = []
        for path, c in self.candidates.items():
            quiet = now - c.since >= self.settle_seconds and c.checked != (c.size, c.mtime)
            if quiet:
                if not room:
                    continue
                room -= 1
            out.append((path, c.size, c.mtime, quiet))
        return out

    @staticmethod
    def look(items: list[tuple[Path, int, float, bool]]) -> list[Look]:
        """Stat each candidate; check completeness of those quiet and unchanged (blocking)."""
        out: list[Look] = []
        for path, size, mtime, quiet in items:
            try:
                st = os.stat(path)
            except OSError:
                out.append((path, None, None, None))
                continue
            same = (st.st_size, st.st_mtime) == (size, mtime)
            # Empty files too: one that stays empty must reach the give-up like a cut one.
            found = verdict(path) if quiet and same else None
            out.append((path, st.st_size, st.st_mtime, found))
        return out

    def apply(self, looks: list[Look], now: float) -> list[SettledFile]:
        settled = []
        for path, size, mtime, found in sorted(looks, key=lambda x: x[0]):
            cand = self.candidates.get(path)
            if cand is None:
                continue
            if size is None or mtime is None:
                del self.candidates[path]  # gone: deleted, renamed away, or the card pulled out
                continue
            if (size, mtime) != (cand.size, cand.mtime):
                cand.size, cand.mtime, cand.since = size, mtime, now
                cand.checked = cand.verdict = None
                self._touch(path.parent, cand.root, cand.kind, now)
                continue
            if found is not None and found.complete:
                settled.append(self._settle(path, cand))
                continue
            if found is not None:
                cand.checked, cand.verdict = (size, mtime), found
            reason = self._given_up(cand, now)
            if reason is not None:
                self.log.warning("file_incomplete", file=str(path), reason=reason)
                settled.append(self._settle(path, cand, reason))
        return settled

    def _given_up(self, cand: _Candidate, now: float) -> str | None:
        """Why a candidate found not complete is handed on now, or None to keep waiting."""
        found = cand.verdict
        if found is None or cand.checked != (cand.size, cand.mtime):
            return None
        if found.hopeless:
            return found.reason
        limit = self.card_give_up_seconds if cand.kind == "card" else self.give_up_seconds
        if now - cand.since < limit:
            return None
        if found.dated:
            return f"{found.reason} {now - cand.since:.0f} s after its last change"
        return found.reason

    def _settle(self, path: Path, cand: _Candidate, reason: str | None = None) -> SettledFile:
        del self.candidates[path]
        self.reported.setdefault(path.parent, {})[path.name] = (cand.size, cand.mtime)
        folder = self.folders.get(path.parent)
        if folder is not None:
            folder.settled += 1
        return SettledFile(
            path,
            cand.root,
            cand.kind,
            cand.card_id,
            cand.size,
            cand.mtime,
            complete=reason is None,
            reason=reason,
        )

    def _touch(self, folder: Path, root: Path, kind: str, now: float) -> None:
        if kind != "watch":
            return  # a card's batch ends with CardImported
        state = self.folders.get(folder)
        if state is None:
            self.folders[folder] = _Folder(root, kind, now)
        else:
            state.last_change = now

    def batches(self, now: float) -> list[BatchReady]:
        """Watched folders whose files settled and that have been quiet long enough."""
        if not self.folders:
            return []  # a card's files: no folder batches, and no walk over its candidates
        busy = {p.parent for p in self.candidates}
        ready = []
        for path, folder in list(self.folders.items()):
            if path in busy or now - folder.last_change < self.batch_quiet_seconds:
                continue
            if folder.settled:
                ready.append(BatchReady(path, folder.root, folder.settled))
            del self.folders[path]
        return ready

    def next_delay(self, now: float) -> float | None:
        """Seconds until work is due: a tick while candidates wait, a batch deadline, or None."""
        if self.candidates:
            return TICK_SECONDS
        if not self.folders:
            return None
        due = min(f.last_change for f in self.folders.values()) + self.batch_quiet_seconds
        return max(0.05, due - now)


# -- the sources ----------------------------------------------------------------------------------


@dataclass
class _Card:
    card: Card
    mount_id: int | None
    identity: tuple[int, int] | None
    scanned: bool = False
    announced: bool = False


@dataclass
class _Root:
    path: Path
    kind: str  # "watch" (a folder read in place) or "mounts" (a folder where cards appear)
    identity: tuple[int, int] | None = None
    state: str = "starting"
    cards: dict[Path, _Card] = field(default_factory=dict)
    removed: dict[Path, Card] = field(default_factory=dict)


@dataclass
class _Survey:
    """What one poll found: each root's identity, and card folders under mount roots."""

    mountinfo: str | None
    identities: dict[Path, tuple[int, int] | None]
    cards: dict[Path, set[Path]]
    card_ids: dict[Path, tuple[int, int] | None]


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
        self._roots: dict[Path, _Root] = {}
        for p in [*watch, *(extra or [])]:
            self._roots.setdefault(Path(p).resolve(), _Root(Path(p).resolve(), "watch"))
        for p in mount_roots:
            self._roots.setdefault(Path(p).resolve(), _Root(Path(p).resolve(), "mounts"))
        self._events: asyncio.Queue[SourceEvent] = asyncio.Queue()
        self._dirty: dict[Path, bool] = {}  # folder → rescan recursively?
        self._wake = asyncio.Event()
        self._mounts_due = asyncio.Event()
        self._started = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._watcher: Watcher | None = None
        self._mountinfo: str | None = None
        self._mounts: dict[str, Mount] = {}
        self._mounts_lock = asyncio.Lock()
        self.log = log.get("sources")

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._watcher = Watcher(asyncio.get_running_loop(), self._on_hints, self.poll_interval)
        self._watcher.start()
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
        path = Path(path).resolve()
        if path in self._roots:
            return
        self._roots[path] = _Root(path, "mounts" if card_root else "watch")
        self.log.info("root_added", root=str(path), kind=self._roots[path].kind)
        await self._check_mounts()
        self._wake.set()

    async def remove_root(self, path: Path) -> None:
        root = self._roots.pop(Path(path).resolve(), None)
        if root is None:
            return
        for mount in list(root.cards):
            self._drop_card(root, mount, announce=False)
        if self._watcher is not None:
            self._watcher.unwatch(root.path)
        self.settler.forget(root.path)
        for p in [p for p in self._dirty if p == root.path or root.path in p.parents]:
            del self._dirty[p]
        self.log.info("root_removed", root=str(root.path))

    # -- what the daemon reads ----------------------------------------------------------------

    async def next_event(self) -> SourceEvent:
        return await self._events.get()

    async def events(self) -> AsyncIterator[SourceEvent]:
        """``async for event in sources.events()``: the same queue as :meth:`next_event`."""
        while True:
            yield await self._events.get()

    def recheck(self, path: Path) -> None:
        """Offer ``path`` again (the wiring could not read it, e.g. the card went mid-copy)."""
        self.settler.recheck(Path(path))
        self._mark(Path(path).parent, False)

    def status(self) -> dict[str, str]:
        out: dict[str, str] = {}
        how = f" (polling every {self.poll_interval or FALLBACK_POLL_SECONDS:g} s)"
        for root in self._roots.values():
            state = root.state
            pending = self.settler.pending_under(root.path)
            if root.kind == "watch" and state == "watching" and pending:
                state = f"watching, {pending} file(s) settling"
            out[str(root.path)] = state + (how if self.polling and root.identity else "")
            for mount, card in root.removed.items():
                out[str(mount)] = f"card {card.card_id}: card removed"
            for mount, entry in root.cards.items():
                out[str(mount)] = f"card {entry.card.card_id}: {self._card_state(entry)}"
        return out

    def missing_roots(self) -> set[str]:
        """The roots that are not there right now (a drive unplugged, a mount root gone)."""
        return {str(r.path) for r in self._roots.values() if r.state.startswith("missing")}

    def _card_state(self, entry: _Card) -> str:
        if not entry.scanned:
            return "scanning"
        left = self.settler.pending_under(entry.card.mount)
        return f"importing, {left} file(s) left" if left else "all files handed on"

    async def wait_settled(self) -> None:
        """Return once the first scan is done and nothing is pending (for ``run --once``).

        "Nothing pending" here is the sources' side only: no candidate, no folder to rescan,
        and the event queue empty. The queue is empty as soon as the consumer has *taken* the
        last event, possibly before it has acted on it, so the caller must also wait for its
        own in-flight work (the event it is handling, batches it has not flushed) before it
        treats the intake as finished.
        """
        await self._started.wait()
        while self.settler.candidates or self._dirty or not self._events.empty():
            await asyncio.sleep(TICK_SECONDS)

    # -- hints and rescans --------------------------------------------------------------------

    def _on_hints(self, hints: dict[Path, bool]) -> None:
        for path, is_dir in hints.items():
            self._hint(path, is_dir)

    def _hint(self, path: Path, is_dir: bool) -> None:
        if any(path == i or i in path.parents for i in self.ignore):
            return
        owner = self._owner(path)
        if owner is None:
            if any(r.kind == "mounts" and r.path in path.parents for r in self._roots.values()):
                self._mounts_due.set()  # a folder came or went under a mount root
            return
        if hidden_below(path, owner[0]):
            return
        if is_dir:
            self._mark(path, True)
        elif wanted(path.name):
            self._mark(path.parent, False)

    def _mark(self, folder: Path, recursive: bool) -> None:
        self._dirty[folder] = self._dirty.get(folder, False) or recursive
        self._wake.set()

    def _owner(self, path: Path) -> tuple[Path, str, str | None] | None:
        """The watch root or card holding ``path``: (its folder, kind, card id)."""
        for root in self._roots.values():
            if root.kind == "watch" and (path == root.path or root.path in path.parents):
                return root.path, "watch", None
            for mount, entry in root.cards.items():
                if path == mount or mount in path.parents:
                    return mount, "card", entry.card.card_id
        return None

    def _listing(self, folder: Path, recursive: bool) -> list[tuple[Path, list[Entry] | None]]:
        """Blocking: run in a thread."""
        if not recursive:
            return [(folder, list_folder(folder))]
        if not folder.is_dir():
            return [(folder, None)]
        return list(walk(folder, self.ignore))

    async def _rescan_dirty(self) -> None:
        dirty, self._dirty = self._dirty, {}
        for folder, recursive in dirty.items():
            owner = self._owner(folder)
            if owner is None:
                continue
            listing = await asyncio.to_thread(self._listing, folder, recursive)
            now = time.monotonic()
            for path, entries in sorted(listing, key=lambda item: item[0]):  # 100GOPRO first
                if self._owner(path) == owner:  # not removed meanwhile
                    self.settler.sync_folder(path, entries, *owner, now)
            if recursive:
                self._scanned(folder)

    def _scanned(self, folder: Path) -> None:
        for root in self._roots.values():
            if root.kind == "watch" and root.path == folder and root.state == "scanning":
                root.state = "watching"
            entry = root.cards.get(folder)
            if entry is not None:
                entry.scanned = True

    # -- the loops ----------------------------------------------------------------------------

    async def _settle_loop(self) -> None:
        await self._guarded("mounts", self._check_mounts)
        await self._guarded("scan", self._rescan_dirty)
        self._started.set()
        last_step = time.monotonic()
        while True:
            self._wake.clear()
            delay = TICK_SECONDS if self._dirty else self.settler.next_delay(time.monotonic())
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
        looks = await asyncio.to_thread(Settler.look, self.settler.snapshot(room))
        now = time.monotonic()
        for event in [*self.settler.apply(looks, now), *self.settler.batches(now)]:
            self._events.put_nowait(event)
        self._announce_cards()

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
            await self._guarded("mounts", self._check_mounts)

    async def _rescan_loop(self) -> None:
        while True:
            await asyncio.sleep(RESCAN_SECONDS)
            for root in self._roots.values():
                if root.kind == "watch" and root.identity is not None:
                    self._mark(root.path, True)

    # -- roots and cards ----------------------------------------------------------------------

    def _survey(self, roots: list[tuple[Path, str]], cards: list[Path]) -> _Survey:
        """Blocking: which roots exist (as what), and which card folders are there."""
        survey = _Survey(read_mountinfo(), {}, {}, {})
        for path, kind in roots:
            survey.identities[path] = folder_identity(path)
            if kind == "mounts" and survey.identities[path] is not None:
                survey.cards[path] = find_cards(path)
        for mount in cards:
            survey.card_ids[mount] = folder_identity(mount) if has_dcim(mount) else None
        return survey

    async def _check_mounts(self) -> None:
        async with self._mounts_lock:  # the poll, a hint and add_root may all ask at once
            await self._check_mounts_locked()

    async def _check_mounts_locked(self) -> None:
        roots = [(r.path, r.kind) for r in self._roots.values()]
        cards = [m for r in self._roots.values() for m in r.cards]
        survey = await asyncio.to_thread(self._survey, roots, cards)
        if survey.mountinfo != self._mountinfo:
            self._mountinfo, self._mounts = (
                survey.mountinfo,
                parse_mountinfo(survey.mountinfo or ""),
            )
        for root in list(self._roots.values()):
            if root.path in survey.identities:
                self._update_root(root, survey.identities[root.path])
            if root.kind == "mounts":
                await self._update_cards(root, survey.cards.get(root.path, set()), survey)
        self._announce_cards()

    def _update_root(self, root: _Root, identity: tuple[int, int] | None) -> None:
        assert self._watcher is not None
        if identity == root.identity and (identity is None or self._watcher.watching(root.path)):
            if identity is None and root.state == "starting":
                self._root_missing(root)
            return
        root.identity = identity
        if identity is None:
            self._root_missing(root)
            return
        # Appeared, or replaced (unmounted and mounted again): the old watch is dead.
        recursive = root.kind == "watch"
        if not self._watcher.watch(root.path, recursive=recursive):
            root.identity = None
            return
        if recursive:
            root.state = "scanning"
            self._mark(root.path, True)
        else:
            root.state = "waiting for cards"
        self.log.info("root_watched", root=str(root.path), kind=root.kind)

    def _root_missing(self, root: _Root) -> None:
        assert self._watcher is not None
        self._watcher.unwatch(root.path)
        if root.kind == "watch":
            root.state = "missing (not mounted?)"
            self.settler.drop_candidates(root.path)  # unreadable now; what was reported stays
            self.log.warning("watch_root_missing", root=str(root.path))
        else:
            root.state = "missing, waiting for it to appear"

    async def _update_cards(self, root: _Root, present: set[Path], survey: _Survey) -> None:
        for mount in list(root.cards):
            entry = root.cards[mount]
            table = self._mounts.get(str(mount))
            remounted = entry.mount_id is not None and (
                table is None or table.mount_id != entry.mount_id
            )
            gone = mount in survey.card_ids and survey.card_ids[mount] != entry.identity
            if mount not in present or gone or remounted:
                self._drop_card(root, mount, announce=True)
        for mount in sorted(present - root.cards.keys()):
            await self._add_card(root, mount)

    async def _add_card(self, root: _Root, mount: Path) -> None:
        assert self._watcher is not None
        card, identity = await asyncio.to_thread(
            lambda: (identify_card(mount, self._mounts), folder_identity(mount))
        )
        entry = self._mounts.get(str(mount))
        root.cards[mount] = _Card(card, entry.mount_id if entry else None, identity)
        root.removed.pop(mount, None)
        self._watcher.watch(mount, recursive=True)  # before the scan: nothing slips between
        self._events.put_nowait(CardInserted(card))
        self.log.info("card_found", root=str(mount), card=card.card_id, label=card.label)
        self._mark(mount, True)

    def _drop_card(self, root: _Root, mount: Path, announce: bool) -> None:
        entry = root.cards.pop(mount)
        if self._watcher is not None:
            self._watcher.unwatch(mount)
        # Unmounted, not deleted: forget what we reported, so a reinserted card is offered
        # again in full (the journal knows which files it already has).
        self.settler.forget(mount)
        for p in [p for p in self._dirty if p == mount or mount in p.parents]:
            del self._dirty[p]
        if announce:
            root.removed[mount] = entry.card
            self._events.put_nowait(CardRemoved(entry.card))
            self.log.info("card_removed", root=str(mount), card=entry.card.card_id)

    def _announce_cards(self) -> None:
        for root in self._roots.values():
            for mount, entry in root.cards.items():
                busy = self.settler.pending_under(mount) or any(
                    p == mount or mount in p.parents for p in self._dirty
                )
                if busy:
                    entry.announced = False
                elif entry.scanned and not entry.announced:
                    entry.announced = True
                    self._events.put_nowait(CardImported(entry.card))
