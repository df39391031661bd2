"""The intake stage: settled files → spool → journal.

Watch-folder photos are hashed where they are; card photos are copied into the spool in
batches, each copy hashed, the flush of one batch overlapping the copy of the next; GPX files go
to the GPX library; a file that cannot be taken is set aside, said once. A card is "safe to
remove" only once every one of its files is durable in the spool and journaled (or set aside).
Anything unexpected while taking one file costs that file (counted, offered again,
quarantined after QUARANTINE_AFTER failures in a row), never the intake.

A copy that fails on our side (the spool's disk full or failing) is not the card's fault: its
files stay queued, are tried again with a growing pause (said once when it starts and once when
it ends), and the card is not safe to remove meanwhile. Only a file gone from the card (pulled
out) is given back to the sources, to be offered again when it is there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
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
    SpoolError,
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
from daemon.runtime.roots import CardSafety, RootActivity, RootState
from daemon.runtime.state import RunStats, StatusBoard, Wakeups

MB = 1 << 20  # as max_photo_mb and min_free_mb count
INTAKE_BATCH = 64  # watch-folder files hashed before a journal commit
INTAKE_FLUSH_SECONDS = 1.0
# Card files copied per flush of the spool: measured best of 16-256 (bench_daemon), bigger
# batches leave the copy and the flush less time side by side.
CARD_BATCH = 64
# Pauses between tries while copies into the spool fail: doubled after each try that copied
# nothing, back to the shortest after one that copied something.
RETRY_MIN_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0


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
        self._card_files: list[SettledFile] = []  # card files (photos and tracks) to copy
        self._staging: list[SettledFile] = []  # being copied, before their flush
        self._held: list[SettledFile] = []  # their copy failed on our side: tried again later
        self._trouble: str | None = None  # why copies into the spool fail, while they do
        self._trouble_since = 0.0
        self._retry_delay = RETRY_MIN_SECONDS
        self._retry_at = 0.0  # time.monotonic() of the next try while in trouble
        self._card_done: set[str] = set()  # every file handed on, maybe not all copied yet
        self._imported: set[str] = set()  # cards announced imported (said once per insertion)
        self._board_changed = False  # a card's safety changed: status shows it at once
        self._shown: dict[str, tuple[str, float] | None] = {}  # card → trouble shown
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
                root = str(event.root)
                self.activity.importing.add(root)
                self._card_done.discard(root)
                self._imported.discard(root)
                self.board.cards[root] = CardSafety()
                self.board.note(root, RootState.CARD_INSERTED)
                self.log.info("card_inserted", root=root, card=event.card_id)
            case CardImported():
                # Every file has been handed on (unless one was offered again since); the
                # card is done once they are all copied (later, if copies are paused or fail).
                if self.sources.still_imported(event):
                    self._card_done.add(str(event.root))
                await self.flush()
            case CardRemoved():
                root = str(event.root)
                self.activity.importing.discard(root)
                self._card_done.discard(root)
                # Its files come again when it does; the journal knows which it already has.
                self._held = [f for f in self._held if str(f.root) != root]
                safety = self.board.cards.setdefault(root, CardSafety())
                safety.removed, safety.safe = True, root in self._imported
                safety.trouble = None
                self.board.note(root, RootState.CARD_REMOVED)
                self.log.info("card_removed", root=root)
            case BatchReady():
                await self.flush()
                self.wake.process.set()
        if not isinstance(event, SettledFile | BatchReady):
            # Rare, and the user waits on it ("you may remove it"): shown now, not in 10 s.
            await self.board.save()

    def _waiting(self, root: str) -> int:
        """Files of the card ``root`` not yet journaled: queued, being copied, held or in the
        batch being flushed."""
        flushing = self._commit[0] if self._commit is not None else []
        queued = [*self._card_files, *self._staging, *self._held, *flushing]
        return sum(1 for f in queued if str(f.root) == root) + sum(
            1 for n in self._copied if str(n.source_root) == root
        )

    def copying(self) -> int:
        """Card files not in the spool yet: queued, being copied or held (for `status`)."""
        return len(self._card_files) + len(self._staging) + len(self._held)

    def _finish_cards(self) -> None:
        """Cards whose files are all copied and journaled: free to remove, ready to process."""
        for root in sorted(self._card_done):
            if self._waiting(root):
                continue
            self._card_done.discard(root)
            self.activity.importing.discard(root)
            self.board.note(root, RootState.CARD_IMPORTED)
            self.board.cards[root] = CardSafety(safe=True)
            self._board_changed = True
            if root not in self._imported:
                self._imported.add(root)
                self.log.info("card_imported", root=root)
            self.wake.process.set()

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
        if f.kind == "card":
            self._card_taken_back(str(f.root))
        if is_track(f.path.name) and f.kind != "card":
            await self._take_gpx(f)
            return
        too_big = self._too_big(f)
        if too_big:
            await self._set_aside(f, too_big)
            return
        seen = await self.journal.lookup_path(f.path)
        if seen and seen[1] == f.size and abs(seen[2] - f.mtime) < 1e-6:
            self.stats.known += 1
            self.wake.upload.set()  # back in place (a folder restored): it may be awaited
            return
        if f.kind == "card":
            # Copied in batches: one flush of the spool per batch, not per photo (SD wear);
            # tracks with them, so that they wait, and are tried again, like the photos.
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

    def _card_taken_back(self, root: str) -> None:
        """A file of a card came (again) after the card was called imported: not safe to
        remove until it is journaled too."""
        if root in self._imported:
            self._imported.discard(root)
            self.activity.importing.add(root)
            self.board.cards[root] = CardSafety()
            self.board.note(root, RootState.CARD_INSERTED)

    def _gone(self, f: SettledFile, exc: Exception) -> None:
        """The file vanished or changed under us: offer it again once it settles anew."""
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        self.log.warning("file_not_read", file=str(f.path), reason=reason)
        if f.kind == "card":
            self._card_done.discard(str(f.root))  # the sources announce it again
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

    async def _take_gpx(self, f: SettledFile) -> SpoolError | None:
        """Add a track (a card's copied into the spool first); the error when the spool
        failed (the track is then to be tried again)."""
        spool = self.settings.spool_path
        try:
            if f.kind == "card":
                got = await asyncio.to_thread(import_file, f.path, spool / "gpx")
                digest, path = got.hash, str(got.spool_path)
            else:
                digest, _ = await asyncio.to_thread(hash_file, f.path)
                path = str(f.path)
        except SpoolError as exc:
            return exc
        except (SourceGone, OSError) as exc:
            self.log.warning("gpx_unreadable", file=str(f.path), reason=str(exc))
            return None
        if self.gpx.add(digest, path):
            await self.journal.set_meta(GPX_META, self.gpx.known)
            self.log.info("gpx_added", file=str(f.path))
            self.wake.process.set()
        return None

    # -- card batches: copy, flush, journal ---------------------------------------------------

    async def _import_cards(self) -> None:
        """Copy the queued card files into the spool (each copy hashed) as one batch, while
        the batch before it is made durable: copying and flushing overlap."""
        # Paused (the disk is below min_free_mb), or copies failing and the next try not due
        # yet: the files are kept queued until then.
        if not self.wake.room.is_set() or not (self._card_files or self._held):
            return
        if self._trouble is not None and time.monotonic() < self._retry_at:
            return
        files, self._held, self._card_files = self._held + self._card_files, [], []
        photos = [f for f in files if not is_track(f.path.name)]
        spool = self.settings.spool_path
        self._staging = files
        try:
            failed: list[tuple[SettledFile, OSError]] = []
            for f in files:
                if is_track(f.path.name) and (exc := await self._take_gpx(f)):
                    failed.append((f, exc))
            try:
                staged = await asyncio.to_thread(stage_files, [f.path for f in photos], spool)
            except SpoolError as exc:  # the spool's folder cannot be made
                staged = [exc] * len(photos)
        except BaseException:
            self._held = files + self._held  # never dropped: the card is not safe without them
            raise
        finally:
            self._staging = []
        # Copies that failed on our side are held at once, not flushed.
        pairs = list(zip(photos, staged, strict=True))
        failed += [(f, got) for f, got in pairs if isinstance(got, SpoolError)]
        keep = [(f, got) for f, got in pairs if not isinstance(got, SpoolError)]
        self._copies_done(failed, len(files) - len(failed))
        await self._collect_commit()
        if keep:
            commit = asyncio.to_thread(commit_staged, [got for _, got in keep], spool)
            self._commit = ([f for f, _ in keep], asyncio.ensure_future(commit))

    async def _collect_commit(self) -> None:
        """Take the results of the batch being flushed (the journal writes come after this)."""
        if self._commit is None:
            return
        files, task = self._commit
        try:
            # Shielded: a stop during the wait leaves the flush running for shutdown to collect.
            results = await asyncio.shield(task)
        except OSError as exc:  # the spool's flush failed: the whole batch again, later
            self._commit = None
            self._copies_done([(f, exc) for f in files], 0)
            return
        self._commit = None
        failed: list[tuple[SettledFile, OSError]] = []
        for f, got in zip(files, results, strict=True):
            if isinstance(got, NotRegularFile):
                await self._set_aside(f, got.strerror or str(got))
            elif isinstance(got, SpoolError):
                failed.append((f, got))  # our disk, not the card: the file is fine
            elif isinstance(got, SourceGone):
                self._gone(f, got)
            elif isinstance(got, OSError):  # there, but the card will not let us read it
                await self._set_aside(f, f"cannot be read: {got.strerror or got}")
            else:
                self._copied.append(
                    NewFile(got.hash, f.path, "card", f.root, got.size, f.mtime, got.spool_path)
                )
        self._copies_done(failed, len(files) - len(failed))

    def _copies_done(self, failed: Sequence[tuple[SettledFile, OSError]], copied: int) -> None:
        """After a try: hold what failed on our side for the next one (sooner when the try
        got somewhere), and say so once when copies start or stop failing, or the reason
        changes; never once per file or per try."""
        now = time.monotonic()
        if failed:
            self._held += [f for f, _ in failed]
            exc = failed[-1][1]
            reason = exc.strerror or str(exc)
            if self._trouble is None or copied:
                self._retry_delay = RETRY_MIN_SECONDS
            else:
                self._retry_delay = min(self._retry_delay * 2, RETRY_MAX_SECONDS)
            self._retry_at = now + self._retry_delay
            if reason != self._trouble:
                if self._trouble is None:
                    self._trouble_since = now
                self.log.warning(
                    "card_copy_failing",
                    reason=reason,
                    spool=str(self.settings.spool_path),
                    files=len(self._held),
                    hint="the card is not safe to remove; copies are tried again by themselves",
                )
                self._trouble = reason
        elif self._trouble is not None and copied and not self._held:
            self.log.info(
                "card_copy_resumed",
                after_seconds=round(now - self._trouble_since),
                spool=str(self.settings.spool_path),
            )
            self._trouble, self._retry_delay = None, RETRY_MIN_SECONDS
        self._show_trouble()

    def _show_trouble(self) -> None:
        """Each card with files held says how many and why (status shows it instead of the
        sources' "all files handed on"). Saved at once when that starts, ends or the pause
        grows; a count that changes is left to the routine save (SD card wear)."""
        why = (self._trouble, self._retry_delay) if self._trouble is not None else None
        for root, safety in self.board.cards.items():
            held = any(str(f.root) == root for f in self._held)
            shown = why if held else None
            self._board_changed |= self._shown.get(root) != shown
            self._shown[root] = shown
            safety.trouble = None
            if shown is not None:
                safety.trouble = (
                    f"{self._waiting(root)} file(s) not copied into the spool: {self._trouble}; "
                    f"trying again every {self._retry_delay:.0f} s"
                )

    def left_over(self) -> dict[str, int]:
        """What the intake could not take, by reason, for the summary of ``run --once``."""
        waiting = len(self._held) + len(self._card_files)
        if not waiting:
            return {}
        why = self._trouble or self.board.runtime.paused or "not copied yet"
        return {f"card files not copied: {why}": waiting}

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
            if self._board_changed:  # the user waits on it: shown now, not in 10 s
                self._board_changed = False
                await self.board.save()

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
        if len(added) > new:  # seen again at a new place: maybe photos waiting for their source
            self.wake.upload.set()
        self.wake.process.set()
