"""`sequence-split PATH [CUTOFF_DISTANCE] [CUTOFF_TIME]`: move runs of photos into PATH/0, PATH/1, ...

A new sequence starts where the time to the previous photo exceeds CUTOFF_TIME (default: 1.5
times the usual interval, as the old script did), where the distance exceeds CUTOFF_DISTANCE, or
after --max-images photos. Numbering continues after folders already named 0, 1, ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

from daemon.commands import legacy
from daemon.commands.common import add_command
from daemon.commands.report import Summary
from daemon.core.errors import UsageError
from daemon.core.words import counted
from daemon.pipeline.records import BAD_FILE, ImageRecord
from daemon.pipeline.sequences import split_sequences

EPILOG = """\
example:
  mapillary-daemon sequence-split ~/rides/2024-06-01
  mapillary-daemon sequence-split ~/rides/2024-06-01 100 60 --max-images 500 --dry-run

CUTOFF_DISTANCE in metres (default 100; used where photos have GPS positions), CUTOFF_TIME in
seconds (default: 1.5 times the median interval between photos). Photos without a capture
time stay where they are and are reported.
Exit codes: 0 all photos moved, 1 some left in place (reasons printed), 2 bad arguments."""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "sequence-split",
        "move runs of photos into numbered sequence folders",
        "Split the photos directly in PATH into sequences at time gaps and distance jumps "
        "and move each sequence into its own numbered folder under PATH.",
        EPILOG,
    )
    p.add_argument("path", type=Path, metavar="PATH", help="folder of JPEGs")
    p.add_argument(
        "cutoff_distance",
        type=float,
        nargs="?",
        default=100.0,
        metavar="CUTOFF_DISTANCE",
        help="split where photos are further apart, in metres (%(default)s)",
    )
    p.add_argument(
        "cutoff_time",
        type=float,
        nargs="?",
        metavar="CUTOFF_TIME",
        help="split at longer gaps, in seconds (default: 1.5 times the usual interval)",
    )
    p.add_argument(
        "--max-images",
        type=int,
        default=1000,
        metavar="N",
        help="photos per sequence (%(default)s)",
    )
    legacy.add_tz_argument(p)
    p.add_argument("--dry-run", action="store_true", help="say what would move; move nothing")
    p.set_defaults(func=run)


def first_free_index(folder: Path) -> int:
    """One past the highest existing numbered folder (0 when there is none)."""
    taken = [int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(taken, default=-1) + 1


def move_sequence(seq: list[ImageRecord], target: Path, summary: Summary) -> None:
    for record in seq:
        try:
            legacy.move_aside(record.path, target)
        except OSError as exc:
            summary.aside(record.path, BAD_FILE, f"cannot move to {target}: {exc.strerror or exc}")
            continue
        summary.done += 1


def run(args: argparse.Namespace) -> int:
    root = legacy.folder(args.path)
    if args.cutoff_distance <= 0 or (args.cutoff_time is not None and args.cutoff_time <= 0):
        raise UsageError("CUTOFF_DISTANCE and CUTOFF_TIME must be positive")
    if args.max_images < 1:
        raise UsageError("--max-images must be at least 1")
    zone = legacy.zone(args.tz)
    summary = Summary("sequence-split", done_verb="moved")
    records = legacy.read(summary, root, zone, recursive=False)
    for record in records:
        summary.add_record(record)
    sequences = split_sequences(records, args.cutoff_distance, args.cutoff_time, args.max_images)
    summary.sequences = len(sequences)
    start = first_free_index(root)
    for n, seq in enumerate(sequences, start=start):
        target = root / str(n)
        line = f"{seq[0].filename} .. {seq[-1].filename} ({counted(len(seq), 'photo')}) -> {target}"
        if args.dry_run:
            summary.file_line(f"would move {line}")
        else:
            move_sequence(seq, target, summary)
            summary.file_line(f"moved {line}")
    if args.dry_run:
        summary.note("dry run: nothing moved")
    return summary.finish()
