"""`clock PATH --gpx FILE...`: find the camera's zone and clock offset from the photos, and the
``--tz auto`` / ``--time-offset auto`` of `geotag`, `process` and `run` (:func:`settle`).

The finder is :mod:`daemon.pipeline.clock`; this module reads what it needs (camera times, tiny
pictures, the track) and says what it found in the words of the --tz/--time-offset flags.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, tzinfo
from pathlib import Path
from typing import Any

from daemon.commands.common import add_command
from daemon.core.config import AUTO
from daemon.core.errors import EXIT_OK, EXIT_SET_ASIDE, DaemonError, UsageError
from daemon.media import gpx
from daemon.media.gpx import Track
from daemon.media.load import find_jpegs, load_records
from daemon.pipeline.clock import (
    CONFIDENT,
    ClockAnswer,
    FinderInput,
    behind_text,
    find_clock,
    is_auto,
    needs_clock,
    placed,
    read_again,
)
from daemon.pipeline.clock import reading_zone as finder_zone
from daemon.pipeline.dates import parse_zone
from daemon.pipeline.records import ImageRecord

SKIP_DIRS = ("duplicates", "errors")

EPILOG = f"""\
examples:
  mapillary-daemon clock ~/rides/2024-06-01 --gpx ~/rides/track.gpx
  mapillary-daemon clock photos/ --gpx a.gpx --gpx b.nmea --json | jq .tz
  mapillary-daemon clock photos/ --gpx a.gpx --tz Europe/Berlin   # the zone is known

