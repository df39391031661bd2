"""The daemon: one asyncio process wiring sources → import → journal → pipeline → uploader.

``Daemon`` owns the lifecycle (``startup``, ``main``, ``shutdown``). Background work is a fixed set
of named tasks created in ``main`` and awaited there; signals only set flags. Every decision is
taken from the journal, so a restart (or a power cut) resumes from where the journal says.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.core import auth, config, log
from daemon.core.aio import wait_event
from daemon.intake.sources import (
    BatchReady,
    CardImported,
    CardInserted,
    CardRemoved,
    SettledFile,
    SourceEvent,
    Sources,
)
from daemon.intake.spool import (
    SourceGone,
    clean_spool_temps,
    commit_staged,
    free_mb,
    hash_file,
    import_file,
    remove_spool_file,
    stage_files,
)
from daemon.journal import (
    ASIDE_META,
    GPX_META,
    RUNTIME_META,
    AsyncJournal,
    FileRow,
    FileState,
    Journal,
    NewFile,
    SequenceState,
)
from daemon.mapillary import AuthError
from daemon.mapillary import MapillaryError as UploadError
from daemon.pipeline import PipelineOptions, dates
from daemon.pipeline.dates import parse_zone
from daemon.runtime.process import (
    BatchOutcome,
    BatchPlan,
    GpxLibrary,
    apply_plan,
    plan_batch,
)
from daemon.upload.client import UploadClient
from daemon.upload.events import UploadEvent
from daemon.upload.worker import SequenceResult, SequenceUploader

INTAKE_BATCH = 64  # watch-folder files hashed before a journal commit
INTAKE_FLUSH_SECONDS = 1.0
# Card files copied per flush of the spool: measured best of 16-256 (bench_daemon), bigger
# batches leave the copy and the flush less time side by side.
CARD_BATCH = 64
RUNTIME_SAVE_SECONDS = 10.0  # runtime status writes, rare to spare the SD card
HOUSEKEEPING_SECONDS = 60.0
OFFLINE_BACKOFF_MAX = 60.0
WAITING = (FileState.WAITING_FOR_POSITION,)
WAITING_RECHECK_SECONDS = 60.0  # photos waiting for a GPX: is their wait over?
# Photos of one root planned at once: a 50,000-photo card goes through in pieces, so memory
# stays bounded (the whole card at once took ~180 MB).
PROCESS_CHUNK = 5000


@dataclass
class Runtime:
    """What `status` shows about the running daemon (saved in the journal's meta table)."""

    pid: int = field(default_factory=os.getpid)
    started: float = field(default_factory=time.time)
    activity: str = "starting"
    server: str = "not contacted yet"
    paused: str | None = None
    upload_rate: float = 0.0
    roots: dict[str, str] = field(default_factory=dict)
    stopped: bool = False

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
    results: list[SequenceResult] = field(default_factory=list)

    def figures(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if isinstance(v, int)}

    def line(self) -> str:
        """The one-line summary `run --once` prints."""
        return (
            f"{self.imported} new photos ({self.known} already known), "
            f"{self.sequences} sequences of {self.images} images made, "
            f"{self.duplicates} duplicates skipped, {self.waiting} waiting for a position, "
            f"{self.rejected} set aside; {self.finished} sequences uploaded, "
            f"{self.failed} failed or still queued"
        )


class Daemon:
    def __init__(self, settings: config.Settings, *, once: bool = False, token: str | None = None):
        self.settings = settings
        self.once = once
        self.token = token
        self.log = log.get("daemon")
        self.runtime = Runtime()
        self.stats = RunStats()
        self.stopping = asyncio.Event()
        self.process_wanted = asyncio.Event()
        self.upload_wanted = asyncio.Event()
        self.journal: AsyncJournal | None = None
        self.sources: Sources | None = None
        self.gpx = GpxLibrary()
        self._processed_version: dict[str, int] = {}
        self._last_activity: dict[str, float] = {}
        self._importing: set[str] = set()
        self._pending: list[NewFile] = []  # hashed watch-folder files, to journal
        self._copied: list[NewFile] = []  # card files durable in the spool, to journal
        self._card_files: list[SettledFile] = []
        self._card_done: set[str] = set()  # cards announced imported, files maybe still queued
        self._intake_busy = False
        self._commit: tuple[list[SettledFile], asyncio.Future[Any]] | None = None  # being flushed
        self._flush_lock = asyncio.Lock()  # one flush of the intake at a time
        self._maybe_due = True  # a batch may be waiting for its quiet period to end
        self._recheck_waiting: dict[str, float] = {}  # root → when to look at its waiting photos
        self._aside: dict[str, list[float]] = {}  # path → [size, mtime] of files set aside
        self._cleaned: set[str] = set()  # finished sequences whose spool copies are gone
        self._runtime_saved = ""
        self._bytes_window: list[tuple[float, int]] = []

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def spool(self) -> Path:
        return self.settings.spool_path

    async def startup(self) -> None:
        self.spool.mkdir(parents=True, exist_ok=True)
        left = await asyncio.to_thread(clean_spool_temps, self.spool)
        if left:
            self.log.info("spool_temps_removed", files=left, reason="copies cut off last time")
        self.journal = await AsyncJournal.open(self.settings.journal_path)
        known = await self.journal.get_meta(GPX_META, {}) or {}
        self.gpx.load_known(known)
        self._aside = await self.journal.get_meta(ASIDE_META, {}) or {}
        self.sources = Sources(
            watch=self.settings.watch,
            mount_roots=self.settings.mount_roots,
            extra=[self.settings.gpx_dir] if self.settings.gpx_dir else [],
            settle_seconds=self.settings.settle_seconds,
            batch_quiet_seconds=self.settings.batch_quiet_seconds,
            poll_interval=self.settings.poll_interval,
            ignore=[self.spool],
        )
        await self.sources.start()
        self.runtime.activity = "scanning"
        self.log.info(
            "daemon_started",
            journal=str(self.settings.journal_path),
            spool=str(self.spool),
            watch=[str(p) for p in self.settings.watch],
            mount_roots=[str(p) for p in self.settings.mount_roots],
            zone=self.zone_label,
            time_offset=self.settings.time_offset,
        )

    @property
    def zone_label(self) -> str:
        """The zone naive camera times are read in, named (a wrong one shifts every position)."""
        label = parse_zone(self.settings.tz)[1]
        return label if self.settings.tz else f"{label} (this machine's zone)"

    async def shutdown(self) -> None:
        if self.sources is not None:
            await self.sources.stop()
        if self.journal is not None:
            await self._flush_intake()
            self.runtime.stopped = True
            self.runtime.activity = "stopped"
            await self._save_runtime(force=True)
            await self.journal.aclose()
        self.log.info("daemon_stopped")

    def request_stop(self) -> None:
        self.stopping.set()
        self.process_wanted.set()
        self.upload_wanted.set()

    async def main(self) -> int:
        tasks = {
            asyncio.create_task(self._intake(), name="intake"),
            asyncio.create_task(self._housekeeping(), name="housekeeping"),
        }
        if self.once:
            # One pass, in order: no concurrent processing or upload loops.
            tasks.add(asyncio.create_task(self._stop_when_done(), name="once"))
        else:
            tasks.add(asyncio.create_task(self._process_loop(), name="process"))
            tasks.add(asyncio.create_task(self._upload_loop(), name="upload"))
        stop = asyncio.create_task(self.stopping.wait(), name="stop")
        done, _ = await asyncio.wait(tasks | {stop}, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks | {stop}:
            task.cancel()
        await asyncio.gather(*tasks, stop, return_exceptions=True)
        for task in done:
            if task is not stop and not task.cancelled() and task.exception():
                raise task.exception()  # type: ignore[misc]
        # A service stopped by SIGTERM has done its job (exit 0, or systemd marks it failed);
        # for --once the exit code tells cron whether something needs a look.
        if self.once and (self.stats.rejected or self.stats.failed):
            return 1
        return 0

    # -- intake: settled files → spool → journal ------------------------------------------------

    async def _intake(self) -> None:
        assert self.sources is not None
        getter: asyncio.Future[Any] | None = None
        try:
            while not self.stopping.is_set():
                # The same get() survives a timeout, so no event is ever dropped between polls.
                getter = getter or asyncio.ensure_future(self.sources.next_event())
                done, _ = await asyncio.wait({getter}, timeout=INTAKE_FLUSH_SECONDS)
                if not done:
                    self._intake_busy = True  # --once must not take this flush for quiet
                    try:
                        await self._flush_intake()
                    finally:
                        self._intake_busy = False
                    continue
                event, getter = getter.result(), None
                self._intake_busy = True
                try:
                    await self._handle(event)
                    # Copied card files are journaled with the next batch's copy, not alone.
                    if len(self._pending) >= INTAKE_BATCH or len(self._card_files) >= CARD_BATCH:
                        await self._flush_intake(drain=False)
                finally:
                    self._intake_busy = False
        finally:
            if getter is not None:
                getter.cancel()

    async def _handle(self, event: SourceEvent) -> None:
        match event:
            case SettledFile():
                await self._take_file(event)
            case CardInserted():
                self._importing.add(str(event.root))
                self._card_done.discard(str(event.root))
                self.runtime.roots[str(event.root)] = "card inserted, importing"
                self.log.info("card_inserted", root=str(event.root), card=event.card_id)
            case CardImported():
                # Every file has been handed on; the card is done once they are all copied
                # (later, if the copy is paused because the disk is full).
                self._card_done.add(str(event.root))
                await self._flush_intake()
            case CardRemoved():
                self._importing.discard(str(event.root))
                self._card_done.discard(str(event.root))
                self.runtime.roots[str(event.root)] = "card removed"
                self.log.info("card_removed", root=str(event.root))
            case BatchReady():
                await self._flush_intake()
                self.process_wanted.set()
        if not isinstance(event, SettledFile | BatchReady):
            # Rare, and the user waits on it ("you may remove it"): shown now, not in 10 s.
            await self._save_runtime()

    def _finish_cards(self) -> None:
        """Cards whose files are all copied and journaled: free to remove, ready to process."""
        if self._card_files or self._pending or self._copied or self._commit is not None:
            return
        for root in sorted(self._card_done):
            self._importing.discard(root)
            self.runtime.roots[root] = "card imported: you may remove it"
            self.log.info("card_imported", root=root)
            self.process_wanted.set()
        self._card_done.clear()

    async def _take_file(self, f: SettledFile) -> None:
        assert self.journal is not None
        root = str(f.root)
        self._last_activity[root] = time.monotonic()
        if not f.complete:
            await self._set_aside(f, f.reason or "incomplete file")
            return
        if f.path.suffix.lower() == ".gpx":
            await self._take_gpx(f)
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
        except OSError as exc:
            self._gone(f, exc)
            return
        self._pending.append(NewFile(digest, f.path, "watch", f.root, size, f.mtime))

    def _gone(self, f: SettledFile, exc: Exception) -> None:
        """The file vanished or changed under us: offer it again once it settles anew."""
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        self.log.warning("file_not_read", file=str(f.path), reason=reason)
        if self.sources is not None:
            self.sources.recheck(f.path)

    async def _set_aside(self, f: SettledFile, reason: str) -> None:
        """A file that cannot be taken as it is: said once (per size and mtime), across runs."""
        assert self.journal is not None
        if self._aside.get(str(f.path)) == [f.size, f.mtime]:
            return
        self.stats.rejected += 1
        self.log.error("file_set_aside", file=str(f.path), reason=reason)
        self._aside[str(f.path)] = [f.size, f.mtime]
        await self.journal.set_meta(ASIDE_META, self._aside)
        await self.journal.record_event("set_aside", f"{f.path}: {reason}")

    async def _import_cards(self) -> None:
        """Copy the queued card files into the spool (each copy hashed) as one batch, while
        the batch before it is made durable: copying and flushing overlap."""
        if self._card_files and not self.runtime.paused:  # paused: kept until there is room
            files, self._card_files = self._card_files, []
            staged = await asyncio.to_thread(stage_files, [f.path for f in files], self.spool)
            await self._collect_commit()
            commit = asyncio.to_thread(commit_staged, staged, self.spool)
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
            self.log.error("spool_write_failed", spool=str(self.spool), reason=str(exc))
            self._card_files = files + self._card_files
            return
        self._commit = None
        for f, got in zip(files, results, strict=True):
            if isinstance(got, Exception):
                self._gone(f, got)
            else:
                self._copied.append(
                    NewFile(got.hash, f.path, "card", f.root, got.size, f.mtime, got.spool_path)
                )

    async def _take_gpx(self, f: SettledFile) -> None:
        assert self.journal is not None
        try:
            if f.kind == "card":
                got = await asyncio.to_thread(import_file, f.path, self.spool / "gpx")
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
            self.process_wanted.set()

    async def _flush_intake(self, drain: bool = True) -> None:
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
        if not (self._pending or self._copied) or self.journal is None:
            return
        entries = self._pending + self._copied
        self._pending, self._copied = [], []
        added = await self.journal.add_files(entries)
        new = sum(added)
        self.stats.imported += new
        self.stats.known += len(added) - new
        if new:
            self.log.info("imported", files=new, already_known=len(added) - new)
            self._maybe_due = True
        self.process_wanted.set()

    # -- processing: settled batches → sequences ------------------------------------------------

    async def _process_loop(self) -> None:
        while not self.stopping.is_set():
            # Poll for quiet periods to end only while a batch is building up; an idle daemon
            # sleeps until new files (or a GPX) wake it, and rechecks waiting photos rarely.
            poll = self.settings.batch_quiet_seconds / 3 or 1.0
            await wait_event(
                self.process_wanted, poll if self._maybe_due else WAITING_RECHECK_SECONDS
            )
            self.process_wanted.clear()
            await self.process_ready()

    def _batch_ready(self, root: str) -> bool:
        if root in self._importing:
            return False
        if self.once:
            return True
        quiet = time.monotonic() - self._last_activity.get(root, 0.0)
        return quiet >= self.settings.batch_quiet_seconds

    async def process_ready(self) -> None:
        assert self.journal is not None
        # Counts per root first (cheap): rows are loaded only for a root that is due, so a card
        # importing batch after batch does not make us re-read every imported row each time.
        fresh = await self.journal.run(lambda j: j.roots_in_states([FileState.IMPORTED]))
        waiting = await self.journal.run(
            lambda j: j.roots_in_states([FileState.WAITING_FOR_POSITION])
        )
        options = PipelineOptions.from_settings(self.settings)
        self._maybe_due = False
        for root in sorted({*fresh, *waiting}):
            if not self._batch_ready(root):
                self._maybe_due = True  # look again when its quiet period has passed
                continue
            if (
                root not in fresh
                and self._processed_version.get(root) == self.gpx.version
                and time.monotonic() < self._recheck_waiting.get(root, 0.0)
            ):
                continue  # only photos waiting for a GPX, and no new GPX since the last look
            oldest = await self.journal.run(
                lambda j, r=root: j.oldest_of_root(r, [FileState.IMPORTED, *WAITING])
            )
            expired = oldest is not None and time.time() - oldest >= self.settings.position_wait
            self._recheck_waiting[root] = time.monotonic() + WAITING_RECHECK_SECONDS
            if (
                root not in fresh
                and not expired
                and self._processed_version.get(root) == self.gpx.version
            ):
                continue
            await self._process_root(root, options)

    async def _process_root(self, root: str, options: PipelineOptions) -> None:
        """Plan and journal a root's photos, PROCESS_CHUNK at a time; one batch_processed."""
        assert self.journal is not None
        self.runtime.roots[root] = "processing"
        # The file list is taken here, on the loop: a GPX added meanwhile is a new version.
        version, paths = self.gpx.snapshot()
        track = await asyncio.to_thread(self.gpx.build, version, paths)
        total = BatchOutcome(root)
        after, held = 0, []
        while not self.stopping.is_set():
            page, after = await self.journal.run(
                lambda j, a=after: j.files_of_root_page(
                    root, [FileState.IMPORTED, *WAITING], a, PROCESS_CHUNK
                )
            )
            rows, last = held + page, len(page) < PROCESS_CHUNK
            if not rows:
                break
            plan = await self._plan(root, rows, track, options)
            held = [] if last else _tail_from_last_sequence(plan, rows)
            if held:  # planned again without them: they go with the next chunk
                rows = rows[: len(rows) - len(held)]
                plan = await self._plan(root, rows, track, options)
            await self.journal.run(lambda j, p=plan: apply_plan(j, p))
            for _hash, path, reason in plan.rejected:
                self.log.warning("photo_set_aside", file=path, reason=reason)
            _add_outcome(total, plan.outcome)
            self.upload_wanted.set()  # a big card's first sequences go up while the rest waits
            if last:
                self._processed_version[root] = version
                break
        self._count(total)
        self.runtime.roots[root] = "idle"

    async def _plan(
        self, root: str, rows: list[FileRow], track: Any, options: PipelineOptions
    ) -> BatchPlan:
        try:
            return await asyncio.to_thread(
                plan_batch, root, rows, track, options, self.settings.position_wait
            )
        finally:
            # The pipeline caches each file name's sort key (up to 65,536): useful within a
            # batch, ~30 MB kept for good after a big card in a long-running daemon.
            dates._name_key.cache_clear()

    def _count(self, o: Any) -> None:
        self.stats.sequences += o.sequences
        self.stats.images += o.images
        self.stats.duplicates += o.duplicates
        self.stats.waiting += o.waiting
        self.stats.rejected += sum(o.rejected.values())
        self.log.info(
            "batch_processed",
            root=o.root,
            sequences=o.sequences,
            images=o.images,
            duplicates=o.duplicates,
            waiting_for_position=o.waiting,
            rejected=o.rejected,
            zone=self.zone_label,
            time_offset=self.settings.time_offset,
        )
        if o.waiting:
            self.log.warning(
                "waiting_for_position",
                root=o.root,
                photos=o.waiting,
                zone=self.zone_label,
                time_offset=self.settings.time_offset,
                hint="no GPS position and no GPX covering their time yet; if a GPX should "
                "cover them, check tz and time_offset",
            )

    # -- upload: pending sequences → server -----------------------------------------------------

    async def _upload_loop(self) -> None:
        backoff = 2.0
        self.upload_wanted.set()  # what the last run left queued goes now, not in 30 s
        while not self.stopping.is_set():
            await wait_event(self.upload_wanted, 30.0)
            self.upload_wanted.clear()
            token = await self._token()
            if not token:
                continue
            pending = await self._due_sequences()
            if not pending:
                continue
            try:
                await self._upload(token, pending)
                backoff = 2.0
            except AuthError as exc:
                self.runtime.server = f"token refused: {exc}"
                self.log.error("token_refused", reason=str(exc))
                self.upload_wanted.clear()
                await wait_event(self.upload_wanted, 600.0)  # SIGHUP (a new token) wakes us
            except UploadError as exc:
                self.runtime.server = f"unreachable: {exc}"
                self.log.warning("server_unreachable", reason=str(exc), retry_in=backoff)
                await wait_event(self.stopping, backoff)
                backoff = min(backoff * 2, OFFLINE_BACKOFF_MAX)
                self.upload_wanted.set()

    async def _token(self) -> str | None:
        """The access token, or None with the reason in the status (never the token itself)."""
        if self.token:
            return self.token
        try:
            token = await asyncio.to_thread(auth.load_token, self.settings.profile)
        except auth.TokenStoreError as exc:
            problem = f"cannot read the token: {exc}"
            if self.runtime.server != problem:
                self.log.error("token_unreadable", reason=str(exc))
            self.runtime.server = problem
            return None
        if not token:
            self.runtime.server = "no token: run 'mapillary-daemon authenticate'"
        return token

    async def _due_sequences(self) -> list[str]:
        assert self.journal is not None
        rows = await self.journal.sequences_in_state(SequenceState.PENDING)
        due = time.time() - self.settings.upload_delay
        # A watch folder on a drive that is unplugged right now: its photos are not gone, so
        # its sequences wait for it instead of losing every photo as "removed since import".
        away = self._missing_roots()
        return [r.uuid for r in rows if r.created_at <= due and r.source_root not in away]

    def _missing_roots(self) -> set[str]:
        live = self.sources.status() if self.sources is not None else {}
        return {root for root, state in live.items() if state.startswith("missing")}

    async def _upload(self, token: str, uuids: list[str]) -> None:
        assert self.journal is not None
        client = UploadClient.from_settings(self.settings, token)
        client.events.subscribe(self._on_upload_event)
        self.runtime.activity = f"uploading {len(uuids)} sequence(s)"
        async with client:
            worker = SequenceUploader(self.journal, client, on_sequence=self._on_sequence)
            await worker.upload_all(uuids)
        self.runtime.server = "reachable"
        self.runtime.activity = "idle"

    def _on_sequence(self, result: SequenceResult) -> None:
        self.stats.results.append(result)
        self.stats.rejected += len(result.set_aside)
        if result.cluster_id:
            self.stats.finished += 1
        elif result.error:
            self.stats.failed += 1

    def _on_upload_event(self, event: UploadEvent) -> None:
        if event.kind == "end":
            now = time.monotonic()
            self._bytes_window.append((now, event.total))
            self._bytes_window = [(t, n) for t, n in self._bytes_window if now - t < 60]
            span = max(now - self._bytes_window[0][0], 1.0)
            self.runtime.upload_rate = sum(n for _, n in self._bytes_window) / span
            self.runtime.server = "reachable"

    # -- housekeeping: disk space, spool cleanup, waiting photos, status -------------------------

    async def _housekeeping(self) -> None:
        last_clean = 0.0
        while not self.stopping.is_set():
            routine = time.monotonic() - last_clean >= HOUSEKEEPING_SECONDS
            if routine:
                last_clean = time.monotonic()
            await self._check_disk(routine)
            await self._save_runtime()
            await wait_event(self.stopping, RUNTIME_SAVE_SECONDS)

    async def _check_disk(self, routine: bool = True) -> None:
        free = await asyncio.to_thread(free_mb, self.spool)
        if free < self.settings.min_free_mb:
            freed = await self._clean_spool(force=True)
            free = await asyncio.to_thread(free_mb, self.spool)
            if free < self.settings.min_free_mb:
                if not self.runtime.paused:
                    self.log.warning(
                        "import_paused",
                        free_mb=round(free),
                        min_free_mb=self.settings.min_free_mb,
                        freed_files=freed,
                    )
                self.runtime.paused = f"card import paused: {free:.0f} MB free, below min_free_mb {self.settings.min_free_mb:.0f}"
                return
        elif routine:
            await self._clean_spool(force=False)
        if self.runtime.paused:
            self.log.info("import_resumed", free_mb=round(free))
            self.runtime.paused = None

    async def _clean_spool(self, force: bool) -> int:
        """Remove spool copies of finished sequences after keep_days (any age when ``force``)."""
        assert self.journal is not None
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
            await asyncio.to_thread(remove_spool_file, Path(path), self.spool)

        def forget(j: Journal) -> None:
            with j.transaction():
                for file_hash, _ in victims:
                    j.set_file_state(file_hash, FileState.FINISHED, spool_path=None)

        if victims:
            await self.journal.run(forget)
            self.log.info("spool_cleaned", files=len(victims))
        self._cleaned |= done
        return len(victims)

    def _root_states(self) -> dict[str, str]:
        """Per root, our own note (processing, card imported, ...) over the sources' live state
        (watching, N settling, importing N left, missing), unless ours says less."""
        live = self.sources.status() if self.sources is not None else {}
        out = dict(live)
        for root, note in self.runtime.roots.items():
            if root not in live or note not in ("idle", "card inserted, importing"):
                out[root] = note
        return out

    async def _save_runtime(self, force: bool = False) -> None:
        snapshot = self.runtime.as_dict()
        snapshot["roots"] = self._root_states()
        text = repr(snapshot)
        if (force or text != self._runtime_saved) and self.journal is not None:
            await self.journal.set_meta(RUNTIME_META, snapshot)
            self._runtime_saved = text

    # -- reload and status line ----------------------------------------------------------------

    async def apply_settings(self, new: config.Settings) -> None:
        """Take a reloaded configuration: watch roots, limits and endpoints change live."""
        assert self.sources is not None
        old_roots = {*self.settings.watch, *self.settings.mount_roots}
        new_roots = {*new.watch, *new.mount_roots}
        for root in new_roots - old_roots:
            await self.sources.add_root(root, card_root=root in new.mount_roots)
        for root in old_roots - new_roots:
            await self.sources.remove_root(root)
        self.settings = new
        self.log.info(
            "config_reloaded",
            added=[str(r) for r in new_roots - old_roots],
            removed=[str(r) for r in old_roots - new_roots],
        )
        await self._check_disk(routine=False)  # a new min_free_mb applies now, not in 10 s
        await self._save_runtime()
        self.process_wanted.set()
        self.upload_wanted.set()

    def status_line(self) -> str:
        """One line for systemd's STATUS=."""
        s = self.stats
        line = (
            f"{s.imported} new photos, {s.sequences} sequences made, {s.finished} uploaded; "
            f"{self.runtime.activity}; server {self.runtime.server}"
        )
        return f"{line}; {self.runtime.paused}" if self.runtime.paused else line

    # -- --once --------------------------------------------------------------------------------

    async def _stop_when_done(self) -> None:
        """End when sources are settled, nothing is left to process, and uploads are done."""
        assert self.sources is not None and self.journal is not None
        # Settled sources and an idle intake, twice in a row: the intake may have taken the
        # last event from the queue and still be hashing it when the queue looks empty.
        quiet = 0
        while quiet < 2:
            await self.sources.wait_settled()
            quiet = 0 if self._intake_busy else quiet + 1
            await asyncio.sleep(0.05)
        await self._flush_intake()
        await self.process_ready()
        while True:
            pending = await self._due_sequences()
            if not pending:
                break
            token = await self._token()
            if not token:
                self.log.warning("upload_skipped", reason=self.runtime.server)
                self.stats.failed += len(pending)
                break
            try:
                await self._upload(token, pending)
            except UploadError as exc:
                self.log.error("upload_stopped", reason=str(exc), still_queued=len(pending))
                self.stats.failed += len(await self._due_sequences())
                break
            if set(await self._due_sequences()) >= set(pending):
                break  # nothing moved (all failed): do not loop
        self.request_stop()


def _tail_from_last_sequence(plan: BatchPlan, rows: list[FileRow]) -> list[FileRow]:
    """The rows of a chunk from the first photo of its last sequence on (recorded order is a
    camera's order): planned again with the next chunk, so a sequence (and a stop full of
    duplicates) running across the chunk's end is not cut there. Empty if that is most of it."""
    if not plan.sequences:
        return []
    last = set(plan.sequences[-1][1])
    start = next(i for i, r in enumerate(rows) if r.hash in last)
    return rows[start:] if len(rows) - start <= PROCESS_CHUNK // 2 else []


def _add_outcome(total: BatchOutcome, o: BatchOutcome) -> None:
    total.sequences += o.sequences
    total.images += o.images
    total.duplicates += o.duplicates
    total.waiting += o.waiting
    for kind, n in o.rejected.items():
        total.rejected[kind] = total.rejected.get(kind, 0) + n


def install_signal_handlers(daemon: Daemon, reload: Any = None) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.request_stop)
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, reload)


