"""`run`: the daemon itself (watch, settle, import, process, upload), or one pass with --once."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from daemon.cli import EXIT_USAGE, UsageError
from daemon.core import config, log
from daemon.journal import JournalError

EPILOG = """\
examples:
  mapillary-daemon run --watch ~/camera-import
  mapillary-daemon run --mount-root /media/$USER --gpx-dir ~/gps-logs --tz Europe/Berlin
  mapillary-daemon run --once --watch /srv/photos          # for cron: do what is pending, exit
  mapillary-daemon run --server http://127.0.0.1:8765 --watch ./in   # against `mapillary-daemon server`

Every flag is also a configuration key (`mapillary-daemon config init` writes them all).
Signals: SIGTERM/SIGINT stop cleanly; SIGHUP reloads the configuration.
Exit codes: 0 clean stop, 1 (--once) some photos were set aside or failed, 2 bad configuration."""

# Flags carry the settings' own names (None = not given, the configuration decides); a key
# with no flag of its own (e.g. poll_interval) is simply never given on this command line.
SETTING_FLAGS = [key for keys in config.SECTIONS.values() for key in keys]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run the daemon: watch folders and cards, process and upload by itself",
        description="Watch folders and camera cards; copy, geotag, sequence, de-duplicate and "
        "upload new photos exactly once, resuming from the journal after any interruption.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", type=Path, help="configuration file")
    p.add_argument("--once", action="store_true", help="do what is pending and possible, exit")
    p.add_argument("--watch", type=Path, action="append", metavar="DIR", help="folder to watch")
    p.add_argument(
        "--mount-root",
        dest="mount_roots",
        type=Path,
        action="append",
        metavar="DIR",
        help="where cards get mounted (/media/$USER, /run/media/$USER, /Volumes)",
    )
    p.add_argument("--gpx-dir", type=Path, metavar="DIR", help="folder a GPS logger writes to")
    p.add_argument(
        "--gpx",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="GPX file(s) to use for every photo",
    )
    p.add_argument(
        "--server",
        metavar="URL",
        help="shorthand: graph and upload endpoints of one embedded server",
    )
    p.add_argument("--journal", type=Path, metavar="FILE")
    p.add_argument("--spool", type=Path, metavar="DIR", help="where card photos are copied")
    p.add_argument("--settle-seconds", type=float, metavar="S")
    p.add_argument("--batch-quiet-seconds", type=float, metavar="S")
    p.add_argument("--position-wait", type=float, metavar="S")
    p.add_argument(
        "--source-wait", type=float, metavar="S", help="how long photos wait for a missing source"
    )
    p.add_argument("--keep-days", type=float, metavar="D")
    p.add_argument("--min-free-mb", type=float, metavar="MB")
    p.add_argument("--tz", metavar="ZONE", help="zone of camera times: +02:00, Europe/Berlin")
    p.add_argument("--time-offset", type=float, metavar="S", help="camera clock ahead of GPS, s")
    p.add_argument("--bearing-offset", type=float, metavar="DEG")
    p.add_argument("--max-gap", type=float, metavar="S")
    p.add_argument("--cutoff-distance", type=float, metavar="M")
    p.add_argument("--cutoff-time", type=float, metavar="S")
    p.add_argument("--max-images", type=int, metavar="N")
    p.add_argument("--duplicate-distance", type=float, metavar="M")
    p.add_argument("--duplicate-angle", type=float, metavar="DEG")
    p.add_argument("--max-speed", dest="max_speed_kmh", type=float, metavar="KMH")
    p.add_argument("--interpolate-directions", action="store_true", default=None)
    p.add_argument("--offset-angle", type=float, metavar="DEG")
    p.add_argument("--concurrency", type=int, metavar="N")
    p.add_argument("--max-rate", type=float, metavar="BYTES_PER_S")
    p.add_argument("--upload-delay", type=float, metavar="S", help="hold sequences before upload")
    p.add_argument("--profile", metavar="NAME", help="stored token profile")
    p.add_argument("--log-format", choices=["auto", "console", "json"])
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> config.Settings:
    overrides: dict[str, Any] = {k: getattr(args, k, None) for k in SETTING_FLAGS}
    if args.server:
        base = args.server.rstrip("/")
        overrides["graph_endpoint"] = f"{base}/graph"
        overrides["upload_endpoint"] = f"{base}/mapillary_public_uploads"
    try:
        return config.load(args.config, overrides=overrides)
    except config.ConfigError as exc:
        raise UsageError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if not (settings.watch or settings.mount_roots):
        raise UsageError(
            "nothing to watch: give --watch DIR or --mount-root DIR (or set them "
            "in the configuration: mapillary-daemon config init)"
        )
    log.setup(settings.log_level, settings.log_format)
    from daemon.runtime.daemon import run_daemon

    try:
        return asyncio.run(
            run_daemon(
                settings,
                once=args.once,
                reload_settings=lambda: _reload(args),
                gpx_files=args.gpx,
            )
        )
    except JournalError as exc:
        print(f"mapillary-daemon run: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _reload(args: argparse.Namespace) -> config.Settings:
    """SIGHUP: the configuration file and environment again, the same flags on top."""
    try:
        return settings_from_args(args)
    except UsageError as exc:
        raise config.ConfigError(str(exc)) from None
