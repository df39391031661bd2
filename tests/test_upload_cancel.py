"""An upload cancelled part-way (SIGTERM's drain, a reload, a run stopped) closes the files it
was streaming at once, not when the garbage collector gets to them: a daemon that is stopped
and started many times, or uploads thousands of photos, must not pile up open descriptors.

Real photos, a real journal and the embedded server on 127.0.0.1, slowed by a bandwidth cap
so that the cancel lands while bodies are being read and sent; the open descriptors are those
of /proc/self/fd, counted with the garbage collector off, and a file Python's finalizer had to
close says so in a ResourceWarning.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.journal import AsyncJournal
from daemon.server import ServerConfig, running_server
from daemon.upload.client import UploadClient
from daemon.upload.worker import SequenceUploader
from tests.test_upload_worker import FAST, TOKEN, described_folder, queue_folder

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/fd")


def photo_fds(folder: Path) -> int:
    """Descriptors of this process open on a photo of ``folder``."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor)
        count += target.startswith(str(folder))
    return count


@pytest.fixture
def caught() -> Iterator[list[warnings.WarningMessage]]:
    """The collector off, and every ResourceWarning recorded: a file Python's finalizer had
    to close is said there ("unclosed file"), one closed by our code is not."""
    gc.collect()
    gc.disable()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", ResourceWarning)
        try:
            yield seen
        finally:
            gc.collect()  # anything still unclosed is finalized (and said) now
            gc.enable()


async def until(check: object, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("cancels", [1, 2])
async def test_cancelled_uploads_leave_no_photo_open(
    tmp_path: Path, caught: list[warnings.WarningMessage], cancels: int
) -> None:
    folder = (tmp_path / "ride").resolve()
    described_folder(folder, 6, size=(900, 700), quality=95)
    journal = await AsyncJournal.open(tmp_path / "journal.sqlite3")
    config = ServerConfig(data_dir=tmp_path / "srv", bandwidth=150_000)
    try:
        (uuid,) = await journal.run(lambda j: queue_folder(j, folder))
        async with running_server(config) as server:
            for _round in range(3):  # each round a new run, as a daemon stopped and started
                async with UploadClient(
                    TOKEN, server.graph_url, server.upload_url, policy=FAST, concurrency=3
                ) as client:
                    worker = SequenceUploader(journal, client)
                    task = asyncio.create_task(worker.upload_all([uuid]))
                    await until(lambda: photo_fds(folder) >= 2)  # bodies open, being sent
                    for _ in range(cancels):  # a second cancel lands in the cleanup itself
                        task.cancel()
                        await asyncio.sleep(0)
                    with pytest.raises(asyncio.CancelledError):
                        await task
                    # Closed by the time the cancelled run is over, or (a read in flight in a
                    # thread) as that read ends: a bounded wait for those threads only.
                    await until(lambda: photo_fds(folder) == 0, seconds=2.0)
            assert server.stats()["images"] < 6  # the cancels did land mid-upload
    finally:
        await journal.aclose()
    # Each file closed by our code: none of them was left to Python's finalizer to close.
    unclosed = [w for w in caught if "unclosed file" in str(w.message)]
    assert unclosed == [], [str(w.message) for w in unclosed]
