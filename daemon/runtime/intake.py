"""The intake stage: settled files → spool → journal.

Watch-folder photos are hashed where they are; card photos are copied into the spool in
batches, each copy hashed, the flush of one batch overlapping the copy of the next; GPX files go
to the GPX library; a file that cannot be taken is set aside, said once. A card is "safe to
remove" only once every one of its files is durable in the spool and journaled. Anything
unexpected while taking one file costs that file (counted, offered again, quarantined after
QUARANTINE_AFTER failures in a row), never the intake.
"""

from __future__ import annotations

import asyncio
from typing import Any

from daemon.core import config, log
from daemon.core.files import NotRegularFile, is_photo, is_track
from daemon.core.hashing import hash_file
from daemon.intake import (
    BatchReady,
    CardImported,
    CardInserted,
    CardRemoved,
    SettledFile,
    SourceEvent,
    SourceGone,
    Sources,
    commit_staged,
    import_file,
    stage_files,
)
from daemon.journal import (
    ASIDE_META,
    GPX_META,
    AsyncJournal,
    FileFailures,
    NewFile,
    journal_trouble,
)
from daemon.runtime.process import GpxLibrary
from daemon.runtime.roots import RootActivity, RootState
from daemon.runtime.state import RunStats, StatusBoard, Wakeups

MB = 1 << 20  # as max_photo_mb and min_free_mb count
INTAKE_BATCH = 64  # watch-folder files hashed before a journal commit
INTAKE_FLUSH_SECONDS = 1.0
# Card files copied per flush of the spool: measured best of 16-256 (bench_daemon), bigger
# batches leave the copy and the flush less time side by side.
CARD_BATCH = 64


