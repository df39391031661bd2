"""`run`: the daemon itself (watch, settle, import, process, upload), or one pass with --once."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from daemon.commands.common import add_command, add_config_flag
from daemon.core import config, flags, log
from daemon.core.errors import EXIT_IO, EXIT_JOURNAL_GONE, UsageError
from daemon.journal import JournalError, JournalGone

EPILOG = """\
examples:
  mapillary-daemon run --watch ~/camera-import
  mapillary-daemon run --mount-root /media/$USER --gpx-dir ~/gps-logs --tz Europe/Berlin
  mapillary-daemon run --once --watch /srv/photos          # for cron: do what is pending, exit
  mapillary-daemon run --server http://127.0.0.1:8765 --watch ./in   # against `mapillary-daemon server`

Every flag is also a configuration key (`mapillary-daemon config init` writes them all).
Signals: SIGTERM/SIGINT stop cleanly; SIGHUP reloads the configuration.
Exit codes: 0 clean stop, 1 (--once) some photos were set aside or failed, 2 bad configuration,
3 could not finish: the journal or the spool failed (disk full, I/O error),
4 the journal was deleted or replaced while running (stopped; see the journal_gone log line)."""

# Every setting with a flag, under its own name (None = not given, the configuration decides).
SETTING_FLAGS = flags.flagged()


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "run",
        "run the daemon: watch folders and cards, process and upload by itself",
        "Watch folders and camera cards; copy, geotag, sequence, de-duplicate and "
        "upload new photos exactly once, resuming from the journal after any interruption.",
        EPILOG,
    )
    add_config_flag(p)
    p.add_argument(
        "--once", action="store_true", help="do what is pending and possible, then exit (for cron)"
    )
    p.add_argument(
        "--gpx",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="a GPX file for every photo; repeat for more (default: only those in gpx_dir)",
    )
    p.add_argument(
        "--server",
        metavar="URL",
        help="graph and upload endpoints of one `mapillary-daemon server` (default: Mapillary's)",
    )
    flags.add_sections(p, config.SECTIONS)
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> config.Settings:
    """The configuration with the flags given on top; raises ConfigError."""
    overrides = flags.given(args, SETTING_FLAGS)
    if args.server:
        base = args.server.rstrip("/")
        overrides["graph_endpoint"] = f"{base}/graph"
        overrides["upload_endpoint"] = f"{base}/mapillary_public_uploads"
    return config.load(args.config, overrides=overrides)


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
                # SIGHUP: the configuration file and environment again, the same flags on top.
                reload_settings=lambda: settings_from_args(args),
                gpx_files=args.gpx,
            )
        )
    except JournalGone as exc:
        print(f"mapillary-daemon run: journal_gone: {exc}", file=sys.stderr)
        return EXIT_JOURNAL_GONE
    except JournalError as exc:  # not the user's arguments: the journal's disk or file
        print(f"mapillary-daemon run: {exc}", file=sys.stderr)
        return EXIT_IO
