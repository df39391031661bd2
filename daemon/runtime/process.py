"""The processing stage: journal files of a settled batch → described, sequenced or set aside.

A batch is every imported photo of one source root (a watch folder or a card) plus the photos of
that root still waiting for a position. Reading EXIF and GPX happens here (in a worker thread);
the decisions are the pure stages of ``daemon.pipeline`` and its batch planning; the results go
to the journal in one transaction per piece of a batch.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from daemon.core import config, log
from daemon.core.aio import wait_event
from daemon.journal import (
    AsyncJournal,
    FileFailures,
    FileRow,
    FileState,
    Journal,
    journal_trouble,
)
from daemon.media.gpx import MID_WRITE, GpxError, Track, merge
from daemon.media.load import load_record
from daemon.media.nmea import load_track
from daemon.pipeline import PipelineOptions, clear_caches, dates, run_pipeline
from daemon.pipeline.clock import is_auto, reading_zone
from daemon.pipeline.dates import in_repeated_hour, parse_zone, zones_used
from daemon.pipeline.plan import BatchOutcome, BatchPlan, plan_batch, tail_from_last_sequence
from daemon.pipeline.records import BAD_FILE, ImageRecord
from daemon.runtime.clock import BatchClock, again, found_before, settle_batch
from daemon.runtime.roots import RootActivity, RootState
from daemon.runtime.state import RunStats, StatusBoard, Wakeups

PLANNED = [FileState.IMPORTED, FileState.WAITING_FOR_POSITION]  # the photos of a batch
WAITING_RECHECK_SECONDS = 60.0  # photos waiting for a GPX: is their wait over?
# Photos of one root planned at once: a 50,000-photo card goes through in pieces, so memory
# stays bounded (the whole card at once took ~180 MB).
PROCESS_CHUNK = 5000
# A log without an end marker (NMEA, a GPX without its closing tags) written to less than this
# long ago is still being written: no photo is placed past its last fix, the next fixes will.
GROWING_SECONDS = 120.0
STILL_WRITTEN = "still being written; its points so far were used"


def zone_label(tz: str | None) -> str:
    """The zone naive camera times are read in, named (a wrong one shifts every position)."""
    if is_auto(tz):
        return "auto (found from the photos)"
    label = parse_zone(tz)[1]
    return label if tz else f"{label} (this machine's zone)"


class GpxLibrary:
    """Every GPX file the daemon knows, merged into one track (rebuilt only when files change).

    The file list changes on the event loop (``add``); the track is built in a worker thread
    from a ``snapshot`` taken on the loop, so the two never share a dict being changed, and a
    file added during a build makes a new ``version`` that the next build picks up. Each file
    is parsed once per change (keyed by size, mtime and inode), not once per file per build.

    The logs still being written (see GROWING_SECONDS) mark their last fix as an open end of
    the track; ``note_finished_logs`` makes a new version once one of them stops growing.
    """

    def __init__(self) -> None:
        self._paths: dict[str, str] = {}  # content hash → readable path
        self.version = 0
        self._built: tuple[int, Track | None] = (-1, None)
        self._parsed: dict[str, tuple[tuple[int, int, int], Track | None]] = {}
        self._growing: set[str] = set()  # the logs built as still being written

    def load_known(self, known: dict[str, str]) -> None:
        self._paths.update(known)
        self.version += 1

    def add(self, file_hash: str, path: str) -> bool:
        """Add a GPX file; True if it is new (so waiting photos deserve another look). A log
        that grew in place replaces its older content under the same path."""
        if self._paths.get(file_hash) == path:
            return False
        for old in [h for h, p in self._paths.items() if p == path]:
            del self._paths[old]
        self._paths[file_hash] = path
        self.version += 1
        return True

    @property
    def known(self) -> dict[str, str]:
        return dict(self._paths)

    def snapshot(self) -> tuple[int, list[str]]:
        return self.version, list(dict.fromkeys(self._paths.values()))

    def _load(self, path: str) -> Track | None:
        """One file's track, parsed again only when it changed; its trouble logged once."""
        try:
            st = os.stat(path)
            key = (st.st_size, st.st_mtime_ns, st.st_ino)
        except OSError as exc:
            key = (-1, -1, -1)
            if self._parsed.get(path, (None,))[0] != key:
                log.get("gpx").warning("gpx_unusable", file=path, reason=exc.strerror or str(exc))
            self._parsed[path] = (key, None)
            return None
        cached = self._parsed.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        track: Track | None = None
        try:
            track = load_track(path)
            growing = track.can_grow and time.time() - st.st_mtime < GROWING_SECONDS
            for note in track.notes:
                self._say(path, note.replace(MID_WRITE, STILL_WRITTEN) if growing else note)
        except (GpxError, OSError) as exc:
            log.get("gpx").warning("gpx_unusable", file=path, reason=str(exc))
        self._parsed[path] = (key, track)
        return track

    @staticmethod
    def _say(path: str, note: str) -> None:
        """What a file's reading left out: a log still being written lacking its end is no
        news (the own log would say so every minute while driving)."""
        if note == f"{path}: {STILL_WRITTEN}":
            log.get("gpx").debug("gpx_still_written", file=path)
        else:
            log.get("gpx").warning("gpx_points_left_out", file=path, reason=note)

    def build(self, version: int, paths: list[str]) -> Track | None:
        """The merged track of a snapshot (worker thread); unreadable files are logged and left
        out."""
        if self._built[0] == version:
            return self._built[1]
        loaded = [(p, t) for p in paths if (t := self._load(p)) is not None]
        for gone in set(self._parsed) - set(paths):
            del self._parsed[gone]
        tracks = [t for _p, t in loaded]
        track = (tracks[0] if len(tracks) == 1 else merge(tracks)) if tracks else None
        now = time.time()
        growing = {
            path
            for path, t in loaded
            if t.can_grow and now - self._parsed[path][0][1] / 1e9 < GROWING_SECONDS
        }
        if track is not None and growing:
            ends = frozenset(t.end for p, t in loaded if p in growing)
            track = replace(track, open_ends=ends)  # the cached per-file tracks stay as read
        self._growing = growing
        self._built = (version, track)
        return track

    def note_finished_logs(self) -> bool:
        """A new version when a log built as still being written has not grown for
        GROWING_SECONDS (the photos waiting just past its end then get the usual rules).
        One stat per such log, on the loop: there are one or two."""
        now = time.time()
        for path in self._growing:
            try:
                mtime = os.stat(path).st_mtime
            except OSError:
                mtime = -math.inf  # gone: the build says so
            if now - mtime >= GROWING_SECONDS:
                self._growing = set()
                self.version += 1
                return True
        return False


