"""`geotag PATH GPX [GPX ...]`: write positions from GPX tracks into the photos' EXIF.

Each photo gets the track's position at its true time (camera time minus --time-offset), with
altitude, direction of travel (plus --bearing-offset) and the UTC time as a GPS stamp. A photo
outside the track, or in a gap longer than --max-gap, is reported and left untouched.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from daemon.cli import UsageError
from daemon.commands import legacy
from daemon.media import exif, gpx
from daemon.pipeline.geotag import geotag
from daemon.pipeline.records import ImageRecord
from daemon.report import Summary

EPILOG = """\
example:
  mapillary-daemon geotag ~/rides/2024-06-01 ~/rides/track.gpx --tz +02:00
  mapillary-daemon geotag photos/ morning.gpx noon.gpx --time-offset 30 --bearing-offset 90

--time-offset is positive when the camera clock is ahead of the GPS: true time = camera
time - offset. Camera times without a zone are read in --tz (default: this machine's zone);
the summary says which zone was used, since a wrong zone shifts every position.
Exit codes: 0 all photos tagged, 1 some left untouched (reasons printed), 2 bad arguments."""


def register(sub: argparse._SubParsersAction) -> None:
    p = legacy.command_parser(
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
        "--time-offset", type=float, default=0.0, metavar="S", help="camera clock ahead of GPS, s"
    )
    p.add_argument(
        "--bearing-offset",
        type=float,
        default=0.0,
        metavar="DEG",
        help="added to the direction of travel (90: camera looking right)",
    )
    legacy.add_tz_argument(p)
    p.add_argument(
        "--max-gap",
        type=float,
        default=60.0,
        metavar="S",
        help="longest gap between GPX points to interpolate across (%(default)s)",
    )
    p.set_defaults(func=run)


def write_position(record: ImageRecord) -> None:
    exif.write_gps(
        record.path,
        record.lat,  # type: ignore[arg-type]
        record.lon,  # type: ignore[arg-type]
        record.altitude,
        record.heading,
        record.capture_time,
    )


def run(args: argparse.Namespace) -> int:
    tz, label = legacy.zone(args.tz)
    if args.max_gap <= 0:
        raise UsageError("--max-gap must be positive")
    try:
        track = gpx.load_gpx_files(args.gpx)
    except gpx.GpxError as exc:
        raise UsageError(f"GPX: {exc}") from None
    except OSError as exc:
        raise UsageError(f"GPX: {exc.filename}: {exc.strerror or exc}") from None
    paths = legacy.photos_in(args.path, recursive=True)
    summary = Summary(
        "geotag", done_verb="tagged", images=len(paths), zone=label, time_offset=args.time_offset
    )
    records = legacy.load(paths, tz, summary)
    tagged = geotag(
        records,
        track,
        time_offset_s=args.time_offset,
        bearing_offset=args.bearing_offset,
        max_gap=args.max_gap,
    )
    for record in tagged:
        summary.add_record(record)
    from_track = [r for r in tagged if r.ok and r.position_source == "gpx"]
    kept = sum(1 for r in tagged if r.ok and r.position_source != "gpx")
    legacy.write_each(from_track, write_position, summary)
    if kept:
        summary.note(f"{kept} outside the track kept the position already in their EXIF")
    if track.truncated:
        summary.note("a GPX file ends mid-write; its points up to the cut were used")
    summary.print()
    return summary.exit_code()
