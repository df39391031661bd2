"""`add-project PATH PROJECT`: set MAPSettingsProject in the photos' Mapillary descriptions.

Only photos that already carry a description (from add-tags, or process --write-exif) are
changed; one without is reported and skipped. A project already set is kept unless --overwrite.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from daemon.commands import legacy
from daemon.commands.common import add_command
from daemon.commands.report import NO_DESCRIPTION, Progress, Summary
from daemon.core.words import counted
from daemon.media import exif
from daemon.pipeline.describe import description_json
from daemon.pipeline.records import BAD_FILE, BAD_METADATA

PROJECT_KEY = "MAPSettingsProject"

EPILOG = """\
example:
  mapillary-daemon add-project ~/rides/2024-06-01 "Bike lanes of Berlin"
  mapillary-daemon add-project ~/rides/2024-06-01 4f1c9e8a --overwrite

Run add-tags first: photos without a Mapillary description are reported and skipped.
Exit codes: 0 all photos done, 1 some skipped (reasons printed), 2 bad arguments."""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "add-project",
        "set the Mapillary project in the photos' descriptions",
        "Add MAPSettingsProject to the Mapillary description in EXIF ImageDescription of "
        "every photo under PATH.",
        EPILOG,
    )
    p.add_argument("path", type=Path, metavar="PATH", help="folder of JPEGs (or one JPEG)")
    p.add_argument("project", metavar="PROJECT", help="project name or key")
    p.add_argument("--overwrite", action="store_true", help="replace a project already set")
    p.set_defaults(func=run)


def parse_description(text: str | None) -> dict[str, Any] | str:
    """The Mapillary description in ImageDescription, or why there is none.

    >>> parse_description('{"MAPLatitude": 1}'), parse_description(None)[:10]
    ({'MAPLatitude': 1}, 'no Mapilla')
    """
    if not text:
        return "no Mapillary description in EXIF ImageDescription; run add-tags first"
    try:
        desc = json.loads(text)
    except json.JSONDecodeError:
        desc = None
    if not isinstance(desc, dict):
        return "EXIF ImageDescription is not a Mapillary description (JSON object)"
    return desc


def run(args: argparse.Namespace) -> int:
    paths = legacy.photos_in(args.path, recursive=True)
    summary = Summary("add-project", done_verb="set", images=len(paths))
    kept = 0
    progress = Progress(len(paths), "writing")
    summary.progress = progress
    for path in progress.iter(paths):
        try:
            desc = parse_description(exif.read_exif(path).description)
        except exif.MediaError as exc:
            summary.aside(path, BAD_METADATA, str(exc))
            continue
        except OSError as exc:
            summary.aside(path, BAD_FILE, f"cannot read: {exc.strerror or exc}")
            continue
        if isinstance(desc, str):
            summary.aside(path, NO_DESCRIPTION, desc)
            continue
        old = desc.get(PROJECT_KEY)
        if old not in (None, "", args.project) and not args.overwrite:
            kept += 1
            continue
        if old != args.project:
            try:
                exif.write_description(path, description_json({**desc, PROJECT_KEY: args.project}))
            except (OSError, exif.MediaError) as exc:
                summary.aside(path, BAD_FILE, f"cannot write EXIF: {exc}")
                continue
        summary.done += 1
    if kept:
        summary.note(
            f"{counted(kept, 'photo')} kept the project they had (use --overwrite to replace it)"
        )
    return summary.finish()