def read_rows(
    rows: list[FileRow], tz: str | None
) -> tuple[list[ImageRecord], list[tuple[FileRow, Exception]]]:
    """The photos of ``rows`` as records, and the rows whose reading failed unexpectedly
    (blocking I/O: call it from a worker thread)."""
    zone = reading_zone(tz)
    label = dates.zone_label(zone)
    records, failed = [], []
    for row in rows:
        try:
            record = load_record(Path(row.readable_path), zone, label)
        except Exception as exc:  # the fence: one photo's trouble is not the batch's
            failed.append((row, exc))
            continue
        records.append(record.replace(content_hash=row.hash))
    return records, failed


def plan_records(
    root: str,
    rows: list[FileRow],
    records: list[ImageRecord],
    track: Track | None,
    options: PipelineOptions,
    position_wait: float,
) -> BatchPlan:
    """Run the pipeline over the records of ``rows`` and plan (CPU: from a worker thread).
    A row without a record is left as it is."""
    result = run_pipeline(records, track, options)
    return plan_batch(root, rows, result, position_wait, time.time())


def apply_plan(journal: Journal, plan: BatchPlan) -> None:
    """Journal a batch in one transaction: all of it, or (on error) none of it."""
    with journal.transaction():
        journal.set_file_states(plan.changes)
        for uuid, hashes in plan.sequences:
            journal.create_sequence(uuid, hashes, source_root=plan.root)
        for file_hash, path, reason in plan.rejected:
            journal.record_event("rejected", f"{path}: {reason}", file_hash)