It compares the photos with the track: runs of alike consecutive photos (the camera standing
still) against the track's standing periods, where the photos fall in the track, and the zone
of the track's longitude. The answer is in the words of --tz and --time-offset (true time =
camera time read in tz, minus time_offset; "camera 3 s behind" is --time-offset -3), so
passing them to geotag or process places the photos; `--tz auto --time-offset auto` there does
it in one go, using an answer of confidence {CONFIDENT} or more and nothing less.
Exit codes: 0 found, 1 cannot tell (the reason is printed), 2 bad arguments."""


class ClockUnknown(DaemonError):
    """``--tz auto`` or ``--time-offset auto`` and the photos do not tell: nothing is done."""

    exit_code = EXIT_SET_ASIDE


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "clock",
        "find the camera's zone and clock offset from the photos and a GPX track",
        "Find the zone and clock offset at which the photos under PATH agree with the GPX "
        "tracks, from the photos themselves, with a confidence, or say why it cannot tell.",
        EPILOG,
    )
    p.add_argument("path", type=Path, metavar="PATH", help="folder of JPEGs")
    p.add_argument(
        "--gpx",
        action="append",
        type=Path,
        required=True,
        metavar="FILE",
        help="GPX or NMEA track (repeat for more)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable answer")
    p.add_argument("--tz", metavar="ZONE", help="the zone, when known: find only the offset")
    p.add_argument(
        "--time-offset",
        type=float,
        metavar="S",
        help="the clock offset, when known: find only the zone",
    )
    p.add_argument(
        "--max-gap",
        type=float,
        default=60.0,
        metavar="S",
        help="longest gap between track points that still counts as covered (%(default)s)",
    )
    p.set_defaults(func=run)


def offset_or_auto(text: str) -> float | str:
    """The type of a --time-offset flag that takes ``auto`` too."""
    return AUTO if text.strip().lower() == AUTO else float(text)


offset_or_auto.__name__ = "float"  # argparse: "invalid float value: 'x'"


def load_track(paths: Sequence[Path]) -> Track:
    try:
        return gpx.load_gpx_files(paths)
    except gpx.GpxError as exc:
        raise UsageError(f"GPX: {exc}") from None
    except OSError as exc:
        raise UsageError(f"GPX: {exc.filename}: {exc.strerror or exc}") from None


def find_for(
    records: Sequence[ImageRecord],
    read_in: tzinfo,
    track: Track | None,
    *,
    tz: str | None = None,
    time_offset: float | None = None,
    max_gap: float = 60.0,
) -> ClockAnswer:
    """The finder's answer for loaded records (naive times read in ``read_in``); ``tz`` and
    ``time_offset`` are what is already known (None: to be found)."""
    from daemon.media.tiny import photo_clues  # Pillow: only when the clock is looked for

    if tz is None:
        clues = photo_clues(records, read_in)
        return find_clock(FinderInput(clues, offset_s=time_offset, max_gap=max_gap), track)
    # The zone given: the photos read in it as geotag will read them, only the clock left.
    zone = parse_zone(tz)[0]
    clues = photo_clues(read_again(records, read_in, zone), zone, zone_known=True)
    job = FinderInput(clues, zone_s=0.0, offset_s=time_offset, max_gap=max_gap)
    answer = find_clock(job, track)
    if answer.time_offset is None:
        return replace(answer, zone_from_file=False)
    return replace(answer, tz=tz, zone_from_file=False)  # in the words of the --tz given


def found_text(answer: ClockAnswer) -> str:
    """``zone +02:00, camera 3 s behind (confidence 0.95)``."""
    zone = f"zone {answer.tz}" if answer.tz else "zone from the files"
    offset = answer.time_offset or 0.0
    return f"{zone}, {behind_text(offset)} (confidence {answer.confidence:.2f})"


@dataclass
class Settled:
    """The records read in the zone that applies, and the clock that applies to them."""

    records: list[ImageRecord]
    tz: str | None  # for parse_zone: what the photos' naive times are read in
    time_offset: float
    note: str | None = None  # for the summary, when found from the photos
    answer: ClockAnswer | None = None


def reading_zone(tz: str | None) -> tzinfo:
    """The zone to read the photos in first (UTC while the zone is yet to be found); a bad zone
    is a usage error."""
    try:
        return finder_zone(tz)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def settle(
    records: list[ImageRecord],
    read_in: tzinfo,
    tz: str | None,
    time_offset: float | str,
    track: Track | None,
    max_gap: float = 60.0,
) -> Settled:
    """The clock of ``--tz``/``--time-offset``, either of which may be ``auto``: then found from
    the photos (records loaded in :func:`reading_zone`) and used only when confident, else
    :class:`ClockUnknown` says why (nothing is guessed)."""
    zone_auto, offset_auto = is_auto(tz), is_auto(time_offset)
    if not (zone_auto or offset_auto):
        return Settled(records, tz, float(time_offset))
    if not needs_clock(records):  # every time from a GPS stamp: no clock to find
        return Settled(
            records,
            "UTC" if zone_auto else tz,
            0.0 if offset_auto else float(time_offset),
            "camera clock not needed: every photo's time comes from its GPS stamp",
        )
    if track is None:
        raise UsageError("--tz auto and --time-offset auto need a GPX track (--gpx)")
    answer = find_for(
        records,
        read_in,
        track,
        tz=None if zone_auto else tz,
        time_offset=None if offset_auto else float(time_offset),
        max_gap=max_gap,
    )
    if not answer.found:
        raise ClockUnknown(
            f"cannot tell the camera clock from the photos: {answer.reason}; "
            "give --tz and --time-offset yourself (`mapillary-daemon clock` shows the evidence)"
        )
    records, new_tz, offset = placed(records, read_in, tz, time_offset, answer)
    return Settled(records, new_tz, offset, _note(answer, zone_auto, offset_auto), answer)


def _note(answer: ClockAnswer, zone_auto: bool, offset_auto: bool) -> str:
    """What the summary says was found (and what was kept as given)."""
    sure = f"(confidence {answer.confidence:.2f})"
    if zone_auto and offset_auto:
        return f"camera clock found from the photos: {found_text(answer)}"
    if zone_auto:
        zone = f"zone {answer.tz}" if answer.tz else "zone from the files"
        return (
            f"camera zone found from the photos: {zone} {sure}; time offset as given "
            f"(the photos say {behind_text(answer.time_offset or 0.0)})"
        )
    return (
        f"camera clock found from the photos: {behind_text(answer.time_offset or 0.0)} {sure}; "
        "zone as given"
    )


def print_answer(answer: ClockAnswer, seconds: float) -> None:
    if answer.found:
        print(f"clock: {found_text(answer)}")
        tz = f"--tz {answer.tz} " if answer.tz else ""
        print(f"  use: {tz}--time-offset {answer.time_offset:g}")
    else:
        print(f"clock: cannot tell: {answer.reason}")
        if answer.best is not None:
            best = answer.best
            zone = f"zone {best['tz']}, " if best.get("tz") else ""
            print(
                f"  best candidate, not trusted: {zone}{behind_text(best['time_offset'])} "
                f"({best['stops_matched']} stops)"
            )
    if answer.evidence:
        print(f"  evidence: {answer.evidence}")
    print(
        f"  photos: {answer.photos}, their stops: {answer.photo_stops}, the track's stops: "
        f"{answer.track_stops}; {seconds:.2f} s"
    )


def run(args: argparse.Namespace) -> int:
    if not args.path.exists():
        raise UsageError(f"{args.path} does not exist")
    if args.tz is not None:
        reading_zone(args.tz)  # a bad zone is a usage error before any work
    track = load_track(args.gpx)
    for note in track.notes:
        print(f"GPX: {note}", file=sys.stderr)
    began = time.perf_counter()
    records = load_records(find_jpegs(args.path, SKIP_DIRS), UTC)
    answer = find_for(
        records,
        UTC,
        track,
        tz=args.tz,
        time_offset=args.time_offset,
        max_gap=args.max_gap,
    )
    seconds = time.perf_counter() - began
    if args.json:
        out: dict[str, Any] = answer.as_json()
        out["seconds"] = round(seconds, 3)
        print(json.dumps(out, indent=2))
    else:
        print_answer(answer, seconds)
    return EXIT_OK if answer.found else EXIT_SET_ASIDE
