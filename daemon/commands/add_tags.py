"""`add-tags PATH [SEQUENCE_UUID]`: write the Mapillary description into each photo's EXIF.

As the old add_mapillary_tag script did: ImageDescription gets the description JSON (position,
capture time, heading, device) with MAPSequenceUUID (one new UUID per folder unless given),
MAPPhotoUUID (one per photo) and, when given, MAPSettingsUsername, MAPSettingsEmail and
MAPSettingsUserKey (the first two default to the old script's MAPILLARY_USERNAME and
MAPILLARY_EMAIL).
Keys of an earlier description that we do not write (e.g. MAPSettingsProject) are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
from pathlib import Path
from typing import Any

from daemon.commands import legacy
from daemon.commands.common import add_command
from daemon.commands.report import Summary
from daemon.core.errors import UsageError
from daemon.media import exif
from daemon.pipeline.describe import describe, description_json
from daemon.pipeline.geotag import correct_times
from daemon.pipeline.records import NO_POSITION, ImageRecord

EPILOG = """\
example:
  mapillary-daemon add-tags ~/rides/2024-06-01 --username alice --tz +02:00
  mapillary-daemon add-tags ~/rides/2024-06-01/0 5d3f1c9e-8a7b-4c2d-9e1f-0a1b2c3d4e5f

Photos need a GPS position and a capture time in their EXIF (run geotag first). The time
is found as process finds it: the GPS time (geotag writes it) first, else the camera's,
whose zone is the file's own or --tz (default: this machine's zone); MAPCaptureTime is the
true time, a camera time minus --time-offset (the value given to geotag).
The user key is written into the photos only; it is never printed.
Exit codes: 0 all photos tagged, 1 some set aside (reasons printed), 2 bad arguments."""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "add-tags",
        "write the Mapillary description into each photo's EXIF",
        "Write the Mapillary image description (position, time, heading, sequence and photo "
        "UUIDs) into EXIF ImageDescription of every photo under PATH.",
        EPILOG,
    )
    p.add_argument("path", type=Path, metavar="PATH", help="folder of JPEGs (or one JPEG)")
    p.add_argument(
        "sequence_uuid",
        nargs="?",
        metavar="SEQUENCE_UUID",
        help="one sequence UUID for every photo (default: a new one per folder)",
    )
    # The old add_mapillary_tag_from_exif script's own variables, as the scripts' users set them.
    env = os.environ
    p.add_argument(
        "--username",
        metavar="U",
        default=env.get("MAPILLARY_USERNAME") or None,
        help="MAPSettingsUsername (default: $MAPILLARY_USERNAME)",
    )
    p.add_argument(
        "--email",
        metavar="E",
        default=env.get("MAPILLARY_EMAIL") or None,
        help="MAPSettingsEmail (default: $MAPILLARY_EMAIL)",
    )
    p.add_argument("--user-key", metavar="K", help="MAPSettingsUserKey (never printed)")
    p.add_argument(
        "--time-offset",
        type=float,
        default=0.0,
        metavar="S",
        help="camera clock ahead of true time, s (the value given to geotag)",
    )
    legacy.add_tz_argument(p)
    p.set_defaults(func=run)


def earlier_description(record: ImageRecord) -> dict[str, Any]:
    """The description already in the photo, when it is a JSON object (else nothing)."""
    text = record.extra.get("exif_description")
    try:
        old = json.loads(text) if isinstance(text, str) else None
    except json.JSONDecodeError:
        return {}
    return old if isinstance(old, dict) else {}


def tags(record: ImageRecord, sequence: str, args: argparse.Namespace) -> dict[str, Any]:
    extra = {"MAPSequenceUUID": sequence, "MAPPhotoUUID": str(uuid.uuid4())}
    if args.username:
        extra["MAPSettingsUsername"] = args.username
    if getattr(args, "email", None):
        extra["MAPSettingsEmail"] = args.email
    if args.user_key:
        extra["MAPSettingsUserKey"] = args.user_key
    return {**earlier_description(record), **describe(record, extra)}


def run(args: argparse.Namespace) -> int:
    if args.sequence_uuid is not None:
        try:
            args.sequence_uuid = str(uuid.UUID(args.sequence_uuid))
        except ValueError:
            raise UsageError(f"SEQUENCE_UUID {args.sequence_uuid!r} is not a UUID") from None
    zone = legacy.zone(args.tz)
    summary = Summary("add-tags", done_verb="tagged")
    if os.environ.get("MAPILLARY_PASSWORD"):
        # The old script logged in with it to fetch the user key; uploads now take a token.
        summary.note(
            "MAPILLARY_PASSWORD is not used (nor written anywhere): "
            "uploads take a token, see `mapillary-daemon authenticate`"
        )
    records = correct_times(legacy.read(summary, args.path, zone, recursive=True), args.time_offset)
    summary.time_offset = args.time_offset
    descriptions: dict[Path, str] = {}
    folders = legacy.by_folder(records)
    for folder_records in folders.values():
        sequence = args.sequence_uuid or str(uuid.uuid4())
        for record in folder_records:
            if record.ok and not record.has_position:
                record = record.set_aside(NO_POSITION, "no GPS position in EXIF; geotag it first")
            if not record.ok:
                summary.add_record(record)
                continue
            descriptions[record.path] = description_json(tags(record, sequence, args))
    usable = [r for r in records if r.path in descriptions]
    legacy.write_each(
        usable, lambda r: exif.write_description(r.path, descriptions[r.path]), summary
    )
    legacy.note_sources(summary, usable, zone[0])
    folders_tagged = len({r.path.parent for r in usable})
    summary.sequences = min(folders_tagged, 1) if args.sequence_uuid else folders_tagged
    return summary.finish()
