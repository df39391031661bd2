"""`config init|show|path`: where the configuration lives and what the daemon will use."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from daemon.commands.common import add_command
from daemon.core import config
from daemon.core.durable import write_atomically
from daemon.core.errors import EXIT_OK, EXIT_USAGE
from daemon.core.toml_write import assignment

TEMPLATE_HEADER = """\
# mapillary-daemon configuration (TOML). Every key is optional; the values below are the defaults.
# Precedence: these values < MAPILLARY_DAEMON_<KEY> environment variables < command-line flags.
# Sections are only for reading; keys may also be written at the top level.
"""


def template(settings: config.Settings) -> str:
    """A file with every key in its section; unset keys are commented out."""
    lines = [TEMPLATE_HEADER]
    for section, keys in config.SECTIONS.items():
        lines.append(f"[{section}]")
        for key in keys:
            value = getattr(settings, key)
            lines.append(f"# {key} = (not set)" if value is None else assignment(key, value))
        lines.append("")
    return "\n".join(lines)


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "config",
        "create, show or locate the configuration file",
        "Create, show or locate the TOML configuration file.",
        "examples:\n  mapillary-daemon config init\n  mapillary-daemon config show\n"
        "  MAPILLARY_DAEMON_WATCH=/srv/photos mapillary-daemon config show",
    )
    p.add_argument("action", choices=["init", "show", "path"])
    p.add_argument(
        "--config",
        type=Path,
        help="configuration file (default: the user's, see `config path`)",
        default=None,
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
        write_atomically(path, template(config.Settings()), durable=False)
        print(f"wrote {path}")
        return EXIT_OK
    settings = config.load(args.config)
    print(f"# effective settings (file: {path}{'' if path.exists() else ', not present'})")
    print(template(settings), end="")
    return EXIT_OK