class Intake:
    def __init__(
        self,
        *,
        settings: config.Settings,
        journal: AsyncJournal,
        sources: Sources,
        gpx: GpxLibrary,
        aside: dict[str, list[float]],
        wake: Wakeups,
        stats: RunStats,
        activity: RootActivity,
        board: StatusBoard,
        failures: FileFailures | None = None,
    ) -> None:
        self.settings = settings
        self.journal = journal
        self.failures = failures or FileFailures(journal)
        self.sources = sources
        self.gpx = gpx
        self.wake = wake
        self.stats = stats
        self.activity = activity
        self.board = board
        self.log = log.get("daemon")
        self._aside = aside  # path → [size, mtime] of files set aside
        self._pending: list[NewFile] = []  # hashed watch-folder files, to journal
        self._copied: list[NewFile] = []  # card files durable in the spool, to journal
        self._card_files: list[SettledFile] = []
        self._card_done: set[str] = set()  # cards announced imported, files maybe still queued
        self._busy = False
        self._commit: tuple[list[SettledFile], asyncio.Future[Any]] | None = None  # being flushed
        self._flush_lock = asyncio.Lock()  # one flush of the intake at a time

    @property
    def busy(self) -> bool:
        """Handling an event or flushing: --once must not take this moment for quiet."""
        return self._busy

    async def run(self) -> None:
        getter: asyncio.Future[SourceEvent] | None = None
        try:
            while not self.wake.stopping.is_set():
                # The same get() survives a timeout, so no event is ever dropped between polls.
                getter = getter or asyncio.ensure_future(self.sources.next_event())
                done, _ = await asyncio.wait({getter}, timeout=INTAKE_FLUSH_SECONDS)
                if not done:
                    self._busy = True
                    try:
                        await self.flush()
                    finally:
                        self._busy = False
                    continue
                event, getter = getter.result(), None
                self._busy = True
                try:
                    await self._handle(event)
                    # Copied card files are journaled with the next batch's copy, not alone.
                    if len(self._pending) >= INTAKE_BATCH or len(self._card_files) >= CARD_BATCH:
                        await self.flush(drain=False)
                finally:
                    self._busy = False
        finally:
            if getter is not None:
                getter.cancel()

    async def _handle(self, event: SourceEvent) -> None:
        match event:
            case SettledFile():
                await self._take_fenced(event)
            case CardInserted():
                self.activity.importing.add(str(event.root))
                self._card_done.discard(str(event.root))
                self.board.note(str(event.root), RootState.CARD_INSERTED)
                self.log.info("card_inserted", root=str(event.root), card=event.card_id)
            case CardImported():
                # Every file has been handed on; the card is done once they are all copied
                # (later, if the copy is paused because the disk is full).
                self._card_done.add(str(event.root))
                await self.flush()
            case CardRemoved():
                self.activity.importing.discard(str(event.root))
                self._card_done.discard(str(event.root))
                self.board.note(str(event.root), RootState.CARD_REMOVED)
                self.log.info("card_removed", root=str(event.root))
            case BatchReady():
                await self.flush()
                self.wake.process.set()
        if not isinstance(event, SettledFile | BatchReady):
            # Rare, and the user waits on it ("you may remove it"): shown now, not in 10 s.
            await self.board.save()

    def _finish_cards(self) -> None:
        """Cards whose files are all copied and journaled: free to remove, ready to process."""
        if self._card_files or self._pending or self._copied or self._commit is not None:
            return
        for root in sorted(self._card_done):
            self.activity.importing.discard(root)
            self.board.note(root, RootState.CARD_IMPORTED)
            self.log.info("card_imported", root=root)
            self.wake.process.set()
        self._card_done.clear()

    async def _take_fenced(self, f: SettledFile) -> None:
        """Take one file; an unexpected failure costs that file: counted, the file offered
        again once it settles anew, and after QUARANTINE_AFTER in a row left alone until it
        changes (the quarantine is journaled: a restart does not try it again)."""
        key, version = str(f.path), [f.size, f.mtime]
        if await self.failures.quarantined(key, version):
            return  # said when it was quarantined
        try:
            await self._take_file(f)
        except Exception as exc:
            if journal_trouble(exc):
                raise
            failure = await self.failures.failed(key, key, exc, "taking it in", version)
            if failure.quarantined:
                self.stats.rejected += 1
                await self.journal.record_event("set_aside", f"{f.path}: {failure.reason}")
            else:
                self.sources.recheck(f.path)
            return
        await self.failures.cleared(key)

    async def _take_file(self, f: SettledFile) -> None:
        self.activity.touch(str(f.root))
        if not f.complete:
            await self._set_aside(f, f.reason or "incomplete file")
            return
        if is_track(f.path.name):
            await self._take_gpx(f)
            return
        too_big = self._too_big(f)
        if too_big:
            await self._set_aside(f, too_big)
            return
        seen = await self.journal.lookup_path(f.path)
        if seen and seen[1] == f.size and abs(seen[2] - f.mtime) < 1e-6:
            self.stats.known += 1
            return
        if f.kind == "card":
            # Copied in batches: one flush of the spool per batch, not per photo (SD wear).
            self._card_files.append(f)
            return
        try:
            digest, size = await asyncio.to_thread(hash_file, f.path)
        except NotRegularFile as exc:  # a FIFO renamed over it since it settled
            await self._set_aside(f, exc.strerror or str(exc))
            return
        except OSError as exc:
            self._gone(f, exc)
            return
        self._pending.append(NewFile(digest, f.path, "watch", f.root, size, f.mtime))

    def _too_big(self, f: SettledFile) -> str | None:
        """Why a photo is over the size cap (a bigger "photo" is no camera's), or None."""
        cap = self.settings.max_photo_mb
        if not is_photo(f.path.name) or f.size <= cap * MB:
            return None
        size = f"{f.size / MB:.0f} MB" if f.size < 1024 * MB else f"{f.size / MB / 1024:.1f} GB"
        return f"larger than max_photo_mb {cap:g} MB: {size}"

    def _gone(self, f: SettledFile, exc: Exception) -> None:
        """The file vanished or changed under us: offer it again once it settles anew."""
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        self.log.warning("file_not_read", file=str(f.path), reason=reason)
        self.sources.recheck(f.path)

    async def _set_aside(self, f: SettledFile, reason: str) -> None:
        """A file that cannot be taken as it is: said once (per size and mtime), across runs."""
        if self._aside.get(str(f.path)) == [f.size, f.mtime]:
            return
        self.stats.rejected += 1
        self.log.error("file_set_aside", file=str(f.path), reason=reason)
        self._aside[str(f.path)] = [f.size, f.mtime]
        await self.journal.set_meta(ASIDE_META, self._aside)
        await self.journal.record_event("set_aside", f"{f.path}: {reason}")

    async def _take_gpx(self, f: SettledFile) -> None:
        spool = self.settings.spool_path
        try:
            if f.kind == "card":
                got = await asyncio.to_thread(import_file, f.path, spool / "gpx")
                digest, path = got.hash, str(got.spool_path)
            else:
                digest, _ = await asyncio.to_thread(hash_file, f.path)
                path = str(f.path)
        except (SourceGone, OSError) as exc:
            self.log.warning("gpx_unreadable", file=str(f.path), reason=str(exc))
            return
        if self.gpx.add(digest, path):
            await self.journal.set_meta(GPX_META, self.gpx.known)
            self.log.info("gpx_added", file=str(f.path))
            self.wake.process.set()

    # -- card batches: copy, flush, journal ---------------------------------------------------

    async def _import_cards(self) -> None:
        """Copy the queued card files into the spool (each copy hashed) as one batch, while
        the batch before it is made durable: copying and flushing overlap."""
        # Paused (the disk is full): the files are kept queued until there is room.
        if self._card_files and self.wake.room.is_set():
            spool = self.settings.spool_path
            files, self._card_files = self._card_files, []
            staged = await asyncio.to_thread(stage_files, [f.path for f in files], spool)
            await self._collect_commit()
            commit = asyncio.to_thread(commit_staged, staged, spool)
            self._commit = (files, asyncio.ensure_future(commit))

    async def _collect_commit(self) -> None:
        """Take the results of the batch being flushed (the journal writes come after this)."""
        if self._commit is None:
            return
        files, task = self._commit
        try:
            # Shielded: a stop during the wait leaves the flush running for shutdown to collect.
            results = await asyncio.shield(task)
        except OSError as exc:  # the spool itself cannot be written: try again later
            self._commit = None
            spool = str(self.settings.spool_path)
            self.log.error("spool_write_failed", spool=spool, reason=str(exc))
            self._card_files = files + self._card_files
            return
        self._commit = None
        for f, got in zip(files, results, strict=True):
            if isinstance(got, NotRegularFile):
                await self._set_aside(f, got.strerror or str(got))
            elif isinstance(got, Exception):
                self._gone(f, got)
            else:
                self._copied.append(
                    NewFile(got.hash, f.path, "card", f.root, got.size, f.mtime, got.spool_path)
                )

    async def flush(self, drain: bool = True) -> None:
        """Journal what is durable while the next card batch is being copied (the journal's
        commit would otherwise hold up the copy); ``drain`` also flushes and journals the batch
        in flight, so that nothing is left queued unless imports are paused.

        Shielded and locked: files are taken off the queues before their copy or journal write
        ends, so a stop (the intake cancelled) must not cut a flush short, or shutdown's own
        flush would find the queues empty and announce a card imported without them; and
        --once's flush and the intake's must not collect the same batch twice."""
        await asyncio.shield(self._flush_locked(drain))

    async def _flush_locked(self, drain: bool) -> None:
        async with self._flush_lock:
            await asyncio.gather(self._import_cards(), self._journal_pending())
            if drain:
                await self._collect_commit()
                await self._journal_pending()
            self._finish_cards()

    async def _journal_pending(self) -> None:
        if not (self._pending or self._copied):
            return
        entries = self._pending + self._copied
        self._pending, self._copied = [], []
        added = await self.journal.add_files(entries)
        new = sum(added)
        self.stats.imported += new
        self.stats.known += len(added) - new
        if new:
            self.log.info("imported", files=new, already_known=len(added) - new)
        self.wake.process.set()
