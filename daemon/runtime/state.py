"""What the daemon's stages share: the events they wake each other with, this run's figures,
and the status board each writes its own part of (saved in the journal for ``status``)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from daemon.journal import RUNTIME_META, AsyncJournal
from daemon.pipeline.dates import repeated_hour_hint
from daemon.pipeline.provenance import Provenance
from daemon.runtime.roots import CardSafety, RootState, shown_states
from daemon.upload.worker import SequenceResult


def _set_event() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


@dataclass
class Wakeups:
    """The events one stage sets and another waits on: no stage calls another."""

    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    process: asyncio.Event = field(default_factory=asyncio.Event)  # batches may be ready
    upload: asyncio.Event = field(default_factory=asyncio.Event)  # sequences may be due
    room: asyncio.Event = field(default_factory=_set_event)  # clear: card imports paused


@dataclass
class Runtime:
    """What `status` shows about the running daemon (saved in the journal's meta table)."""

    pid: int = field(default_factory=os.getpid)
    started: float = field(default_factory=time.time)
    activity: str = "starting"
    server: str = "not contacted yet"
    paused: str | None = None
    upload_rate: float = 0.0
    roots: dict[str, RootState] = field(default_factory=dict)
    stopped: bool = False
    web: str | None = None  # the status page's address, when it is served
    # The GPS receiver as gpsd reports it; None when no ``gpsd`` is configured. Keys:
    # state ("no gpsd" | "no fix" | "fix"), server, satellites (int | None), mode (0-3),
    # last_fix (ISO time | None), track (file name of the daemon's own log | None), fixes (int).
    gps: dict[str, Any] | None = None
    # The zone and camera clock offset in use and what the photos say about them. Keys: tz
    # (the --tz meaning), time_offset (seconds), source ("config" | "auto" | "default"),
    # suggestion ({"tz", "time_offset", "confidence", "photos", "reason"} | None); with source
    # "auto" also confidence once found (daemon.runtime.clock fills it).
    clock: dict[str, Any] | None = None
    # Why photos wait, reason → how many (settling, card copying, batch_quiet, position, ...).
    waiting: dict[str, int] = field(default_factory=dict)
    waiting_why: dict[str, str] = field(default_factory=dict)  # reason → a few words of detail

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RunStats:
    """Figures of this run, for `--once`, the demo and the logs."""

    imported: int = 0
    known: int = 0
    sequences: int = 0
    images: int = 0
    duplicates: int = 0
    waiting: int = 0
    rejected: int = 0
    finished: int = 0
    failed: int = 0
    not_copied: int = 0  # card files left off the spool (its disk full or failing)
    no_token: bool = False  # --once: no token, or a refused one (exit 2, as `upload`)
    results: list[SequenceResult] = field(default_factory=list)
    left: dict[str, int] = field(default_factory=dict)  # what --once could not do → how many
    # where the described photos' values came from, and the zone labels their times got
    provenance: Provenance = field(default_factory=Provenance)
    # photo (hash) → its name, for those in the hour repeated when summer time ends
    repeated_hour: dict[str, str] = field(default_factory=dict)

    def figures(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if isinstance(v, int)}

    def details(self) -> list[str]:
        """The lines under :meth:`line`: where the photos' values came from, and photos whose
        camera time may be an hour off."""
        lines = [self.provenance.line(), repeated_hour_hint(list(self.repeated_hour.values()))]
        return [line for line in lines if line]

    def line(self) -> str:
        """The one-line summary `run --once` prints."""
        return (
            f"{self.imported} new photos ({self.known} already known), "
            f"{self.sequences} sequences of {self.images} images made, "
            f"{self.duplicates} duplicates skipped, {self.waiting} waiting for a position, "
            f"{self.rejected} set aside; {self.finished} sequences uploaded, "
            f"{self.failed} failed or still queued"
        ) + "".join(f"; {n} {what}" for what, n in self.left.items() if n)


class StatusBoard:
    """The runtime status, saved in the journal when it changed (rarely: spares the SD card).

    ``live`` gives the sources' own state per root (watching, N settling, missing, ...);
    ``missing`` the roots missing now: a change there is saved within a second or so (a user
    looks at `status` right when a drive is pulled), not at the next routine save."""

    def __init__(
        self,
        runtime: Runtime,
        journal: AsyncJournal,
        live: Callable[[], dict[str, str]],
        missing: Callable[[], set[str]] = set,
    ) -> None:
        self.runtime = runtime
        self.journal = journal
        self.live = live
        self.cards: dict[str, CardSafety] = {}  # card mount → may it go, and why not
        self.missing = missing
        self._saved = ""
        self._saved_missing: set[str] = set()
        # Fills in what is read rather than noted (why photos wait), just before a save.
        self.before_save: Callable[[], Awaitable[None]] | None = None

    def missing_changed(self) -> bool:
        return self.missing() != self._saved_missing

    def note(self, root: str, state: RootState) -> None:
        self.runtime.roots[root] = state

    def snapshot(self) -> dict[str, Any]:
        snapshot = self.runtime.as_dict()
        roots = snapshot["roots"] = shown_states(self.live(), self.runtime.roots)
        snapshot["cards"] = {}
        for mount, card in self.cards.items():
            state = card.state(roots.get(mount, ""), self.runtime.paused)
            snapshot["cards"][mount] = {"safe_to_remove": card.safe, "state": state}
            if card.trouble:
                roots[mount] = state  # the sources would say "all files handed on"
        return snapshot

    async def save(self, force: bool = False) -> None:
        if self.before_save is not None:
            await self.before_save()
        self._saved_missing = self.missing()
        snapshot = self.snapshot()
        text = repr(snapshot)
        if force or text != self._saved:
            await self.journal.set_meta(RUNTIME_META, snapshot)
            self._saved = text