class Processing:
    """Plans each root whose batch is ready, and wakes the upload for what it journaled."""

    def __init__(
        self,
        *,
        settings: config.Settings,
        journal: AsyncJournal,
        gpx: GpxLibrary,
        once: bool,
        wake: Wakeups,
        stats: RunStats,
        activity: RootActivity,
        board: StatusBoard,
        failures: FileFailures | None = None,
        settling: Callable[[str], int] = lambda _root: 0,
        missing_roots: Callable[[], set[str]] = set,
    ) -> None:
        self.settings = settings
        self.journal = journal
        self.gpx = gpx
        self.failures = failures or FileFailures(journal)
        self.once = once
        self.settling = settling  # root → files of it still being written (settling)
        self.missing_roots = missing_roots
        self.wake = wake
        self.stats = stats
        self.activity = activity
        self.board = board
        self.log = log.get("daemon")
        self._processed_version: dict[str, int] = {}  # root → GPX version it was planned with
        self._maybe_due = True  # a batch may be waiting for its quiet period to end
        self._recheck_waiting: dict[str, float] = {}  # root → when to look at its waiting photos
        self._failed_until: dict[str, float] = {}  # root → when to try a batch that failed again
        # Of this pass's photos, by content hash (a chunk may be read twice): the zone label of
        # each (the offset at its own date), and the names of those in the hour repeated when
        # summer time ends.
        self._zones: dict[str, str] = {}
        self._ambiguous: dict[str, str] = {}
        self._clock_said: dict[str, tuple[Any, ...]] = {}  # root → the clock news last logged
        self._clock_found: dict[str, BatchClock] = {}  # root → the clock its photos told
        # root → the track, values and first photo the last clock was settled for, and it
        self._clock_last: dict[str, tuple[Track | None, tuple[Any, ...], BatchClock]] = {}

    async def run(self) -> None:
        while not self.wake.stopping.is_set():
            # Poll for quiet periods to end only while a batch is building up; an idle daemon
            # sleeps until new files (or a GPX) wake it, and rechecks waiting photos rarely.
            poll = self.settings.batch_quiet_seconds / 3 or 1.0
            await wait_event(
                self.wake.process, poll if self._maybe_due else WAITING_RECHECK_SECONDS
            )
            self.wake.process.clear()
            await self.process_ready()

    def _batch_ready(self, root: str) -> bool:
        if root in self.activity.importing:
            return False
        # Unplugged: its photos cannot be read now, and would all be set aside as unreadable.
        if root in self.missing_roots():
            return False
        # A photo still being written there belongs in this batch (it would make a sequence of
        # its own later); the settler gives up on a file that never completes, so this ends.
        if self.settling(root):
            return False
        if self.once:
            return True
        return self.activity.quiet_for(root) >= self.settings.batch_quiet_seconds

    async def process_ready(self) -> None:
        # Counts per root first (cheap): rows are loaded only for a root that is due, so a card
        # importing batch after batch does not make us re-read every imported row each time.
        fresh = await self.journal.run(lambda j: j.roots_in_states([FileState.IMPORTED]))
        waiting = await self.journal.run(
            lambda j: j.roots_in_states([FileState.WAITING_FOR_POSITION])
        )
        options = PipelineOptions.from_settings(self.settings)
        self.gpx.note_finished_logs()
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
                partial(Journal.oldest_of_root, root=root, states=PLANNED)
            )
            expired = oldest is not None and time.time() - oldest >= self.settings.position_wait
            self._recheck_waiting[root] = time.monotonic() + WAITING_RECHECK_SECONDS
            if (
                root not in fresh
                and not expired
                and self._processed_version.get(root) == self.gpx.version
            ):
                continue
            if time.monotonic() < self._failed_until.get(root, 0.0):
                continue
            await self._process_root_fenced(root, options)

    async def _process_root_fenced(self, root: str, options: PipelineOptions) -> None:
        """A batch that fails in a way no one photo is to blame for stops only itself: said,
        tried again in WAITING_RECHECK_SECONDS, while the other roots go on."""
        try:
            await self._process_root(root, options)
        except Exception as exc:
            if journal_trouble(exc):
                raise
            self._failed_until[root] = time.monotonic() + WAITING_RECHECK_SECONDS
            self.board.note(root, RootState.IDLE)
            self.log.error("batch_failed", root=root, reason=f"{type(exc).__name__}: {exc}")
            self.log.debug("batch_failed_traceback", root=root, exc_info=exc)

    async def _process_root(self, root: str, options: PipelineOptions) -> None:
        """Plan and journal a root's photos, PROCESS_CHUNK at a time; one batch_processed."""
        self.board.note(root, RootState.PROCESSING)
        # The file list is taken here, on the loop: a GPX added meanwhile is a new version.
        version, paths = self.gpx.snapshot()
        track = await asyncio.to_thread(self.gpx.build, version, paths)
        total = BatchOutcome(root)
        after = 0
        held: list[FileRow] = []
        counted: set[str] = set()  # photos whose failure this pass has counted
        while not self.wake.stopping.is_set():
            page, after = await self.journal.run(
                partial(
                    Journal.files_of_root_page,
                    root=root,
                    states=PLANNED,
                    after=after,
                    limit=PROCESS_CHUNK,
                )
            )
            rows, last = held + page, len(page) < PROCESS_CHUNK
            if not rows:
                break
            plan = await self._plan(root, rows, track, options, counted)
            held = [] if last else tail_from_last_sequence(plan, rows, PROCESS_CHUNK)
            if held:  # planned again without them: they go with the next chunk
                rows = rows[: len(rows) - len(held)]
                plan = await self._plan(root, rows, track, options, counted)
            await self.journal.run(partial(apply_plan, plan=plan))
            for _hash, path, reason in plan.rejected:
                self.log.warning("photo_set_aside", file=path, reason=reason)
            total.add(plan.outcome)
            self.wake.upload.set()  # a big card's first sequences go up while the rest waits
            if last:
                self._processed_version[root] = version
                break
        self._count(total)
        self.board.note(root, RootState.IDLE)

    async def _plan(
        self,
        root: str,
        rows: list[FileRow],
        track: Track | None,
        options: PipelineOptions,
        counted: set[str],
    ) -> BatchPlan:
        try:
            records, failed = await asyncio.to_thread(read_rows, rows, options.tz)
            clock = await self._settle(root, records, track, options)
            if clock.event and clock.event[0] == "camera_clock_found":
                self._clock_found[root] = replace(clock, records=[])  # not its photos
            elif (
                clock.event
                and clock.event[0] == "camera_clock_unknown"
                and root in self._clock_found
            ):
                clock = found_before(
                    records, options.tz, options.time_offset, self._clock_found[root]
                )
            if self._note_clock(root, clock):
                await self.board.save()  # `status` shows the clock news at once
            records = clock.records
            options = replace(options, tz=clock.tz, time_offset=clock.time_offset)
            self._note_zones(records, options.tz)
            await self.failures.cleared(*(r.content_hash for r in records if r.content_hash))
            records += await self._fenced(failed, counted)
            return await asyncio.to_thread(
                plan_records, root, rows, records, track, options, self.settings.position_wait
            )
        finally:
            clear_caches()  # worth it within a batch, tens of MB for good after a big card

    async def _fenced(
        self, failed: list[tuple[FileRow, Exception]], counted: set[str]
    ) -> list[ImageRecord]:
        """Photos whose reading failed unexpectedly: counted (once per pass), left out of the
        batch (they stay imported, read again next time), and once quarantined, set aside for
        good with the reason, as records the plan rejects."""
        quarantined = []
        for row, exc in failed:
            name = Path(row.paths[0] if row.paths else row.readable_path).name
            if row.hash in counted:
                failure = await self.failures.quarantined(row.hash)
            else:
                counted.add(row.hash)
                got = await self.failures.failed(row.hash, name, exc, "reading it")
                failure = got.reason if got.quarantined else None
            if failure is not None:
                record = ImageRecord(Path(row.readable_path), content_hash=row.hash)
                quarantined.append(record.set_aside(BAD_FILE, failure))
            else:
                self._maybe_due = True  # read again at the next look
        return quarantined

    async def _settle(
        self, root: str, records: list[ImageRecord], track: Track | None, options: PipelineOptions
    ) -> BatchClock:
        """The batch's clock; the same photos planned again with the same track and values
        (a chunk planned again without its held tail) keep it without their pictures read
        twice."""
        paths = tuple(r.path for r in records)
        last = self._clock_last.get(root)
        if (
            last is not None
            and last[0] is track
            and last[1][:2] == (options.tz, options.time_offset)
            and last[1][2][: len(paths)] == paths  # some of the same photos, none new
        ):
            return again(records, options.tz, options.time_offset, last[2])
        clock = await asyncio.to_thread(
            settle_batch, records, options.tz, options.time_offset, track, options.max_gap
        )
        if not (clock.event and clock.event[0] == "camera_clock_unknown"):
            values = (options.tz, options.time_offset, paths)
            self._clock_last[root] = (track, values, replace(clock, records=[]))
        return clock

    def _note_clock(self, root: str, clock: BatchClock) -> bool:
        """The clock in use (and what the photos say) for `status`; its news logged once.
        True when it changed."""
        changed = self.board.runtime.clock != clock.state
        self.board.runtime.clock = clock.state
        if clock.event is None:
            return changed
        name, fields = clock.event
        said = (name, fields.get("tz"), fields.get("time_offset"), fields.get("reason"))
        if self._clock_said.get(root) == said:
            return changed
        self._clock_said[root] = said
        if name == "camera_clock_found":
            self.log.info(name, root=root, **fields)
        else:
            self.log.warning(name, root=root, **fields)
        return changed

    def _note_zones(self, records: list[ImageRecord], tz: str | None) -> None:
        """Each photo's zone label is the offset at its own date (June: +02:00 in Berlin);
        naive times in the hour a zone repeats when summer time ends are noted."""
        self._zones.update((r.content_hash or r.filename, r.zone) for r in records if r.zone)
        for r in in_repeated_hour(records, parse_zone(tz)[0]):
            self._ambiguous[r.content_hash or r.filename] = r.filename

    def _zone_text(self) -> str:
        return zones_used(self._zones.values()) or zone_label(self.settings.tz)

    def _count(self, o: BatchOutcome) -> None:
        self.stats.sequences += o.sequences
        self.stats.images += o.images
        self.stats.duplicates += o.duplicates
        self.stats.waiting += o.waiting
        self.stats.rejected += sum(o.rejected.values())
        zone = self._zone_text()
        self.stats.provenance.merge(o.provenance)
        self.stats.repeated_hour.update(self._ambiguous)
        ambiguous = list(self._ambiguous.values())
        self._zones, self._ambiguous = {}, {}
        if ambiguous:
            self.log.warning(
                "ambiguous_hour",
                root=o.root,
                photos=len(ambiguous),
                first=ambiguous[0],
                zone=zone,
                hint="taken in the hour repeated when summer time ends: the camera time may "
                "be an hour off (read as the first of the two); check with a GPS time",
            )
        self.log.info(
            "batch_processed",
            root=o.root,
            sequences=o.sequences,
            images=o.images,
            duplicates=o.duplicates,
            waiting_for_position=o.waiting,
            rejected=o.rejected,
            zone=zone,
            time_offset=self.settings.time_offset,
            sources=o.provenance.as_dict(),
        )
        if o.waiting:
            hint = (self.board.runtime.clock or {}).get("suggestion") or {}
            self.log.warning(
                "waiting_for_position",
                root=o.root,
                photos=o.waiting,
                zone=zone,
                time_offset=self.settings.time_offset,
                photos_say=hint.get("reason"),
                hint="no GPS position and no GPX covering their time yet; if a GPX should "
                "cover them, check tz and time_offset",
            )
