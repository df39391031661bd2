"""`remove-duplicates SRC [DUPLICATE_DIR]`: move photos taken while standing still out of SRC.

Duplicates go to DUPLICATE_DIR (default SRC/duplicates), photos that cannot be judged (no
readable EXIF, no capture time, no position, or a position implying an impossible speed) to
ERROR_DIR (default SRC/errors); each move is one line in duplicates.log / errors.log there.
Photos are moved, never deleted; --dry-run moves nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from daemon.commands import legacy
from daemon.commands.common import add_command
from daemon.commands.report import Summary
from daemon.core.errors import UsageError
from daemon.core.words import counted
from daemon.pipeline.duplicates import mark_duplicates, mark_impossible_speeds
from daemon.pipeline.records import BAD_FILE, NO_POSITION, ImageRecord
from daemon.pipeline.sequences import cut_sequences

DUPLICATES_LOG = "duplicates.log"
ERRORS_LOG = "errors.log"
# A stop is never judged across a break: photos are judged in runs cut where these are exceeded.
RUN_CUTOFF_TIME_S = 60.0
RUN_CUTOFF_DISTANCE_M = 100.0

EPILOG = """\
example:
  mapillary-daemon remove-duplicates ~/rides/2024-06-01
  mapillary-daemon remove-duplicates ~/rides/2024-06-01 ~/rides/dups -d 3 -p 15 --dry-run

A photo is a duplicate when the camera stood still (judged over --window seconds of photos,
so GPS noise at a red light does not count as moving); of each stop one photo stays. With
--window 0, the classic rule: within -d metres and -p degrees of the last photo kept.
Photos need a GPS position and a capture time in their EXIF (run geotag first).
Exit codes: 0 done (duplicates are not errors), 1 some photos moved to ERROR_DIR or not
movable (reasons printed), 2 bad arguments."""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "remove-duplicates",
        "move photos taken while standing still into a duplicates folder",
        "Move duplicates (camera standing still) out of SRC into DUPLICATE_DIR, and photos "
        "that cannot be judged into ERROR_DIR, each with its reason in a log file there.",
        EPILOG,
    )
    p.add_argument("src", type=Path, metavar="SRC", help="folder of JPEGs")
    p.add_argument(
        "duplicate_dir",
        type=Path,
        nargs="?",
        metavar="DUPLICATE_DIR",
        help="where duplicates go (default SRC/duplicates)",
    )
    p.add_argument(
        "-d",
        "--distance",
        type=float,
        default=4.0,
        metavar="METERS",
        help="where photos are too sparse to judge motion: closer than this to the last "
        "photo kept is a duplicate (%(default)s)",
    )
    p.add_argument(
        "-p",
        "--angle",
        type=float,
        default=20.0,
        metavar="DEGREES",
        help="a compass turn of more than this keeps a photo (%(default)s)",
    )
    p.add_argument(
        "-e",
        "--error-dir",
        type=Path,
        metavar="ERROR_DIR",
        help="where photos that cannot be judged go (default SRC/errors)",
    )
    p.add_argument(
        "--max-speed",
        type=float,
        default=200.0,
        metavar="KMH",
        help="a position implying more is an error (%(default)s)",
    )
    p.add_argument(
        "--window",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds of photos that tell standing from moving; 0 = classic rule (%(default)s)",
    )
    legacy.add_tz_argument(p)
    p.add_argument("--dry-run", action="store_true", help="say what would move; move nothing")
    p.set_defaults(func=run)


def judge(
    records: list[ImageRecord], args: argparse.Namespace
) -> tuple[list[ImageRecord], list[ImageRecord], list[ImageRecord]]:
    """(kept, duplicates, errors), each in capture order."""
    checked = [
        r.set_aside(NO_POSITION, "no GPS position in EXIF") if r.ok and not r.has_position else r
        for r in records
    ]
    checked = mark_impossible_speeds(checked, args.max_speed)
    kept, duplicates = [], []
    for run in cut_sequences(checked, RUN_CUTOFF_DISTANCE_M, RUN_CUTOFF_TIME_S):
        judged = mark_duplicates(
            run, args.distance, args.angle, window_s=args.window, max_speed_kmh=None
        )
        kept += [r for r in judged if r.ok]
        duplicates += [r for r in judged if not r.ok]
    errors = [r for r in checked if not r.ok]
    return kept, duplicates, errors


def move_all(
    records: list[ImageRecord], folder: Path, log_name: str, summary: Summary, with_type: bool
) -> int:
    """Move each record's file into ``folder`` and log why; returns how many moved."""
    lines = []
    for record in records:
        error = record.error
        assert error is not None
        try:
            target = legacy.move_aside(record.path, folder)
        except OSError as exc:
            summary.aside(record.path, BAD_FILE, f"cannot move to {folder}: {exc.strerror or exc}")
            continue
        renamed = f" (now {target.name})" if target.name != record.filename else ""
        kind = f" [{error.type}]" if with_type else ""
        lines.append(f"{record.filename}{renamed}: {error.message}{kind}")
    legacy.append_log(folder / log_name, lines)
    return len(lines)


def run(args: argparse.Namespace) -> int:
    src = legacy.folder(args.src)
    if args.distance < 0 or args.angle < 0 or args.max_speed <= 0 or args.window < 0:
        raise UsageError("-d, -p and --window must not be negative, --max-speed must be positive")
    zone = legacy.zone(args.tz)
    dup_dir = args.duplicate_dir or src / "duplicates"
    err_dir = args.error_dir or src / "errors"
    summary = Summary("remove-duplicates", done_verb="kept")
    kept, duplicates, errors = judge(legacy.read(summary, src, zone, recursive=False), args)
    summary.done = len(kept)
    for record in duplicates + errors:
        summary.add_record(record)
    if args.dry_run:
        for record in duplicates:
            summary.file_line(f"{record.path}: would move to {dup_dir}: {record.reason}")
        summary.note(
            f"dry run, nothing moved: {counted(len(duplicates), 'duplicate')} would go to "
            f"{dup_dir}, {counted(len(errors), 'photo')} to {err_dir}"
        )
    else:
        moved = move_all(duplicates, dup_dir, DUPLICATES_LOG, summary, with_type=False)
        moved_errors = move_all(errors, err_dir, ERRORS_LOG, summary, with_type=True)
        if duplicates:
            summary.note(
                f"{counted(moved, 'duplicate')} moved to {dup_dir} (reasons in {DUPLICATES_LOG})"
            )
        if errors:
            summary.note(
                f"{counted(moved_errors, 'photo')} moved to {err_dir} (reasons in {ERRORS_LOG})"
            )
    return summary.finish()
