"""`download MIN_LAT MAX_LAT MIN_LON MAX_LON`: the images of a box, tagged, with a GeoJSON index."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from daemon.commands.common import add_command, add_config_flag
from daemon.commands.report import Summary
from daemon.core import auth, config, flags, log
from daemon.core.errors import EXIT_USAGE, UsageError
from daemon.core.progress import Progress
from daemon.download.box import Box
from daemon.download.fetch import DEFAULT_MIN_RATE, DEFAULT_MIN_SECONDS, Pace
from daemon.download.job import DEFAULT_CONCURRENCY, Listener, Options, Outcome, download_box
from daemon.download.search import SIZES, Filters, RemoteImage
from daemon.mapillary import AuthError as AuthRefused
from daemon.mapillary import RetryPolicy

DEFAULT_OUT = Path("mapillary_images")

EPILOG = """\
examples:
  mapillary-daemon download 48.13 48.14 11.56 11.58                # Munich, 1024 px, ./mapillary_images
  mapillary-daemon download --bbox=11.56,48.13,11.58,48.14 --out munich --image-size 2048
  mapillary-daemon download 48.13 48.14 11.56 11.58 --max-results 500 --start 2023-01-01
  mapillary-daemon download 48.13 48.14 11.56 11.58 --sequence SEQUENCE_ID --image-size original

Files are named <image id>.jpg and carry the image's position, capture time (UTC) and compass
angle in their EXIF; images.geojson lists them (one Point per image). A box holding more than
the API's 2,000 answers is split into four and asked again, so big boxes work (they take more
searches). A rerun skips the images already downloaded and finishes the rest. Thumbnails that
are not JPEGs, too large, or whose ids or URLs look wrong are refused and reported.
Write --bbox with '=' when its first number is negative (--bbox=-0.2,51.5,-0.1,51.6).
--start/--end take a date or an ISO 8601 time (UTC unless it says its zone); an --end date
includes that whole day. The endpoint and the token are the upload's (MAPILLARY_TOKEN,
MAPILLARY_GRAPH_API_ENDPOINT or the config file).
Exit codes: 0 all downloaded, 1 some images failed or were refused, 2 usage or token refused."""


def image_size(text: str) -> str:
    """A size the service has; the old scripts' 320 and 640 become the smallest at least as
    large (said once, on stderr)."""
    if text.isdigit() and text not in SIZES:
        larger = [size for size in SIZES if size.isdigit() and int(size) >= int(text)]
        if larger:
            print(f"download: image size {text} is not offered; using {larger[0]}", file=sys.stderr)
            return larger[0]
    return text


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "download",
        "download the images of a bounding box (tagged JPEGs and a GeoJSON index)",
        "Search the Mapillary graph API for the images inside a box and download\n"
        "their thumbnails in parallel, each with its position, time and heading in EXIF.",
        EPILOG,
    )
    edges = {
        "min_lat": "southern edge of the box, degrees latitude",
        "max_lat": "northern edge, degrees latitude",
        "min_lon": "western edge, degrees longitude",
        "max_lon": "eastern edge, degrees longitude",
    }
    for name, text in edges.items():
        p.add_argument(name, type=float, nargs="?", metavar=name.upper(), help=text)
    p.add_argument(
        "--bbox", metavar="W,S,E,N", help="the box as the API writes it, instead of the four edges"
    )
    p.add_argument(
        "--max-results", type=int, metavar="N", help="download at most N images (default: all)"
    )
    p.add_argument(
        "--image-size",
        type=image_size,
        choices=SIZES,
        default="1024",
        help="thumbnail width (%(default)s)",
    )
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, metavar="DIR", help="folder (%(default)s)"
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help="downloads in parallel (%(default)s)",
    )
    p.add_argument("--start", metavar="DATE", help="only images captured from then on")
    p.add_argument("--end", metavar="DATE", help="only images captured until then")
    p.add_argument("--sequence", metavar="ID", help="only images of this sequence")
    p.add_argument(
        "--max-file-mb",
        type=float,
        default=64.0,
        metavar="MB",
        help="refuse a thumbnail larger than this (%(default)s)",
    )
    p.add_argument(
        "--deadline",
        type=float,
        default=DEFAULT_MIN_SECONDS,
        metavar="S",
        help="each try of a file may take max(S, size / --min-rate), then it is retried "
        "(%(default)g)",
    )
    p.add_argument(
        "--min-rate",
        type=float,
        default=DEFAULT_MIN_RATE / 1000,
        metavar="KB_PER_S",
        help="the slowest a file may come in kB/s once past --deadline (%(default)g)",
    )
    flags.add(p, ["profile"])
    add_config_flag(p)
    p.set_defaults(func=run)


def box_from(args: argparse.Namespace) -> Box:
    corners = [args.min_lat, args.max_lat, args.min_lon, args.max_lon]
    given = [c for c in corners if c is not None]
    try:
        if args.bbox is not None:
            if given:
                raise UsageError("give the box either as MIN_LAT MAX_LAT MIN_LON MAX_LON or --bbox")
            return Box.parse(args.bbox)
        if len(given) != 4:
            raise UsageError("give the box as MIN_LAT MAX_LAT MIN_LON MAX_LON (or --bbox W,S,E,N)")
        return Box.from_corners(*corners)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def api_time(text: str, flag: str, end: bool = False) -> str:
    """A date or ISO 8601 time as the graph API takes it (UTC, milliseconds, Z).

    >>> api_time("2024-06-01", "--start"), api_time("2024-06-01", "--end", end=True)
    ('2024-06-01T00:00:00.000Z', '2024-06-01T23:59:59.999Z')
    >>> api_time("2024-06-01T12:00:00+02:00", "--start")
    '2024-06-01T10:00:00.000Z'
    """
    try:
        if len(text) == 10:
            day = datetime.strptime(text, "%Y-%m-%d").date()
            moment = datetime.combine(day, time(), UTC)
            if end:
                moment += timedelta(days=1, milliseconds=-1)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
    except ValueError:
        raise UsageError(f"{flag} {text!r} is not a date (YYYY-MM-DD) or ISO 8601 time") from None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def options_from(args: argparse.Namespace) -> Options:
    box = box_from(args)
    if args.max_results is not None and args.max_results < 1:
        raise UsageError("--max-results must be at least 1")
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if args.max_file_mb <= 0:
        raise UsageError("--max-file-mb must be positive")
    if args.deadline <= 0 or args.min_rate <= 0:
        raise UsageError("--deadline and --min-rate must be positive")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is not a folder")
    start = api_time(args.start, "--start") if args.start else None
    end = api_time(args.end, "--end", end=True) if args.end else None
    if start and end and start > end:
        raise UsageError(f"--start {args.start} is after --end {args.end}")
    return Options(
        box=box,
        out=args.out,
        size=args.image_size,
        max_results=args.max_results,
        concurrency=args.concurrency,
        filters=Filters(start, end, args.sequence),
        max_bytes=int(args.max_file_mb * 2**20),
        pace=Pace(args.min_rate * 1000, args.deadline),
    )


class _Report(Listener):
    """The job's news as a progress bar and per-image lines, counted in the summary."""

    def __init__(self, summary: Summary) -> None:
        self.summary = summary

    def planned(self, total: int) -> None:
        self.summary.progress = Progress(total, "download")

    def done(self, image: RemoteImage, fetched: bool) -> None:
        if self.summary.progress is not None:
            self.summary.progress.advance()

    def failed(self, line: str, reason: str) -> None:
        self.summary.set_aside[reason] += 1
        self.summary.file_line(line)
        if self.summary.progress is not None and not line.startswith("search"):
            self.summary.progress.advance()


