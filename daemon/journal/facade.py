"""``AsyncJournal``: the journal for asyncio code, every call run on one dedicated thread.

One thread keeps the calls in the order they were made, and the event loop never waits on an
fsync. Each method is the ``Journal`` method of the same name and signature, as a coroutine.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from daemon.journal.rows import Event, FileRow, NewFile, SequenceRow, StateChange, UploadRow
from daemon.journal.states import FileState, SequenceState
from daemon.journal.store import DEFAULT_BUSY_TIMEOUT, Journal
from daemon.journal.summary import RECENT_ERRORS

T = TypeVar("T")
P = ParamSpec("P")


def _journal_thread() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")


class AsyncJournal:
    """The same data methods as ``Journal``, as coroutines, all run on the journal thread.

    ``await aj.run(fn)`` runs ``fn(journal)`` on that thread, e.g. a function doing several
    calls inside ``with journal.transaction():``.
    """

    def __init__(self, journal: Journal, executor: ThreadPoolExecutor | None = None) -> None:
        self.journal = journal
        self._executor = executor or _journal_thread()

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        max_bytes: int | None = None,
    ) -> AsyncJournal:
        """``Journal.open`` on the journal thread (it may wait up to the busy timeout)."""
        executor = _journal_thread()
        loop = asyncio.get_running_loop()
        opener = functools.partial(
            Journal.open, path, busy_timeout=busy_timeout, max_bytes=max_bytes
        )
        try:
            journal = await loop.run_in_executor(executor, opener)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(journal, executor)

    async def run(self, fn: Callable[[Journal], T]) -> T:
        """Run ``fn(journal)`` on the journal thread and return its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, self.journal)

    async def _call(self, method: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, functools.partial(method, *args, **kwargs)
        )

    async def aclose(self) -> None:
        """Finish queued calls, close the journal and stop the thread."""
        await self._call(self.journal.close)
        self._executor.shutdown(wait=True)

    async def __aenter__(self) -> AsyncJournal:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- files ------------------------------------------------------------------------------------

    async def add_file(self, entry: NewFile) -> bool:
        return await self._call(self.journal.add_file, entry)

    async def add_files(self, entries: Iterable[NewFile]) -> list[bool]:
        return await self._call(self.journal.add_files, entries)

    async def get_file(self, file_hash: str) -> FileRow | None:
        return await self._call(self.journal.get_file, file_hash)

    async def lookup_path(self, path: str | os.PathLike[str]) -> tuple[str, int, float] | None:
        return await self._call(self.journal.lookup_path, path)

    async def seen_at(self, hashes: Sequence[str]) -> dict[str, list[tuple[str, int, float]]]:
        return await self._call(self.journal.seen_at, hashes)

    async def set_file_state(
        self, file_hash: str, state: FileState, reason: str | None = None, **fields: Any
    ) -> None:
        await self._call(self.journal.set_file_state, file_hash, state, reason, **fields)

    async def set_file_states(self, changes: Iterable[StateChange]) -> None:
        await self._call(self.journal.set_file_states, changes)

    async def count_by_state(self) -> dict[FileState, int]:
        return await self._call(self.journal.count_by_state)

    # -- sequences and uploads --------------------------------------------------------------------

    async def create_sequence(
        self,
        uuid: str,
        image_hashes: Sequence[str],
        *,
        source_root: str | os.PathLike[str] | None = None,
    ) -> bool:
        return await self._call(
            self.journal.create_sequence, uuid, image_hashes, source_root=source_root
        )

    async def get_sequence(self, uuid: str) -> SequenceRow | None:
        return await self._call(self.journal.get_sequence, uuid)

    async def sequences_in_state(self, state: SequenceState) -> list[SequenceRow]:
        return await self._call(self.journal.sequences_in_state, state)

    async def sequence_images(self, uuid: str) -> list[FileRow]:
        return await self._call(self.journal.sequence_images, uuid)

    async def record_manifest(self, uuid: str, key: str, handle: str | None = None) -> None:
        await self._call(self.journal.record_manifest, uuid, key, handle)

    async def set_sequence_finished(self, uuid: str, cluster_id: str) -> bool:
        return await self._call(self.journal.set_sequence_finished, uuid, cluster_id)

    async def set_sequence_state(
        self, uuid: str, state: SequenceState, reason: str | None = None
    ) -> None:
        await self._call(self.journal.set_sequence_state, uuid, state, reason)

    async def upsert_upload(self, file_hash: str, key: str, md5: str, size: int) -> UploadRow:
        return await self._call(self.journal.upsert_upload, file_hash, key, md5, size)

    async def record_handle(self, file_hash: str, key: str, handle: str) -> None:
        await self._call(self.journal.record_handle, file_hash, key, handle)

    # -- events, meta, status ---------------------------------------------------------------------

    async def record_event(self, kind: str, message: str, file_hash: str | None = None) -> None:
        await self._call(self.journal.record_event, kind, message, file_hash)

    async def recent_events(self, n: int = 20) -> list[Event]:
        return await self._call(self.journal.recent_events, n)

    async def get_meta(self, key: str, default: Any = None) -> Any:
        return await self._call(self.journal.get_meta, key, default)

    async def set_meta(self, key: str, value: Any) -> None:
        await self._call(self.journal.set_meta, key, value)

    async def summary(self, errors: int = RECENT_ERRORS) -> dict[str, Any]:
        return await self._call(self.journal.summary, errors)

    async def integrity_check(self) -> list[str]:
        return await self._call(self.journal.integrity_check)

    async def check_in_place(self) -> str | None:
        return await self._call(self.journal.check_in_place)
