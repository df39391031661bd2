"""`upload PATH`: upload described photos, exactly once, resuming whatever was interrupted."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from daemon.commands.common import add_command, add_config_flag
from daemon.core import auth, config, flags, log
from daemon.core.errors import EXIT_IO, EXIT_OK, EXIT_SET_ASIDE, EXIT_USAGE, UsageError
from daemon.core.progress import Progress
from daemon.core.words import counted
from daemon.journal import AsyncJournal, FileState, Journal, JournalError, SequenceState
from daemon.mapillary import AuthError
from daemon.mapillary import MapillaryError as UploadError
from daemon.upload.client import UploadClient
from daemon.upload.events import UploadEvent
from daemon.upload.queue import collect, queue
from daemon.upload.worker import SequenceResult, SequenceUploader

EPILOG = """\
examples:
  mapillary-daemon upload ~/rides/2024-06-01             # after process, add-tags or mapillary_tools
  mapillary-daemon upload ~/rides --upload-subfolders     # every folder below too
  mapillary-daemon upload ~/rides/2024-06-01 --dry-run    # show what would be sent

Photos are described by a description file (mapillary_image_description.json, from `process` or
mapillary_tools) or by a Mapillary description in their EXIF (from `add-tags`). A photo already
uploaded is never sent again; an interrupted run resumes from the bytes the server holds, and
sequences are finished automatically (there is no separate "push" step).
Exit codes: 0 all uploaded, 1 some photos skipped or a sequence failed/still queued, 2 usage."""


# The settings an upload takes from its flags (when given) over the configuration.
SETTING_FLAGS = ["journal", "profile", "concurrency", "max_rate", "organization_id"]


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "upload",
        "upload described photos (process, add-tags or mapillary_tools output)",
        "Upload the described photos of PATH to Mapillary, sequence by sequence.",
        EPILOG,
    )
    add_upload_arguments(p)
    p.set_defaults(func=run)


def add_upload_arguments(p: argparse.ArgumentParser, with_path: bool = True) -> None:
    if with_path:
        p.add_argument("path", type=Path, metavar="PATH", help="folder of described photos")
    p.add_argument("--upload-subfolders", action="store_true", help="also every subfolder")
    p.add_argument("--dry-run", action="store_true", help="only list what would be uploaded")
    flags.add(p.add_argument_group("upload settings"), SETTING_FLAGS)
    add_config_flag(p)


def settings_from(args: argparse.Namespace) -> config.Settings:
    return config.load(args.config, overrides=flags.given(args, SETTING_FLAGS))


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    log.setup("warning")
    root: Path = args.path
    if not root.is_dir():
        raise UsageError(f"{root} is not a folder")
    found = collect(root, args.upload_subfolders)
    for path, reason in found.skipped:
        print(f"{path}: {reason}", file=sys.stderr)
    if args.dry_run:
        seqs = {p.sequence for p in found.photos}
        print(
            f"upload (dry run): {len(found.photos)} photos in {len(seqs)} sequences would be "
            f"uploaded to {settings.upload_endpoint}; {len(found.skipped)} skipped"
        )
        return EXIT_OK
    token = auth.require_token(settings.profile)
    try:
        code = asyncio.run(upload_folder(settings, token, root, found.photos))
    except JournalError as exc:  # the journal's disk or file, not the arguments
        print(f"mapillary-daemon upload: {exc}", file=sys.stderr)
        return EXIT_IO
    return EXIT_SET_ASIDE if found.skipped and code == EXIT_OK else code


async def upload_folder(settings: config.Settings, token: str, root: Path, photos: list) -> int:
    journal = await AsyncJournal.open(settings.journal_path)
    try:
        queued = await journal.run(lambda j: queue(j, root.resolve(), photos))
        finished = [path for path, why in queued.already_done if why == "already finished"]
        if finished:  # one line, not one per photo: a rerun on a big folder stays readable
            print(f"upload: {len(finished)} photos already uploaded, not sent again")
        for path, why in queued.already_done:
            if why != "already finished":
                print(f"{path}: {why}, not sent again")
        for path, why in queued.unreadable:
            print(f"{path}: cannot read: {why}", file=sys.stderr)
        uuids = await journal.run(lambda j: _pending(j, root.resolve(), queued.resumed))
        failed = await journal.run(lambda j: _failed_earlier(j, queued.resumed))
        for uuid, reason in failed:
            print(f"sequence {uuid}: failed earlier, not sent again: {reason}", file=sys.stderr)
        problems = bool(queued.unreadable or failed)
        if not uuids:
            print(f"upload: nothing to upload ({len(finished)} already uploaded)")
            return EXIT_SET_ASIDE if problems else EXIT_OK
        estimate = await journal.run(lambda j: _bytes_to_send(j, uuids))
        return await _upload(settings, token, journal, uuids, problems, estimate)
    finally:
        await journal.aclose()


def _failed_earlier(journal: Journal, uuids: list[str]) -> list[tuple[str, str]]:
    """(uuid, reason) of the sequences among ``uuids`` that a server refused in an earlier run."""
    rows = [journal.get_sequence(uuid) for uuid in uuids]
    return [
        (r.uuid, r.reason or "no reason recorded")
        for r in rows
        if r is not None and r.state == SequenceState.FAILED
    ]


def _pending(journal: Journal, root: Path, resumed: list[str]) -> list[str]:
    """Pending sequences queued from ``root``, and those that photos found here belong to (an
    earlier run may have queued them from another folder, e.g. a parent with subfolders)."""
    rows = journal.sequences_in_state(SequenceState.PENDING)
    return [
        r.uuid for r in rows if (r.source_root and Path(r.source_root) == root) or r.uuid in resumed
    ]


async def _upload(
    settings: config.Settings,
    token: str,
    journal: AsyncJournal,
    uuids: list[str],
    had_problems: bool,
    estimate: tuple[int, int],
) -> int:
    results: list[SequenceResult] = []
    client = UploadClient.from_settings(settings, token)
    bar = BytesBar(*estimate)
    client.events.subscribe(bar.on_event)

    def result(r: SequenceResult) -> None:
        # The receipt (a cluster id) on standard output, trouble on standard error; above the
        # bar, which is redrawn under it.
        bar.progress.line(_result_line(r), sys.stdout if r.cluster_id else sys.stderr)

    try:
        async with client:
            worker = SequenceUploader(
                journal, client, on_sequence=result, source_wait=settings.source_wait
            )
            results = await worker.upload_all(uuids)
    except AuthError as exc:
        print(f"upload: {exc}", file=sys.stderr)  # says what to do; nothing was lost
        return EXIT_USAGE
    except UploadError as exc:
        print(
            f"upload: stopped: {exc}; what is left stays queued and a rerun resumes it",
            file=sys.stderr,
        )
        return EXIT_SET_ASIDE
    finally:
        # Off the screen whatever ends the run (Ctrl-C's "interrupted" on a line of its own).
        bar.progress.close()
    bar.finish()
    done = [r for r in results if r.cluster_id]
    failed = [r for r in results if r.error]
    waiting = [r for r in results if r.waiting or r.held]  # not finished, not failed for good
    # Photos left out of their sequence (changed or unreadable since they were queued).
    set_aside = [why for r in results for why in getattr(r, "set_aside", [])]
    for why in set_aside:
        print(f"upload: set aside: {why}", file=sys.stderr)
    images = sum(r.images for r in done)
    queued = f", {len(waiting)} still queued" if waiting else ""
    seqs = counted(len(done), "sequence")
    print(f"upload: {seqs} ({counted(images, 'image')}) finished, {len(failed)} failed{queued}")
    return EXIT_SET_ASIDE if failed or waiting or set_aside or had_problems else EXIT_OK


def _result_line(r: SequenceResult) -> str:
    if r.cluster_id:
        # The cluster id is the user's receipt: printed (and flushed) as soon as it is known.
        return f"sequence {r.uuid}: {r.images} images, cluster {r.cluster_id}"
    if r.waiting:
        return f"sequence {r.uuid}: {r.waiting} photos not found: kept queued"
    if r.held:
        return f"sequence {r.uuid}: not finished: {r.held}; a rerun tries again"
    return f"sequence {r.uuid}: failed: {r.error}"


def _bytes_to_send(journal: Journal, uuids: list[str]) -> tuple[int, int]:
    """(bytes, images) these sequences still have to send, from the journal: an image not
    started counts its file's size (its description adds a few hundred bytes, corrected once
    its upload starts), a started one its tagged size."""
    total = images = 0
    for uuid in uuids:
        for row in journal.sequence_images(uuid):
            if row.state == FileState.SEQUENCED and not row.handle:
                upload = journal.get_upload(row.hash)
                total += upload.size if upload is not None else row.size
                images += 1
    return total, images


class BytesBar:
    """The upload's progress bar, fed by the client's events: bytes the server holds of every
    image of this run (manifests are too small to count). The total starts as the journal's
    estimate and becomes exact as each image's upload starts with its tagged size."""

    def __init__(self, estimate: int, images: int) -> None:
        self.progress = Progress(estimate, "upload", unit="bytes", stream=sys.stderr)
        self._guess = estimate / images if images else 0.0
        self._unstarted = images
        self._started_total = 0
        self._offsets: dict[str, int] = {}
        self._sent = 0

    def on_event(self, event: UploadEvent) -> None:
        if event.key.startswith("uuid_"):  # a manifest
            return
        if event.kind == "start" and event.key not in self._offsets:
            self._offsets[event.key] = 0
            self._unstarted = max(self._unstarted - 1, 0)
            self._started_total += event.total
            self.progress.total = self._started_total + round(self._unstarted * self._guess)
        elif event.kind in ("progress", "end") and event.key in self._offsets:
            # The offset may go back (a session reset): what the server holds is what counts.
            self._sent += event.offset - self._offsets[event.key]
            self._offsets[event.key] = event.offset
            self.progress.update(self._sent)

    def finish(self) -> None:
        """The last state drawn (100 % when all went up), the bar cleared, the summary said."""
        if self._offsets:
            self.progress.total = self._started_total + round(self._unstarted * self._guess)
            self.progress.update(self._sent)
        self.progress.close()
        if self._offsets:
            print(self.progress.summary(), flush=True)