def run(args: argparse.Namespace) -> int:
    options = options_from(args)
    settings = config.load(args.config, overrides=flags.given(args, ["profile"]))
    log.setup("warning")
    token = auth.require_token(settings.profile)
    summary = Summary("download", done_verb="downloaded")
    policy = RetryPolicy(max_attempts=settings.max_attempts)
    try:
        outcome = asyncio.run(
            download_box(
                settings.graph_endpoint, token, options, policy=policy, listener=_Report(summary)
            )
        )
    except AuthRefused as exc:
        if summary.progress is not None:
            summary.progress.close()
        print(
            f"mapillary-daemon download: {exc}; run 'mapillary-daemon authenticate'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    _fill(summary, outcome)
    return summary.finish()


def _fill(summary: Summary, outcome: Outcome) -> None:
    found = outcome.search
    summary.images = len(found.images) + len(found.bad)
    summary.done = len(outcome.fetched)
    if outcome.already:
        summary.note(f"already there from an earlier run: {len(outcome.already)}")
    split = f", {found.splits} boxes split in four" if found.splits else ""
    summary.note(f"searches: {found.searches}{split} ({outcome.search_seconds:.1f} s)")
    if outcome.fetched:
        megabytes = outcome.bytes_received / 2**20
        summary.note(
            f"received {megabytes:.1f} MB in {outcome.fetch_seconds:.1f} s "
            f"({outcome.images_per_second:.0f} images/s)"
        )
    if found.outside:
        summary.note(f"ignored {found.outside} search results outside the box")
    for note in found.notes:
        summary.note(note)
    if outcome.index is not None:
        summary.note(f"index: {outcome.index}")
