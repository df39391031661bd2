"""``run --once``: one pass in order (intake until the sources settle, processing, upload), then
stop; no processing or upload loop runs beside it. What it could not do is counted with its
reason in ``stats.left`` (card files not copied, photos imported but not processed)."""

from __future__ import annotations

import asyncio

from daemon.core import log
from daemon.intake import Sources
from daemon.journal import FileState
from daemon.mapillary import AuthError
from daemon.mapillary import MapillaryError as UploadError
from daemon.runtime.intake import Intake
from daemon.runtime.process import Processing
from daemon.runtime.state import RunStats, Runtime
from daemon.runtime.uploading import Uploading


async def until_done(
    sources: Sources,
    intake: Intake,
    processing: Processing,
    uploading: Uploading,
    stats: RunStats,
    runtime: Runtime,
) -> None:
    """Return when sources are settled, nothing is left to process, and uploads are done."""
    # Settled sources and an idle intake, twice in a row: the intake may have taken the
    # last event from the queue and still be hashing it when the queue looks empty.
    quiet = 0
    while quiet < 2:
        await sources.wait_settled()
        quiet = 0 if intake.busy else quiet + 1
        await asyncio.sleep(0.05)
    await intake.flush()
    await processing.process_ready()
    await _count_left(intake, processing, stats)
    try:
        await _upload_all(uploading, stats, runtime)
        await uploading.check_published()  # a cron job asks about its finished uploads too
    finally:
        await uploading.close()  # the one session of this run


async def _upload_all(uploading: Uploading, stats: RunStats, runtime: Runtime) -> None:
    if not uploading.in_upload_hours():  # a cron job outside the window: queued for later
        log.get("daemon").info("upload_waiting", reason=runtime.activity)
        return
    while True:
        pending = await uploading.due_sequences()
        if not pending:
            break
        token = await uploading.access_token()
        if not token:
            log.get("daemon").warning("upload_skipped", reason=runtime.server)
            stats.failed += len(pending)
            stats.no_token = True
            break
        try:
            await uploading.upload(token, pending)
        except UploadError as exc:
            log.get("daemon").error("upload_stopped", reason=str(exc), still_queued=len(pending))
            stats.failed += len(await uploading.due_sequences())
            stats.no_token = isinstance(exc, AuthError)
            break
        left = await uploading.due_sequences()
        if set(left) >= set(pending):
            # Nothing moved (held for a failed image, waiting for a missing source): still
            # queued, and counted so, as `upload` counts them; no loop over them.
            stats.failed += len(left)
            break


async def _count_left(intake: Intake, processing: Processing, stats: RunStats) -> None:
    """What intake and processing could not do in this pass, with the reason."""
    left = intake.left_over()
    stats.not_copied = sum(left.values())
    fresh = await processing.journal.run(lambda j: j.roots_in_states([FileState.IMPORTED]))
    held = sum(n for root, n in fresh.items() if root in intake.activity.importing)
    if held:
        left["imported but not processed: their card is not wholly copied"] = held
    if sum(fresh.values()) - held:
        left["imported but not processed"] = sum(fresh.values()) - held
    stats.left.update(left)
