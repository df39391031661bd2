"""`process PATH`: geotag, split, de-duplicate and describe a folder of photos.

Writes a mapillary_tools description file; the photos are not touched unless ``--write-exif``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import tzinfo
from pathlib import Path
from typing import TextIO

from daemon.commands import clock
from daemon.commands.common import add_command, add_config_flag
from daemon.commands.report import REASONS, clock_offset_text
from daemon.core import config, flags
from daemon.core.durable import put_in_place, temp_beside
from daemon.core.errors import EXIT_OK, EXIT_SET_ASIDE, UsageError
from daemon.core.words import counted
from daemon.media import exif
from daemon.media.load import find_jpegs, load_records
from daemon.pipeline import PipelineOptions, PipelineResult, run_pipeline
from daemon.pipeline.dates import in_repeated_hour, parse_zone, repeated_hour_hint, zones_used
from daemon.pipeline.describe import (
    DESCRIPTION_FILE,
    describe,
    description_file_entry,
    description_json,
)
from daemon.pipeline.provenance import Provenance
from daemon.pipeline.records import BAD_FILE, ImageRecord

SKIP_DIRS = ("duplicates", "errors")  # where the old scripts moved photos they set aside

EPILOG = """\
examples:
  mapillary-daemon process ~/rides/2024-06-01
  mapillary-daemon process ~/rides/2024-06-01 --gpx ~/rides/track.gpx --tz Europe/Berlin \\
      --time-offset 3 --interpolate-directions
  mapillary-daemon process photos/ --desc-path - | jq '.[0]'

