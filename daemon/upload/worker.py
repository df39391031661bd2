"""Upload the journal's pending sequences, exactly once, recording every step in the journal.

Order per sequence: every image (several at once, streamed: a block in memory per slot), then the
manifest under a key derived from the sequence uuid, then ``finish_upload``. The journal gets the
handles in batches (one commit per batch saves fsyncs on an SD card); losing a batch to a power cut
costs nothing but an offset probe, because the server already holds the bytes under the same
deterministic session key and answers the empty resume with the same handle.

An image is sent only as it was hashed: watch folders are read in place, so a photo found with
other content since import is set aside (rejected, with the reason) and its sequence goes up
without it; a sequence left with no image fails. A photo that is not there (its drive unplugged,
its folder renamed away or deleted) is not changed: it *waits for its source* (still sequenced,
with the reason and since when recorded) and its sequence stays pending, never finished without
it, until it is back or has been missing longer than ``source_wait``, its final reason. A server
refusing an image fails the image and its sequence in one transaction; a transient failure
(network, server) leaves the sequence pending.
Anything unexpected while tagging or sending one image costs that image, never the run: the
image is counted as failed (``daemon.journal.failures``) and its sequence waits for it, and
after QUARANTINE_AFTER failures in a row it is rejected with the reason and the sequence
finishes without it.

Used by the ``upload`` command and by the daemon; neither knows the protocol.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from daemon.core import log
from daemon.core.files import NotRegularFile
from daemon.core.hashing import hash_file
from daemon.journal import (
    AsyncJournal,
    FileFailures,
    FileRow,
    FileState,
    IllegalTransition,
    Journal,
    SequenceRow,
    SequenceState,
    StateChange,
    journal_trouble,
)
from daemon.mapillary.errors import MapillaryError, RejectedError, most_serious
from daemon.mapillary.upload_service import image_key, manifest_bytes
from daemon.media.exif import MediaError, tagged_head
from daemon.pipeline.describe import description_json
from daemon.upload.body import Changed, FileBody, Unreadable
from daemon.upload.client import UploadClient

HANDLE_BATCH = 16
HANDLE_FLUSH_SECONDS = 2.0
SAME_MTIME = 1e-6  # seconds; as the folder scanner compares them
SOURCE_WAIT = 7 * 24 * 3600.0  # how long an image waits for its missing source by default
MISSING_SINCE = "source_missing_since"  # metadata: when the image was first found missing

_IN_PENDING_SEQUENCE = frozenset(
    {FileState.SEQUENCED, FileState.UPLOADED, FileState.REJECTED, FileState.FAILED}
)

Seen = Sequence[tuple[str, int, float]]  # (path, size, mtime) recorded when it was hashed


class SourceMissing(Exception):
    """An image not there right now (no place it was seen at can be read): it waits for its
    source; ``str(exc)`` names the file and why."""


def waiting_for_source(row: FileRow) -> bool:
    """A sequenced image with a reason is one waiting for its source (see the module doc)."""
    return row.state == FileState.SEQUENCED and row.reason is not None


class _Held(Exception):
    """Images of the sequence failed this pass but not for good: it stays pending for them."""


class _Refused(RejectedError):
    """The server refused one image: says which, so the image and its sequence fail together."""

    def __init__(self, file_hash: str, error: RejectedError) -> None:
        super().__init__(str(error), error.status)
        self.file_hash = file_hash


@dataclass
class SequenceResult:
    """What happened to one sequence in one pass. ``images`` counts those in its manifest;
    ``set_aside`` has one line (file and reason) per image left out this pass; ``waiting``
    counts the images waiting for their source, ``held`` says why a sequence is not finished
    although nothing failed for good (both: it stays pending and is tried again)."""

    uuid: str
    images: int
    cluster_id: str | None = None
    error: str | None = None
    set_aside: list[str] = field(default_factory=list)
    waiting: int = 0
    held: str | None = None


@dataclass
class _HandleBuffer:
    """Handles waiting to be journaled together."""

    items: list[tuple[str, str, str, int, str]] = field(default_factory=list)
    last_flush: float = field(default_factory=time.monotonic)


@dataclass
class _Pass:
    """One pass over one sequence: the handles known so far, the images set aside, and those
    that failed this time (the sequence waits for them)."""

    handles: dict[str, str] = field(default_factory=dict)
    buffer: _HandleBuffer = field(default_factory=_HandleBuffer)
    set_aside: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)  # hash → why it is not there
    source_away: bool = False  # its root is missing: read our spool copies only


def manifest_key_for(sequence_uuid: str) -> str:
    """The manifest's session key: fixed per sequence, so a resumed manifest is the same object.

    >>> manifest_key_for("2f1d7c1e-0000-4000-8000-000000000001")
    'uuid_2f1d7c1e000040008000000000000001.json'
    """
    return f"uuid_{sequence_uuid.replace('-', '')}.json"


def description_of(row: FileRow) -> str:
    """The Mapillary description JSON recorded for an image (compact, keys sorted)."""
    desc = row.metadata.get("description")
    if not isinstance(desc, dict):
        raise MediaError("no Mapillary description recorded")
    return description_json(desc)


def _name(row: FileRow) -> str:
    name = row.metadata.get("filename")
    if isinstance(name, str) and name:
        return name
    return Path(row.paths[0]).name if row.paths else row.hash[:12]


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _same_file(before: os.stat_result, after: os.stat_result) -> bool:
    return (before.st_ino, before.st_size, before.st_mtime_ns) == (
        after.st_ino,
        after.st_size,
        after.st_mtime_ns,
    )


def _tagged_if_unchanged(
    path: str, size: int, mtime: float | None, file_hash: str, description: str
) -> _Tagged | None:
    """The upload body of ``path`` and its MD5 if it still holds the content that was hashed,
    else None. Only the header is built in memory; the MD5 pass streams the file.

    ``mtime`` None means our own spool copy, which nobody edits: its size is enough. Raises
    OSError when it is not there or cannot be read (it may come back), MediaError when it is
    the file hashed but cannot be tagged, and NotRegularFile when a FIFO or device took its
    place.
    """
    before = os.stat(path)  # gone, or its folder is: OSError
    if not stat.S_ISREG(before.st_mode):
        raise NotRegularFile(path, before.st_mode)  # never opened: it could block forever
    if before.st_size != size:
        return None
    touched = mtime is not None and abs(before.st_mtime - mtime) > SAME_MTIME
    # Touched, perhaps not changed (a sync tool resetting times): then the content decides.
    if touched and hash_file(path)[0] != file_hash:
        return None
    head, start, end = tagged_head(path, description)
    try:
        body = FileBody.open(path, head, start, end, before)
    except Changed:
        return None
    try:
        md5 = body.md5()
        after = os.stat(path)
    except Changed:
        md5 = None  # written while we read it: whatever we got is not what was hashed
    except BaseException:
        body.close()
        raise
    if md5 is None or not _same_file(before, after):
        body.close()
        return None
    return _Tagged(body, md5)


def read_tagged(row: FileRow, seen: Seen, source_away: bool = False) -> _Tagged:
    """What to upload: the image as it was hashed, with its description injected (no file
    is touched), and its MD5. Our spool copy first, then each path it was seen at, oldest
    first (none of them when ``source_away``: its root is missing, and what is at its paths
    now is not it). Raises ``Unreadable`` when the image is there but cannot be sent as hashed
    (changed, or its content cannot be tagged), ``SourceMissing`` when no place holds it right
    now. The caller closes the body."""
    where = row.spool_path or (seen[0][0] if seen else None) or row.hash
    try:
        description = description_of(row)
    except MediaError as exc:
        raise Unreadable(f"{where}: {exc}") from None
    places: list[tuple[str, int, float | None]] = [] if source_away else list(seen)
    if row.spool_path:
        places.insert(0, (row.spool_path, row.size, None))
    problem = missing = changed = None
    for path, size, mtime in places:
        try:
            tagged = _tagged_if_unchanged(path, size, mtime, row.hash, description)
        except (OSError, MediaError) as exc:
            if _io_error(exc):
                missing = missing or f"{path}: {_why(exc)}"
            else:
                problem = problem or f"{path}: cannot read: {_why(exc)}"
            continue
        if tagged is not None:
            return tagged
        changed = changed or path
    if problem:
        raise Unreadable(problem)
    if missing or not places:  # one of its places may come back holding it
        raise SourceMissing(missing or f"{where}: its source is missing")
    raise Unreadable(f"changed since import: {changed}")


async def _read_off_the_loop(row: FileRow, seen: Seen, source_away: bool) -> _Tagged:
    """``read_tagged`` in a thread (it reads the whole file once, for its MD5). Cancelled
    meanwhile, the thread still opens the body it was making: closed as soon as it comes, not
    left to the garbage collector."""
    job = asyncio.get_running_loop().run_in_executor(None, read_tagged, row, seen, source_away)
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        job.add_done_callback(_close_unwanted)
        raise


def _close_unwanted(job: asyncio.Future[_Tagged]) -> None:
    if not job.cancelled() and job.exception() is None:
        job.result().body.close()


def _io_error(exc: BaseException) -> bool:
    """An error reading the file (gone, drive away, permissions), not in its content; a FIFO
    where the photo was is content (never waited for)."""
    if isinstance(exc, NotRegularFile) or isinstance(exc.__cause__, NotRegularFile):
        return False
    return isinstance(exc, OSError) or isinstance(exc.__cause__, OSError)


@dataclass(frozen=True)
class _Tagged:
    """What to upload (the open file behind it, to close after), its MD5 (hex) and the
    session key made from it."""

    body: FileBody
    md5: str

    @property
    def key(self) -> str:
        return image_key(self.md5)


class SequenceUploader:
    """Uploads pending sequences recorded in the journal.

    ``source_missing(root)`` says whether a sequence's source root is missing right now (its
    images are then not looked for where they were seen); ``source_wait`` is how long an image
    waits for its source before it is left out of its sequence for good."""

    def __init__(
        self,
        journal: AsyncJournal,
        client: UploadClient,
        on_sequence: Callable[[SequenceResult], None] | None = None,
        failures: FileFailures | None = None,
        *,
        source_missing: Callable[[str | None], bool] | None = None,
        source_wait: float = SOURCE_WAIT,
    ) -> None:
        self.journal = journal
        self.client = client
        self.failures = failures or FileFailures(journal)
        self.source_missing = source_missing or (lambda _root: False)
        self.source_wait = source_wait
        # One slot = one image being sent: its header and a block of its file in memory.
        self._slots = asyncio.Semaphore(client.concurrency)
        self.on_sequence = on_sequence
        self._log = log.get("upload")

    async def pending(self) -> list[str]:
        rows = await self.journal.sequences_in_state(SequenceState.PENDING)
        return [r.uuid for r in rows]

    async def upload_all(self, uuids: list[str] | None = None) -> list[SequenceResult]:
        """Upload the given (default: every pending) sequence, oldest first.

        ``AuthError`` and ``RetriesExhausted`` propagate (the rest stays queued); a refused image
        fails only its own sequence, an unreadable one is left out of it.
        """
        results = []
        for uuid in uuids if uuids is not None else await self.pending():
            result = await self.upload_sequence(uuid)
            results.append(result)
            if self.on_sequence:
                self.on_sequence(result)
        return results

    async def upload_sequence(self, uuid: str) -> SequenceResult:
        seq = await self.journal.get_sequence(uuid)
        if seq is None:
            raise LookupError(f"no sequence {uuid} in the journal")
        if seq.state == SequenceState.FINISHED:
            return SequenceResult(uuid, seq.image_count, seq.cluster_id)
        if seq.state == SequenceState.FAILED:
            return SequenceResult(uuid, 0, error=seq.reason or "failed earlier")
        run = _Pass(source_away=self.source_missing(seq.source_root))
        try:
            finished = await self._upload_pending(seq, run)
        except RejectedError as exc:
            return await self._fail(uuid, str(exc), run, getattr(exc, "file_hash", None))
        except IllegalTransition as exc:
            # The journal holds something this pass cannot make sense of: fail this sequence
            # with the reason (visible in status) rather than stop every upload behind it.
            return await self._fail(uuid, f"journal refused a step: {exc}", run)
        except _Held as exc:
            self._log.warning("sequence_waits", sequence=uuid, reason=str(exc))
            return SequenceResult(uuid, 0, set_aside=run.set_aside, held=str(exc))
        if finished is None:  # images wait for their source: the sequence stays pending
            return SequenceResult(uuid, 0, set_aside=run.set_aside, waiting=len(run.missing))
        cluster, images = finished
        self._log.info("sequence_finished", sequence=uuid, images=images, cluster_id=cluster)
        return SequenceResult(uuid, images, cluster, set_aside=run.set_aside)

    async def _upload_pending(self, seq: SequenceRow, run: _Pass) -> tuple[str, int] | None:
        """Upload what a pending sequence still needs; its cluster id and image count, or None
        while images of it wait for their source."""
        uuid = seq.uuid
        images = await self.journal.sequence_images(uuid)
        failed = next((r for r in images if r.state == FileState.FAILED), None)
        if failed is not None:
            # An older version failed the image and its sequence in two commits; a crash
            # between them leaves this. Finish what it started.
            raise _Refused(failed.hash, RejectedError(f"{_name(failed)}: {failed.reason}", 0))
        stray = next((r for r in images if r.state not in _IN_PENDING_SEQUENCE), None)
        if stray is not None:  # checked before sending anything: the journal could not finish it
            raise IllegalTransition(f"{_name(stray)} is {stray.state} in a pending sequence")
        # Rejected images were set aside by an earlier pass (one a crash cut short).
        earlier = [r.reason or "" for r in images if r.state == FileState.REJECTED]
        images = [r for r in images if r.state != FileState.REJECTED]
        # A pass that only looks again for images waiting for their source says nothing.
        fresh = any(not r.handle and not waiting_for_source(r) for r in images)
        if fresh:
            self._log.info("sequence_upload_start", sequence=uuid, images=len(images))
        await self._upload_images(images, run)
        if run.missing:
            await self._wait_for_source(seq, images, run)
            if run.missing:
                return None
        if run.held:  # finished only with every image, or once the missing ones are rejected
            raise _Held(f"{len(run.held)} image(s) to try again ({run.held[0]})")
        kept = [run.handles[r.hash] for r in images if r.hash in run.handles]
        if not kept:
            aside = earlier + run.set_aside
            why = f": {len(aside)} set aside ({aside[0]})" if aside else ""
            raise RejectedError(f"no image left to upload{why}", 0)
        cluster = await self._finish(uuid, seq.manifest_key, seq.manifest_handle, kept)
        return cluster, len(kept)

    async def _fail(
        self, uuid: str, reason: str, run: _Pass, file_hash: str | None = None
    ) -> SequenceResult:
        """The sequence (and the image to blame, if any) failed, in one transaction."""

        def write(journal: Journal) -> None:
            with journal.transaction():
                row = journal.get_file(file_hash) if file_hash else None
                if row is not None and row.state == FileState.SEQUENCED:
                    journal.set_file_state(row.hash, FileState.FAILED, reason)
                journal.set_sequence_state(uuid, SequenceState.FAILED, reason)

        await self.journal.run(write)
        self._log.error("sequence_failed", sequence=uuid, reason=reason)
        return SequenceResult(uuid, 0, error=reason, set_aside=run.set_aside)

    async def _upload_images(self, images: list[FileRow], run: _Pass) -> None:
        """Upload the images that have no handle yet; every handle ends up in ``run.handles``."""
        run.handles.update({r.hash: r.handle for r in images if r.handle})
        todo = [r for r in images if not r.handle]
        if not todo:
            return
        seen = await self.journal.seen_at([r.hash for r in todo])
        try:
            async with asyncio.TaskGroup() as group:
                for row in todo:
                    group.create_task(self._upload_one(row, seen.get(row.hash, []), run))
        except BaseExceptionGroup as eg:
            await self._flush(run.buffer)  # keep what did succeed
            raise most_serious(eg) from None
        await self._flush(run.buffer)

    async def _upload_one(self, row: FileRow, seen: Seen, run: _Pass) -> None:
        name = _name(row)
        async with self._slots:
            try:
                tagged = await _read_off_the_loop(row, seen, run.source_away)
            except Unreadable as exc:
                await self._set_aside(row, str(exc), run)
                return
            except SourceMissing as exc:
                run.missing[row.hash] = str(exc)
                return
            except Exception as exc:  # the fence: one image's trouble is not the run's
                if journal_trouble(exc):
                    raise
                await self._failed(row, exc, "tagging it for upload", run)
                return
            key, md5, size = tagged.key, tagged.md5, tagged.body.size
            try:
                # No probe first: a server holding part of it (a run killed mid-body) says 412.
                handle = await self.client.upload_body(key, tagged.body, name=name, fresh=True)
            except RejectedError as exc:
                raise _Refused(row.hash, exc) from None
            except Unreadable as exc:  # changed or unreadable while being sent
                await self._set_aside(row, str(exc), run)
                return
            except MapillaryError:
                raise  # the server or the network: the sequence stays pending as it is
            except Exception as exc:
                if journal_trouble(exc):
                    raise
                await self._failed(row, exc, "sending it", run)
                return
            finally:
                tagged.body.close()  # never waits: a read in flight closes it as it ends
        await self.failures.cleared(row.hash)
        run.handles[row.hash] = handle
        buffer = run.buffer
        buffer.items.append((row.hash, key, md5, size, handle))
        if (
            len(buffer.items) >= HANDLE_BATCH
            or time.monotonic() - buffer.last_flush > HANDLE_FLUSH_SECONDS
        ):
            await self._flush(buffer)

    async def _wait_for_source(self, seq: SequenceRow, images: list[FileRow], run: _Pass) -> None:
        """Record the images not found this pass as waiting for their source (with since when
        they are missed), and leave out for good (and drop from ``run.missing``) those missing
        longer than ``source_wait``. Said once per sequence when images start waiting."""
        now = time.time()
        changes: list[StateChange] = []
        started = 0
        for row in images:
            why = run.missing.get(row.hash)
            if why is None:
                continue
            marked = waiting_for_source(row)
            since = row.metadata.get(MISSING_SINCE) if marked else None
            since = since if isinstance(since, int | float) else now
            if now - since >= self.source_wait:
                days = f"{self.source_wait / 86400:g} days"
                del run.missing[row.hash]
                await self._set_aside(row, f"source missing for more than {days}: {why}", run)
                continue
            reason = f"waiting for its source: {why}"
            if row.reason != reason or not marked:
                started += not marked
                meta = {"metadata": {MISSING_SINCE: since}}
                changes.append(StateChange(row.hash, FileState.SEQUENCED, reason, meta))
        if changes:
            await self.journal.set_file_states(changes)
        if started and run.missing:
            self._log.warning(
                "sequence_waiting_for_source",
                sequence=seq.uuid,
                images=len(run.missing),
                first=next(iter(run.missing.values())),
                wait_days=round(self.source_wait / 86400, 3),
            )

    async def _set_aside(self, row: FileRow, reason: str, run: _Pass) -> None:
        """Leave an image out of its sequence for good: rejected, with the reason, in status."""
        await self.journal.set_file_state(row.hash, FileState.REJECTED, reason)
        run.set_aside.append(reason)
        self._log.error("image_set_aside", file=_name(row), sequence=row.sequence_id, reason=reason)

    async def _failed(self, row: FileRow, exc: Exception, step: str, run: _Pass) -> None:
        """An unexpected failure of one image: counted; rejected once it is quarantined."""
        failure = await self.failures.failed(row.hash, _name(row), exc, step)
        if not failure.quarantined:
            run.held.append(f"{_name(row)}: {failure.reason}")
            return
        await self.journal.set_file_state(row.hash, FileState.REJECTED, failure.reason)
        await self.journal.record_event("rejected", f"{_name(row)}: {failure.reason}", row.hash)
        run.set_aside.append(f"{_name(row)}: {failure.reason}")

    async def _flush(self, buffer: _HandleBuffer) -> None:
        items, buffer.items = buffer.items, []
        buffer.last_flush = time.monotonic()
        if not items:
            return

        def write(journal: Journal) -> None:
            with journal.transaction():
                for file_hash, key, md5, size, handle in items:
                    journal.upsert_upload(file_hash, key, md5, size)
                    journal.record_handle(file_hash, key, handle)

        await self.journal.run(write)

    async def _finish(
        self, uuid: str, key: str | None, handle: str | None, image_handles: list[str]
    ) -> str:
        client = self.client
        if handle is None:
            key = key or manifest_key_for(uuid)
            body = manifest_bytes(image_handles)
            handle = await client.upload_bytes(key, body, name=key)
            await self.journal.record_manifest(uuid, key, handle)
        cluster = await client.finish_upload(handle)
        await self.journal.set_sequence_finished(uuid, cluster)
        return cluster
