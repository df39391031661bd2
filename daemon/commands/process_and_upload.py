"""`process-and-upload PATH`: `process`, then `upload` of what it described."""

from __future__ import annotations

import argparse

from daemon.commands import process, upload
from daemon.commands.common import add_command
from daemon.core.errors import EXIT_SET_ASIDE, EXIT_USAGE, UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "process-and-upload",
        "process PATH, then upload it (upload_with_preprocessing)",
        "Run `process` on PATH (all of its options), then `upload` the result.",
        "example:\n  mapillary-daemon process-and-upload ~/rides/2024-06-01 --gpx track.gpx "
        "--tz Europe/Berlin",
    )
    process.add_arguments(p)
    upload.add_upload_arguments(p, with_path=False)
    # upload_with_preprocessing.py's flag: process always sets duplicates aside.
    p.add_argument("--remove-duplicates", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=run, upload_subfolders=False)


def run(args: argparse.Namespace) -> int:
    if args.desc_path:
        # The upload half reads the description file from PATH, where process writes it.
        raise UsageError(
            "--desc-path is for `process`; process-and-upload keeps the "
            "description file in PATH so that the upload finds it"
        )
    processed = process.run(args)
    if processed not in (0, EXIT_SET_ASIDE):
        return processed
    uploaded = upload.run(args)
    if uploaded == EXIT_USAGE:
        return uploaded
    return max(processed, uploaded)
