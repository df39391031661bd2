"""`fix-dates PATH START INCREMENT`: give photos taken at a fixed interval their capture times.

For cameras and time-lapse tools that write no date: the photos directly in PATH, in natural
file-name order (frame_2 before frame_10), get START, START + INCREMENT, ... in EXIF
DateTimeOriginal and SubSecTimeOriginal, plus OffsetTimeOriginal when --tz is given. A GPS
time stamp in a photo is removed (the position kept): it is read before DateTimeOriginal, so
the times written win only without it.
"""

from __future__ import annotations

import argparse
from datetime import datetime, tzinfo
from pathlib import Path

from daemon.commands import legacy
from daemon.commands.common import add_command
from daemon.commands.report import Summary
from daemon.core.errors import UsageError
from daemon.media import exif
from daemon.pipeline.dates import fix_dates, format_offset, natural_key
from daemon.pipeline.records import ImageRecord

EPILOG = """\
example:
  mapillary-daemon fix-dates ~/timelapse "2024-06-01 09:00:00" 2
  mapillary-daemon fix-dates ~/timelapse "2024-06-01 09:00:00.500" 0.5 --tz Europe/Berlin

START is the local time of the first photo (in --tz when given, else this machine's zone);
with --tz the zone is also written into each photo (OffsetTimeOriginal). A GPS time stamp
(read before DateTimeOriginal, and stale now) is removed; the position stays.
Exit codes: 0 all photos dated, 1 some could not be written (reasons printed), 2 bad arguments."""

START_FORMATS = (
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S",
)


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "fix-dates",
        "give photos taken at a fixed interval their capture times",
        "Write START, START + INCREMENT, ... into the photos directly in PATH, in natural "
        "file-name order (frame_2 before frame_10).",
        EPILOG,
    )
    p.add_argument("path", type=Path, metavar="PATH", help="folder of JPEGs (or one JPEG)")
    p.add_argument("start", metavar="START", help="'YYYY-mm-dd HH:MM:SS[.fff]', local time")
    p.add_argument("increment", type=float, metavar="INCREMENT", help="seconds between photos")
    legacy.add_tz_argument(p)
    p.set_defaults(func=run)


def parse_start(text: str) -> datetime:
    """
    >>> parse_start("2024-06-01 09:00:00.5").microsecond, parse_start("2024-06-01T09:00:00").hour
    (500000, 9)
    """
    for fmt in START_FORMATS:
        try:
            return datetime.strptime(text.strip(), fmt)
        except ValueError:
            continue
    raise UsageError(f"START {text!r} is not 'YYYY-mm-dd HH:MM:SS[.fff]'")


def write_time(record: ImageRecord, tz: tzinfo, with_offset: bool) -> None:
    local = record.time.astimezone(tz)
    delta = local.utcoffset()
    offset = format_offset(delta) if with_offset and delta is not None else None
    exif.write_capture_time(
        record.path, local.replace(tzinfo=None), f"{local.microsecond // 1000:03d}", offset
    )


def run(args: argparse.Namespace) -> int:
    zone = legacy.zone(args.tz)
    tz = zone[0]
    start = parse_start(args.start).replace(tzinfo=tz)
    summary = Summary("fix-dates", done_verb="dated")
    records = legacy.read(summary, args.path, zone, recursive=False)
    records.sort(key=lambda r: natural_key(r.filename))
    stamped = {r.path for r in records if r.time_source == "gps"}
    records = fix_dates(records, start, args.increment)
    for record in records:
        if not record.ok:
            summary.add_record(record)
    usable = [r for r in records if r.ok]
    written = legacy.write_each(usable, lambda r: write_time(r, tz, args.tz is not None), summary)
    if usable:
        summary.note(f"first photo {usable[0].filename}, last {usable[-1].filename}")
    unstamped = sum(1 for r in written if r.path in stamped)
    if unstamped:
        summary.note(
            f"{unstamped} had a GPS time stamp, now removed: it would win over the time written "
            "(geotag writes a new one)"
        )
    return summary.finish()
