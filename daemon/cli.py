"""Command-line entry: one argparse parser, one module per subcommand.

Every module in ``daemon.commands`` listed in COMMANDS exposes ``register(subparsers)`` which adds
its parser and sets ``func`` (``args -> int`` exit code) as the default. Exit codes and the
errors that end a command are in ``daemon.core.errors``.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
from collections.abc import Sequence

from daemon import __version__
from daemon.core.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, DaemonError

# Order here is the order in `--help`.
COMMANDS = [
    "run",
    "status",
    "retry",
    "demo",
    "process",
    "fix_dates",
    "geotag",
    "clock",
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


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found = action.choices.get(name)
            return found if isinstance(found, argparse.ArgumentParser) else None
    return None


def old_spellings(command: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """The old scripts' flags (``--offset_angle``, ``--max_results=10``) as ours: an
    underscore spelling of one of the command's flags is taken as that flag (hidden aliases)."""
    known = {o for a in command._actions for o in a.option_strings}
    out = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        if arg.startswith("--") and "_" in name and name.replace("_", "-") in known:
            arg = name.replace("_", "-") + eq + value
        out.append(arg)
    return out


def unknown_flags(command: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """The ``--flags`` the command does not know (nor abbreviates), looked for before parsing:
    argparse would take the value after a mistyped flag as a positional argument and complain
    of a missing one instead of naming the typo."""
    known = [o for a in command._actions for o in a.option_strings if o.startswith("--")]
    unknown = []
    for arg in argv:
        if arg == "--":
            break
        name = arg.split("=", 1)[0]
        if arg.startswith("--") and not any(k.startswith(name) for k in known):
            unknown.append(arg)
    return unknown


def _unknown(command: argparse.ArgumentParser, extras: list[str]) -> None:
    """A mistyped flag: the command's own usage, and the flag it was probably meant to be."""
    known = [o for a in command._actions for o in a.option_strings if o.startswith("--")]
    flag = next((e.split("=")[0] for e in extras if e.startswith("-")), extras[0])
    close = difflib.get_close_matches(flag, known, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    command.error(f"unrecognized arguments: {' '.join(extras)}{hint}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Import only the command asked for: the others pull in aiohttp and the server, which
    # cost a one-shot `process` or `geotag` half a second and 30 MB before it reads a photo.
    module = _command_module(argv)
    parser = build_parser(module)
    command = _subparser(parser, module.replace("_", "-")) if module else None
    if command is not None:
        argv = old_spellings(command, argv)
        if typos := unknown_flags(command, argv):
            _unknown(command, typos)
    args, extras = parser.parse_known_args(argv)
    if extras:
        if command is None:
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        _unknown(command, extras)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        code = _run(args)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
        return code
    except BrokenPipeError:
        # `status | head -5`: the reader has what it wanted. No traceback, and none at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _run(args: argparse.Namespace) -> int:
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
