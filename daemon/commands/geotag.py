"""`geotag PATH GPX [GPX ...]`: write positions from GPX tracks into the photos' EXIF.

Each photo gets the track's position at its true time (camera time minus --time-offset), with
altitude, direction of travel (plus --bearing-offset) and the UTC time as a GPS stamp. A photo
outside the track, or in a gap longer than --max-gap, is reported and left untouched.
"""

from __future__ import annotations

import argparse
import contextlib
from datetime import UTC
from pathlib import Path

from daemon.commands import clock, legacy
from daemon.commands.common import add_command
from daemon.commands.report import Progress, Summary
from daemon.core.durable import fsync_dirs, sync_files
from daemon.core.errors import UsageError
from daemon.media import exif
from daemon.pipeline.geotag import geotag
from daemon.pipeline.records import BAD_FILE, ImageRecord

EPILOG = """\
example:
  mapillary-daemon geotag ~/rides/2024-06-01 ~/rides/track.gpx --tz +02:00
  mapillary-daemon geotag photos/ morning.gpx noon.gpx --time-offset 30 --bearing-offset 90

--time-offset is positive when the camera clock is ahead of the GPS: true time = camera
time - offset. Camera times without a zone are read in --tz (default: this machine's zone);
the summary says which zone was used, since a wrong zone shifts every position.
--tz auto and/or --time-offset auto find them from the photos (see `mapillary-daemon clock`):
used when sure, else nothing is written and the reason is printed (exit 1).
Exit codes: 0 all photos tagged, 1 some left untouched (reasons printed), 2 bad arguments."""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "geotag",
        "write positions from GPX tracks into the photos",
        "Interpolate each photo's position, altitude and direction of travel from GPX "
        "tracks at its capture time and write them into its EXIF GPS tags.",
        EPILOG,
    )
    p.add_argument("path", type=Path, metavar="PATH", help="folder of JPEGs (or one JPEG)")
    p.add_argument("gpx", type=Path, nargs="+", metavar="GPX", help="GPX track file(s)")
    p.add_argument(
        "--time-offset",
        type=clock.offset_or_auto,
        default=0.0,
        metavar="S",
        help="camera clock ahead of GPS, s, or auto: found from the photos",
    )
    p.add_argument(
        "--bearing-offset",
        type=float,
        default=0.0,
        metavar="DEG",
        help="added to the direction of travel (90: camera looking right)",
    )
    legacy.add_tz_argument(p, auto=True)
    p.add_argument(
        "--max-gap",
        type=float,
        default=60.0,
        metavar="S",
        help="longest gap between GPX points to interpolate across (%(default)s)",
    )
    p.set_defaults(func=run)


# Photos rewritten per disk flush: a flush per photo (two fsyncs) made the disk, not the work,
# set the pace; the byte cap keeps a batch of camera-sized photos to a short pause.
BATCH_PHOTOS = 256
BATCH_BYTES = 64 << 20


def _update(record: ImageRecord) -> exif.ExifUpdate:
    return exif.gps_update(
        *record.position,
        record.altitude,
        record.heading,
        record.capture_time,
    )


def _aside(summary: Summary, record: ImageRecord, exc: BaseException) -> None:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    summary.aside(record.path, BAD_FILE, f"cannot write EXIF: {reason}")


def _commit(staged: list[tuple[ImageRecord, Path]], summary: Summary) -> None:
    """Flush the staged files, rename each over its photo, fsync the folders. A crash at any
    point leaves every photo whole, old or new; a failed flush replaces none."""
    folders = {record.path.parent for record, _ in staged}
    try:
        for folder in folders:
            sync_files(folder, [tmp for r, tmp in staged if r.path.parent == folder])
    except OSError as exc:
        for record, tmp in staged:
            tmp.unlink(missing_ok=True)
            _aside(summary, record, exc)
        return
    for record, tmp in staged:
        try:
            exif.put_in_place(tmp, record.path)
        except OSError as exc:
            _aside(summary, record, exc)
            continue
        summary.done += 1
    fsync_dirs(folders)


def write_positions(records: list[ImageRecord], summary: Summary) -> None:
    """Write each photo's position, in batches, with a "writing" progress bar; a photo that
    cannot be written is set aside and left as it was."""
    progress = Progress(len(records), "writing")
    summary.progress = progress
    staged: list[tuple[ImageRecord, Path]] = []
    size = 0
    try:
        for record in records:
            try:
                tmp = exif.stage_exif(record.path, _update(record))
            except (OSError, exif.MediaError) as exc:
                _aside(summary, record, exc)
            else:
                staged.append((record, tmp))
                with contextlib.suppress(OSError):
                    size += tmp.stat().st_size
            progress.advance()
            if len(staged) >= BATCH_PHOTOS or size >= BATCH_BYTES:
                _commit(staged, summary)
                staged, size = [], 0
        _commit(staged, summary)
        staged = []
    finally:
        for _, tmp in staged:  # interrupted: no staged file is left behind (renamed: gone)
            tmp.unlink(missing_ok=True)
        progress.close()


def run(args: argparse.Namespace) -> int:
    zone = (UTC, "UTC") if clock.is_auto(args.tz) else legacy.zone(args.tz)
    if args.max_gap <= 0:
        raise UsageError("--max-gap must be positive")
    track = clock.load_track(args.gpx)
    summary = Summary("geotag", done_verb="tagged")
    records = legacy.read(summary, args.path, zone, recursive=True)
    settled = clock.settle(records, zone[0], args.tz, args.time_offset, track, args.max_gap)
    records, summary.time_offset = settled.records, settled.time_offset
    if settled.note:
        summary.zone = legacy.zone_text(records) or summary.zone
        summary.note(settled.note)
    tagged = geotag(
        records,
        track,
        time_offset_s=settled.time_offset,
        bearing_offset=args.bearing_offset,
        max_gap=args.max_gap,
    )
    for record in tagged:
        summary.add_record(record)
    from_track = [r for r in tagged if r.ok and r.position_source == "gpx"]
    kept = sum(1 for r in tagged if r.ok and r.position_source != "gpx")
    write_positions(from_track, summary)
    if kept:
        summary.note(f"{kept} outside the track kept the position already in their EXIF")
    legacy.note_sources(summary, tagged, zone[0])
    for note in track.notes:  # what each GPX file lost (a cut, bad fixes, an XML error)
        summary.note(note)
    return summary.finish()