async def run_daemon(
    settings: config.Settings,
    *,
    once: bool = False,
    reload_settings: Any = None,
    gpx_files: list[Path] | None = None,
) -> int:
    """Run until stopped (or, with ``once``, until done). ``reload_settings`` is called on
    SIGHUP and returns new settings or raises ``config.ConfigError``."""
    from daemon.runtime.notify import Notifier, watchdog_loop

    daemon = Daemon(settings, once=once)
    for path in gpx_files or []:
        daemon.gpx.add(f"file:{path}", str(path))
    notifier = Notifier.from_environment()

    reloads: set[asyncio.Task[None]] = set()

    def _reload_done(task: asyncio.Task[None]) -> None:
        reloads.discard(task)
        if not task.cancelled() and task.exception() is not None:
            daemon.log.error("reload_failed", reason=repr(task.exception()))

    def reload() -> None:
        if reload_settings is None:
            return
        notifier.reloading()
        try:
            new = reload_settings()
        except config.ConfigError as exc:
            daemon.log.error("reload_refused", reason=str(exc))
        else:
            task = asyncio.get_running_loop().create_task(daemon.apply_settings(new))
            reloads.add(task)  # kept referenced until done; a failure is logged, not lost
            task.add_done_callback(_reload_done)
        notifier.ready()

    install_signal_handlers(daemon, reload)
    await daemon.startup()
    notifier.ready()
    pinger = asyncio.create_task(watchdog_loop(notifier, daemon.status_line, daemon.stopping))
    try:
        code = await daemon.main()
    finally:
        notifier.stopping()
        pinger.cancel()
        await asyncio.gather(pinger, return_exceptions=True)
        await daemon.shutdown()
    daemon.log.info("run_summary", zone=daemon.zone_label, **daemon.stats.figures())
    if once:
        print(
            f"{daemon.stats.line()}\ncamera times without a zone read in {daemon.zone_label}, "
            f"camera clock offset {daemon.settings.time_offset:g} s"
        )
    return code
