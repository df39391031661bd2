"""`config init|show|path`: where the configuration lives and what the daemon will use."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from daemon.core import config
from daemon.core.errors import EXIT_OK, EXIT_USAGE, UsageError

TEMPLATE_HEADER = """\
# mapillary-daemon configuration (TOML). Every key is optional; the values below are the defaults.
# Precedence: these values < MAPILLARY_DAEMON_<KEY> environment variables < command-line flags.
# Sections are only for reading; keys may also be written at the top level.
"""


def template(settings: config.Settings) -> str:
    """A commented file with every key in its section; unset keys are commented out."""
    rendered = dict(
        line.split(" = ", 1) for line in settings.to_toml().splitlines() if " = " in line
    )
    lines = [TEMPLATE_HEADER]
    for section, keys in config.SECTIONS.items():
        lines.append(f"[{section}]")
        for key in keys:
            lines.append(f"{key} = {rendered[key]}" if key in rendered else f"# {key} = (not set)")
        lines.append("")
    return "\n".join(lines)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "config",
        help="create, show or locate the configuration file",
        description="Create, show or locate the TOML configuration file.",
        epilog="examples:\n  mapillary-daemon config init\n  mapillary-daemon config show\n"
        "  MAPILLARY_DAEMON_WATCH=/srv/photos mapillary-daemon config show",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", choices=["init", "show", "path"])
    p.add_argument(
        "--config", type=Path, help="configuration file (default: %(default)s)", default=None
    )
    p.add_argument("--force", action="store_true", help="init: overwrite an existing file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path: Path = args.config or config.default_config_path()
    if args.action == "path":
        print(path)
        return EXIT_OK
    if args.action == "init":
        if path.exists() and not args.force:
            print(f"{path} exists already; use --force to overwrite it", file=sys.stderr)
            return EXIT_USAGE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(template(config.Settings()))
        os.replace(tmp, path)
        print(f"wrote {path}")
        return EXIT_OK
    try:
        settings = config.load(args.config)
    except config.ConfigError as exc:
        raise UsageError(str(exc)) from None
    print(f"# effective settings (file: {path}{'' if path.exists() else ', not present'})")
    print(template(settings), end="")
    return EXIT_OK
