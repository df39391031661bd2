"""What every command shares: its parser's shape, the --config flag, the access token.

Not a command itself (``daemon.cli`` registers only the modules it lists).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from daemon.core import auth
from daemon.core.errors import UsageError


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
        p.add_argument("--config", type=Path, help="configuration file")


def require_token(profile: str) -> str:
    """The profile's access token; none is a usage error that says how to get one."""
    token = auth.load_token(profile)
    if not token:
        raise UsageError(
            "no access token: run 'mapillary-daemon authenticate' or set MAPILLARY_TOKEN"
        )
    return token
