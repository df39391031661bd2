"""`interpolate-direction PATH`: point each photo towards the next one (EXIF GPSImgDirection).

For cameras without a compass: within each folder, photos in capture order each get the
direction to the next photo's position (plus --offset-angle for a camera not looking ahead).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import piexif

from daemon.commands import legacy
from daemon.commands.common import add_command
from daemon.commands.report import Summary
from daemon.core.words import counted
from daemon.media import exif
from daemon.pipeline.directions import interpolate_directions
from daemon.pipeline.records import NO_POSITION, ImageRecord

EPILOG = """\
example:
  mapillary-daemon interpolate-direction ~/rides/2024-06-01
  mapillary-daemon interpolate-direction ~/rides/side-camera --offset-angle 90

Photos need a GPS position in their EXIF (run geotag first). Each folder is one run of photos.
A photo taken while standing keeps the direction of the last movement.
Exit codes: 0 all photos written, 1 some set aside (reasons printed), 2 bad arguments."""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "interpolate-direction",
        "set each photo's direction towards the next photo",
        "Write EXIF GPSImgDirection: the bearing from each photo's position to the next "
        "one's, per folder, in capture order.",
        EPILOG,
    )
    p.add_argument("path", type=Path, metavar="PATH", help="folder of JPEGs")
    p.add_argument(
        "--offset-angle",
        type=float,
        default=0.0,
        metavar="DEG",
        help="camera direction relative to travel, clockwise (90: looking right)",
    )
    legacy.add_tz_argument(p)
    p.set_defaults(func=run)


def direction_patch(heading: float) -> dict[str, dict[int, object]]:
    """Only the direction tags, merged into the photo's GPS tags (its position stays as it is).

    >>> direction_patch(359.9996)["GPS"][piexif.GPSIFD.GPSImgDirection]
    (0, 1000)
    """
    g = piexif.GPSIFD
    return {
        "GPS": {
            g.GPSImgDirectionRef: b"T",
            g.GPSImgDirection: (round(heading * 1000) % 360_000, 1000),
        }
    }


def write_direction(record: ImageRecord) -> None:
    """Only records with a heading are written (the caller filters them)."""
    if record.heading is None:
        raise ValueError(f"{record.filename} has no heading")
    exif.write_exif(record.path, direction_patch(record.heading))


def run(args: argparse.Namespace) -> int:
    zone = legacy.zone(args.tz)
    summary = Summary("interpolate-direction")
    records = legacy.read(summary, args.path, zone, recursive=True)
    directed: list[ImageRecord] = []
    for folder_records in legacy.by_folder(records).values():
        positioned = [
            r if not r.ok or r.has_position else r.set_aside(NO_POSITION, "no GPS position in EXIF")
            for r in folder_records
        ]
        directed += interpolate_directions(positioned, args.offset_angle)
    for record in directed:
        summary.add_record(record)
    usable = [r for r in directed if r.ok and r.heading is not None]
    unmoved = sum(1 for r in directed if r.ok and r.heading is None)
    legacy.write_each(usable, write_direction, summary)
    if unmoved:
        summary.note(
            f"{counted(unmoved, 'photo')} in folders where nothing moved were left without one"
        )
    return summary.finish()
