"""Upload the journal's pending sequences, exactly once, recording every step in the journal.

Order per sequence: every image (several at once, at most one image's bytes per slot), then the
manifest under a key derived from the sequence uuid, then ``finish_upload``. The journal gets the
handles in batches (one commit per batch saves fsyncs on an SD card); losing a batch to a power cut
costs nothing but an offset probe, because the server already holds the bytes under the same
deterministic session key and answers the empty resume with the same handle.

Used by the ``upload`` command and by the daemon; neither knows the protocol.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from daemon import log
from daemon.journal import AsyncJournal, FileRow, FileState, Journal, SequenceState
from daemon.media.exif import MediaError, tagged_bytes
from daemon.pipeline.describe import description_json
from daemon.upload.client import (
    AuthError,
    RejectedError,
    UploadClient,
    manifest_bytes,
    session_key,
)

HANDLE_BATCH = 16
HANDLE_FLUSH_SECONDS = 2.0


@dataclass
class SequenceResult:
    """What happened to one sequence in one pass."""

    uuid: str
    images: int
    cluster_id: str | None = None
    error: str | None = None
    already_finished: bool = False


@dataclass
class _HandleBuffer:
    """Handles waiting to be journaled together."""

    items: list[tuple[str, str, str, int, str]] = field(default_factory=list)
    last_flush: float = field(default_factory=time.monotonic)


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


def read_tagged(row: FileRow) -> bytes:
    """The bytes to upload: the image with its description injected (the file is untouched)."""
    return tagged_bytes(row.readable_path, description_of(row))


class SequenceUploader:
    """Uploads pending sequences recorded in the journal."""

    def __init__(
        self,
        journal: AsyncJournal,
        client: UploadClient,
        on_sequence: Callable[[SequenceResult], None] | None = None,
    ) -> None:
        self.journal = journal
        self.client = client
        # One slot = one image's bytes in memory at most.
        self._slots = asyncio.Semaphore(client.concurrency)
        self.on_sequence = on_sequence
        self._log = log.get("upload")

    async def pending(self) -> list[str]:
        rows = await self.journal.sequences_in_state(SequenceState.PENDING)
        return [r.uuid for r in rows]

    async def upload_all(self, uuids: list[str] | None = None) -> list[SequenceResult]:
        """Upload the given (default: every pending) sequence, oldest first.

        ``AuthError`` and ``RetriesExhausted`` propagate (the rest stays queued); a refused image
        fails only its own sequence.
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
            return SequenceResult(uuid, seq.image_count, seq.cluster_id, already_finished=True)
        images = await self.journal.sequence_images(uuid)
        self._log.info("sequence_upload_start", sequence=uuid, images=len(images))
        try:
            handles = await self._upload_images(images)
            cluster = await self._finish(uuid, seq.manifest_key, seq.manifest_handle, handles)
        except RejectedError as exc:
            await self.journal.set_sequence_state(uuid, SequenceState.FAILED, str(exc))
            self._log.error("sequence_failed", sequence=uuid, reason=str(exc))
            return SequenceResult(uuid, len(images), error=str(exc))
        self._log.info("sequence_finished", sequence=uuid, images=len(images), cluster_id=cluster)
        return SequenceResult(uuid, len(images), cluster)

    async def _upload_images(self, images: list[FileRow]) -> list[str]:
        """Every image's handle, in capture order, uploading those that have none yet."""
        handles: dict[str, str] = {r.hash: r.handle for r in images if r.handle}
        todo = [r for r in images if r.state == FileState.SEQUENCED and not r.handle]
        buffer = _HandleBuffer()
        try:
            async with asyncio.TaskGroup() as group:
                for row in todo:
                    group.create_task(self._upload_one(row, handles, buffer))
        except BaseExceptionGroup as eg:
            await self._flush(buffer)  # keep what did succeed
            raise _first_serious(eg) from None
        await self._flush(buffer)
        return [handles[r.hash] for r in images]

    async def _upload_one(
        self, row: FileRow, handles: dict[str, str], buffer: _HandleBuffer
    ) -> None:
        name = row.metadata.get("filename") or row.hash[:12]

        def provide() -> bytes:
            try:
                return read_tagged(row)
            except (MediaError, OSError) as exc:
                raise RejectedError(f"{row.readable_path}: {exc}", 0) from None

        async with self._slots:
            data = await asyncio.to_thread(provide)
            key = session_key(data)
            md5 = key[len("mly_tools_") : -len(".jpg")]
            try:
                handle = await self.client.upload_bytes(key, data, name=str(name))
            except RejectedError as exc:
                await self.journal.set_file_state(row.hash, FileState.FAILED, str(exc))
                raise
            size = len(data)
            del data
        handles[row.hash] = handle
        buffer.items.append((row.hash, key, md5, size, handle))
        if (
            len(buffer.items) >= HANDLE_BATCH
            or time.monotonic() - buffer.last_flush > HANDLE_FLUSH_SECONDS
        ):
            await self._flush(buffer)

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


def _first_serious(eg: BaseExceptionGroup) -> BaseException:
    """Auth problems stop everything, so they win over refusals, which win over the rest."""
    leaves: list[BaseException] = []

    def walk(e: BaseException) -> None:
        if isinstance(e, BaseExceptionGroup):
            for inner in e.exceptions:
                walk(inner)
        else:
            leaves.append(e)

    walk(eg)
    for kind in (AuthError, RejectedError):
        for e in leaves:
            if isinstance(e, kind):
                return e
    return leaves[0]


def summarize(results: list[SequenceResult]) -> dict[str, Any]:
    return {
        "sequences": len(results),
        "finished": sum(1 for r in results if r.cluster_id),
        "failed": sum(1 for r in results if r.error),
        "images": sum(r.images for r in results if r.cluster_id),
    }