--time-offset is positive when the camera clock is ahead of the GPS: true time = camera
time - offset. Camera times without a zone are read in --tz (default: this machine's zone).
--tz auto and/or --time-offset auto find them from the photos and the GPX (see `clock`):
used when sure and said in the summary, else nothing is written and the reason printed (exit 1).
Photos taken while standing still count as duplicates (not an error for the exit code).
Exit codes: 0 all photos usable, 1 some set aside (reasons printed), 2 bad arguments."""

# The pipeline's settings, each with its flag (when given, it overrides the configuration).
SETTING_FLAGS = flags.flagged("pipeline")


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "process",
        "geotag, sequence and de-duplicate photos; write the description file",
        "Read the photos under PATH, position them (EXIF GPS or GPX tracks), split "
        "them into sequences, set aside duplicates and unusable photos, and write a "
        "mapillary_tools description file. Photos are not modified unless --write-exif.",
        EPILOG,
    )
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """PATH and every pipeline option (shared with process-and-upload)."""
    p.add_argument("path", type=Path, metavar="PATH", help="folder of JPEGs (or one JPEG)")
    p.add_argument(
        "--gpx", action="append", type=Path, default=[], metavar="FILE", help="GPX track(s)"
    )
    p.add_argument(
        "--desc-path",
        metavar="FILE|-",
        help=f"where the descriptions go, - for standard output (default: PATH/{DESCRIPTION_FILE})",
    )
    p.add_argument("--write-exif", action="store_true", help="write position into the photos")
    add_config_flag(p)
    flags.add_sections(p, ["pipeline"])


def options_from_args(args: argparse.Namespace) -> PipelineOptions:
    settings = config.load(args.config, overrides=flags.given(args, SETTING_FLAGS))
    return PipelineOptions.from_settings(settings)


def description_chunks(records: Iterable[ImageRecord]) -> Iterator[str]:
    """The description file as text, one entry a line, made as it is written.

    json.dumps with indent goes through the pure-Python encoder and holds every piece of the
    text at once: for 20,000 photos a second and ~90 MB. One compact dump per entry uses the C
    encoder and keeps one entry in memory; the file is still one JSON array.
    """
    sep = "[\n"
    for record in records:
        yield sep + json.dumps(description_file_entry(record), ensure_ascii=False)
        sep = ",\n"
    yield "[]\n" if sep == "[\n" else "\n]\n"


def write_description_file(path: Path, chunks: Iterable[str]) -> None:
    """Write the file as its text is made (see :func:`description_chunks`), flush it to disk,
    then rename it over ``path``: a reader sees the old file or the whole new one."""
    tmp = temp_beside(path)
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.writelines(chunks)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    put_in_place(tmp, path)


def write_exif(result: PipelineResult) -> list[ImageRecord]:
    """Write position, time and description into each usable photo; failures are set aside."""
    failed = []
    for seq in result.sequences:
        for record in seq:
            try:
                exif.write_description(record.path, description_json(describe(record)))
            except (OSError, exif.MediaError) as exc:
                failed.append(record.set_aside(BAD_FILE, f"cannot write EXIF: {exc}"))
    return failed


def print_summary(
    out: TextIO,
    result: PipelineResult,
    zone: str,
    offset: float,
    desc: str,
    extra: list,
    tz: tzinfo | None = None,
) -> None:
    """The summary; ``zone`` names ``tz``, the zone naive camera times were read in."""
    set_aside = result.set_aside + extra
    for r in set_aside:
        print(f"{r.path}: {r.error.message if r.error else ''}", file=sys.stderr)
    print(
        f"process: {counted(result.images, 'image')} in {counted(len(result.sequences), 'sequence')}"
        f", {counted(len(result.duplicates), 'duplicate')}, {len(set_aside)} set aside",
        file=out,
    )
    for reason, n in sorted(Counter(r.error.type for r in set_aside if r.error).items()):
        print(f"  set aside, {REASONS.get(reason, reason)}: {n}", file=out)
    used = zones_used(r.zone for r in result.records if r.zone) or zone
    print(f"  zone of camera times: {used}; time offset: {clock_offset_text(offset)}", file=out)
    usable = [r for seq in result.sequences for r in seq]
    for line in (
        Provenance.of(usable).line(),
        repeated_hour_hint([r.filename for r in in_repeated_hour(usable, tz)] if tz else []),
    ):
        if line:
            print(f"  {line}", file=out)
    print(f"  description file: {desc}", file=out)


def run(args: argparse.Namespace) -> int:
    root: Path = args.path
    if not root.exists():
        raise UsageError(f"{root} does not exist")
    options = options_from_args(args)
    tz = clock.reading_zone(options.tz)
    label = "UTC" if clock.is_auto(options.tz) else parse_zone(options.tz)[1]
    track = None
    if args.gpx:
        from daemon.media import gpx

        try:
            track = gpx.load_gpx_files(args.gpx)
        except (OSError, gpx.GpxError) as exc:
            raise UsageError(f"GPX: {exc}") from None
        for note in track.notes:  # what each GPX file lost (a cut, bad fixes, an XML error)
            print(f"GPX: {note}", file=sys.stderr)
    records = load_records(find_jpegs(root, SKIP_DIRS), tz)
    settled = clock.settle(records, tz, options.tz, options.time_offset, track, options.max_gap)
    records, options.tz, options.time_offset = settled.records, settled.tz, settled.time_offset
    result = run_pipeline(records, track, options)
    failed = write_exif(result) if args.write_exif else []
    chunks = description_chunks(result.records)
    out = sys.stdout
    if args.desc_path == "-":
        sys.stdout.writelines(chunks)
        out, desc = sys.stderr, "standard output"
    else:
        default = (root if root.is_dir() else root.parent) / DESCRIPTION_FILE
        desc_path = Path(args.desc_path) if args.desc_path else default
        try:
            write_description_file(desc_path, chunks)
        except OSError as exc:
            raise UsageError(f"cannot write {desc_path}: {exc.strerror or exc}") from None
        desc = str(desc_path)
    print_summary(out, result, label, options.time_offset, desc, failed, tz)
    if settled.note:
        print(f"  {settled.note}", file=out)
    return EXIT_SET_ASIDE if result.set_aside or failed else EXIT_OK
