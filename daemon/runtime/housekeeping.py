"""The housekeeping stage: disk space (card imports pause below min_free_mb), spool copies of
finished sequences removed after keep_days (sooner under disk pressure), status saved, and the
journal watched (deleted or replaced: the daemon stops)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from daemon.core import config, log
from daemon.core.aio import wait_event
from daemon.intake import free_mb, remove_spool_file
from daemon.journal import AsyncJournal, FileState, Journal, JournalGone, SequenceState
from daemon.runtime.state import StatusBoard, Wakeups

RUNTIME_SAVE_SECONDS = 10.0  # runtime status writes, rare to spare the SD card
MISSING_CHECK_SECONDS = 1.0  # ... but a root going missing or coming back is shown at once
HOUSEKEEPING_SECONDS = 60.0
JOURNAL_CHECK_SECONDS = 2.0  # a few stats, no SQL: a journal gone is noticed within this


class Housekeeping:
    def __init__(
        self,
        *,
        settings: config.Settings,
        journal: AsyncJournal,
        wake: Wakeups,
        board: StatusBoard,
    ) -> None:
        self.settings = settings
        self.journal = journal
        self.wake = wake
        self.board = board
        self.log = log.get("daemon")
        self._cleaned: set[str] = set()  # finished sequences whose spool copies are gone

    async def run(self) -> None:
        last_clean = 0.0
        while not self.wake.stopping.is_set():
            routine = time.monotonic() - last_clean >= HOUSEKEEPING_SECONDS
            if routine:
                last_clean = time.monotonic()
            await self.check_disk(routine)
            await self.board.save()
            deadline = time.monotonic() + RUNTIME_SAVE_SECONDS
            while time.monotonic() < deadline and not self.board.missing_changed():
                if await wait_event(self.wake.stopping, MISSING_CHECK_SECONDS):
                    break

    async def watch_journal(self) -> None:
        """Raise JournalGone once the journal file was deleted or replaced (or its folder
        removed): what the daemon did from then on would not be remembered, and a restart on
        a new journal would upload everything again. Writes refuse by themselves; this notices
        it while nothing is being written."""
        while not self.wake.stopping.is_set():
            reason = await self.journal.check_in_place()
            if reason:
                raise JournalGone(reason)
            await wait_event(self.wake.stopping, JOURNAL_CHECK_SECONDS)

    async def check_disk(self, routine: bool = True) -> None:
        """Pause card imports (``wake.room`` cleared) while the spool's disk is short of
        min_free_mb after removing what may go; clean the spool routinely otherwise."""
        spool, runtime = self.settings.spool_path, self.board.runtime
        free = await asyncio.to_thread(free_mb, spool)
        if free < self.settings.min_free_mb:
            freed = await self._clean_spool(force=True)
            free = await asyncio.to_thread(free_mb, spool)
            if free < self.settings.min_free_mb:
                if self.wake.room.is_set():
                    self.log.warning(
                        "import_paused",
                        free_mb=round(free),
                        min_free_mb=self.settings.min_free_mb,
                        freed_files=freed,
                    )
                runtime.paused = (
                    f"card import paused: {free:.0f} MB free, "
                    f"below min_free_mb {self.settings.min_free_mb:.0f}"
                )
                self.wake.room.clear()
                return
        elif routine:
            await self._clean_spool(force=False)
        if not self.wake.room.is_set():
            self.log.info("import_resumed", free_mb=round(free))
            runtime.paused = None
            self.wake.room.set()

    async def _clean_spool(self, force: bool) -> int:
        """Remove spool copies of finished sequences after keep_days (any age when ``force``)."""
        keep = 0.0 if force else self.settings.keep_days * 86400

        cleaned = self._cleaned

        def clean(j: Journal) -> tuple[list[tuple[str, str]], set[str]]:
            old = time.time() - keep
            victims, done = [], set()
            for seq in j.sequences_in_state(SequenceState.FINISHED):
                # Each finished sequence is looked at once per run, not every minute forever.
                if seq.uuid in cleaned or not (seq.finished_at and seq.finished_at <= old):
                    continue
                done.add(seq.uuid)
                victims += [
                    (r.hash, r.spool_path) for r in j.sequence_images(seq.uuid) if r.spool_path
                ]
            return victims, done

        victims, done = await self.journal.run(clean)
        for _file_hash, path in victims:
            # With the spool given, a path outside it is refused: never a user's original.
            await asyncio.to_thread(remove_spool_file, Path(path), self.settings.spool_path)

        def forget(j: Journal) -> None:
            with j.transaction():
                for file_hash, _ in victims:
                    j.set_file_state(file_hash, FileState.FINISHED, spool_path=None)

        if victims:
            await self.journal.run(forget)
            self.log.info("spool_cleaned", files=len(victims))
        self._cleaned |= done
        return len(victims)
