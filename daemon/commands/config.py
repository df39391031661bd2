"""`config init|show|path|web-password`: where the configuration lives, what the daemon will
use, and the status page's password (stored hashed)."""

from __future__ import annotations

import argparse
import getpass
import re
import sys
from pathlib import Path

from daemon.commands.common import add_command, add_config_flag
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
        "  MAPILLARY_DAEMON_WATCH=/srv/photos mapillary-daemon config show\n"
        "  mapillary-daemon config web-password   # before --web-listen 0.0.0.0:8764",
    )
    p.add_argument(
        "action",
        choices=["init", "show", "path", "web-password"],
        metavar="ACTION",
        help="init: write every setting with its default; show: the settings in effect "
        "(file, environment); path: where the file is; web-password: store the status "
        "page's password (hashed)",
    )
    add_config_flag(p)
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
    if args.action == "web-password":
        return set_web_password(path)
    settings = config.load(args.config)
    print(f"# effective settings (file: {path}{'' if path.exists() else ', not present'})")
    print(template(settings), end="")
    return EXIT_OK


def set_web_password(path: Path) -> int:
    """Ask for the page's password (twice on a terminal, else one line of stdin) and store
    its salted hash as ``web_password_hash``; the password itself is never written."""
    from daemon.web import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("status page password: ")
        if getpass.getpass("again: ") != password:
            print("the two differ; nothing changed", file=sys.stderr)
            return EXIT_USAGE
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        print("a password of 8 characters at least, please; nothing changed", file=sys.stderr)
        return EXIT_USAGE
    line = assignment("web_password_hash", hash_password(password))
    text = path.read_text() if path.exists() else ""
    write_atomically(path, with_line(text, "web_password_hash", line, "web"), durable=False)
    print(f"wrote the page's password hash to {path}")
    return EXIT_OK


def with_line(text: str, key: str, line: str, section: str) -> str:
    """``text`` with ``key``'s line (set or commented out) replaced by ``line``, or ``line``
    added to ``section``.

    >>> with_line("[web]\\n# k = (not set)\\n", "k", 'k = "v"', "web")
    '[web]\\nk = "v"\\n'
    >>> with_line("a = 1\\n", "k", 'k = "v"', "web")
    'a = 1\\n\\n[web]\\nk = "v"\\n'
    """
    pattern = re.compile(rf"^#?\s*{re.escape(key)}\s*=.*$", re.M)
    if pattern.search(text):
        return pattern.sub(lambda _: line, text, count=1)
    header = re.compile(rf"^\[{re.escape(section)}\]\s*$", re.M).search(text)
    if header:
        return f"{text[: header.end()]}\n{line}{text[header.end() :]}"
    return f"{text.rstrip()}\n\n[{section}]\n{line}\n" if text.strip() else f"[{section}]\n{line}\n"
