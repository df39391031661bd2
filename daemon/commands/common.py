"""What every command shares: its parser's shape and the --config flag.

Light on purpose: a one-shot `process` imports this and should not pay for logging or tokens.

Not a command itself (``daemon.cli`` registers only the modules it lists).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_command(
    sub: argparse._SubParsersAction, name: str, help_: str, description: str, epilog: str
) -> argparse.ArgumentParser:
    """A command's parser: its one-line ``help`` in the list of commands, then its own page
    (the epilog's examples keep their line breaks)."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help_,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def add_config_flag(p: argparse.ArgumentParser) -> None:
    """``--config FILE`` (once, however many parts of a command ask for it)."""
    if not any(a.dest == "config" for a in p._actions):
        p.add_argument(
            "--config",
            type=Path,
            metavar="FILE",
            help="configuration file (default: $MAPILLARY_DAEMON_CONFIG, else the user's; "
            "see `config path`)",
        )
