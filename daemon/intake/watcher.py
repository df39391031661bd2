"""The watchdog bridge: one observer for every root, its events handed to the asyncio loop.

The observer thread only records which paths saw events and schedules one drain per burst on
the loop (``call_soon_threadsafe``); what the paths mean is decided there. When inotify runs
out of watches or instances (errno 28, 24), every root is polled instead, and the log says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import threading
from collections.abc import Callable
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

FALLBACK_POLL_SECONDS = 2.0
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
_OUT_OF_INOTIFY = (errno.ENOSPC, errno.EMFILE)

Hints = dict[Path, bool]  # path that saw events → is it a folder (to rescan whole)?


class _Handler(FileSystemEventHandler):
    """Runs on the observer thread: records the path and wakes the loop, nothing else."""

    def __init__(self, watcher: Watcher) -> None:
        self._watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        dest = getattr(event, "dest_path", None)
        if dest:  # a move: the file is reported where it went; its old folder is pruned
            self._watcher.from_thread(os.fsdecode(dest), event.is_directory)
            self._watcher.from_thread(os.fsdecode(event.src_path), event.is_directory, moved=True)
        else:
            self._watcher.from_thread(os.fsdecode(event.src_path), event.is_directory)


class Watcher:
    """ONE watchdog observer for every root; a PollingObserver when ``poll_interval`` is set
    (network mounts) or when inotify runs out of watches or instances.

    ``on_hints`` is called on the loop with ``{path: is_dir}`` for paths that saw events; the
    observer thread only adds to a locked dict and schedules one drain per burst.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_hints: Callable[[Hints], None],
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
        self._pending: Hints = {}
        self.log = log.get("sources")

    @property
    def poll_seconds(self) -> float:
        """How often roots are polled, once polling."""
        return self.poll_interval or FALLBACK_POLL_SECONDS

    def start(self) -> None:
        try:
            # watchdog may open its inotify instance here already (errno 24 when none is left)
            self._observer = self._new_observer()
            self._observer.start()
        except OSError as exc:
            if self.polling or exc.errno not in _OUT_OF_INOTIFY:
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
                if exc.errno not in _OUT_OF_INOTIFY or self.polling:
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
            return PollingObserver(timeout=self.poll_seconds)
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
            fallback=f"polling every {self.poll_seconds:g} s",
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

    def from_thread(self, path: str, is_dir: bool, moved: bool = False) -> None:
        """Called on the observer thread for each path an event names."""
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
