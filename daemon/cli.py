"""Command-line entry: one argparse parser, one module per subcommand.

Every module in ``daemon.commands`` listed in COMMANDS exposes ``register(subparsers)`` which adds
its parser and sets ``func`` (``args -> int`` exit code) as the default. Exit codes and the
errors that end a command are in ``daemon.core.errors``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from daemon import __version__
from daemon.core.errors import EXIT_INTERRUPTED, EXIT_USAGE, DaemonError

# Order here is the order in `--help`.
COMMANDS = [
    "run",
    "status",
    "retry",
    "demo",
    "process",
    "fix_dates",
    "geotag",
    "interpolate_direction",
    "remove_duplicates",
    "sequence_split",
    "add_tags",
    "add_project",
    "authenticate",
    "upload",
    "process_and_upload",
    "download",
    "server",
    "config",
    "service",
]


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command, or with just the module ``only`` (see :func:`main`)."""
    parser = argparse.ArgumentParser(
        prog="mapillary-daemon",
        description="Set-and-forget uploader for street-level imagery, and the jobs of the old "
        "Python Tools for Mapillary scripts as subcommands.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        if only is not None and name != only:
            continue
        try:
            module = importlib.import_module(f"daemon.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"daemon.commands.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def _command_module(argv: Sequence[str]) -> str | None:
    """The module of the command named on the line, if it is one of ours."""
    first = next((a for a in argv if not a.startswith("-")), None)
    name = first.replace("-", "_") if first else None
    return name if name in COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Import only the command asked for: the others pull in aiohttp and the server, which
    # cost a one-shot `process` or `geotag` half a second and 30 MB before it reads a photo.
    parser = build_parser(_command_module(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except DaemonError as exc:
        print(f"mapillary-daemon {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
