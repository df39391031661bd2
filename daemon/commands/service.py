"""`service install|uninstall`: the systemd unit (or launchd agent) for this installation.

The templates live in ``daemon/service_files`` (package data; ``systemd/`` in the source tree links
to them). Installing fills their ``{{FIELDS}}`` with this installation's paths, writes the files
and prints the commands that enable the service; it never runs systemctl or launchctl itself, so
nothing starts behind the user's back. ``--dry-run`` prints the files instead of writing them.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from xml.sax.saxutils import escape as xml_escape

from daemon.commands.common import add_command
from daemon.core import auth, config
from daemon.core.durable import write_atomically
from daemon.core.errors import EXIT_OK, UsageError

UNIT = "mapillary-daemon.service"
SERVICE_USER = "mapillary-daemon"
CARD_MOUNT_ROOT = Path("/media/mapillary-daemon")
LAUNCHD_LABEL = "local.mapillary-daemon"
SYSTEM_CONFIG_DIR = Path("/etc/mapillary-daemon")
SYSTEM_UNIT = Path("/etc/systemd/system") / UNIT
SYSUSERS = Path("/etc/sysusers.d/mapillary-daemon.conf")
HELPER = Path("/usr/local/libexec/mapillary-daemon-card-mount")
UDEV_RULE = Path("/etc/udev/rules.d/90-mapillary-daemon-cards.rules")
# Folders the system unit's ProtectHome= hides; anything the daemon needs there relaxes it.
HOME_TREES = (Path("/home"), Path("/root"), Path("/run/user"))
# Folders the system unit's PrivateTmp= replaces with an empty private one.
TMP_TREES = (Path("/tmp"), Path("/var/tmp"))
_SAFE_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_FIELD = re.compile(r"\{\{([A-Z_]+)\}\}")

EPILOG = """\
examples:
  mapillary-daemon service install --user --dry-run     # show what would be written
  mapillary-daemon service install --user               # desktop: a systemd user unit
  sudo /opt/mapillary-daemon/bin/mapillary-daemon service install --system   # headless Pi
  mapillary-daemon service install                      # macOS: a launchd agent
  mapillary-daemon service uninstall --user

--system also writes a sysusers.d entry (the service user), and unless --no-card-mount a udev rule
and helper that mount inserted camera cards read-only under --card-mount-root.
Configuration, token, journal and spool are left alone by uninstall."""


@dataclass(frozen=True)
class Planned:
    """One file to write: where, what, and its mode."""

    path: Path
    text: str
    mode: int = 0o644


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "service",
        "install or remove the systemd unit (launchd agent on macOS) for this installation",
        "Write the systemd unit (or the macOS launchd agent) that runs "
        "`mapillary-daemon run` from this installation, and print the commands that enable it.",
        EPILOG,
    )
    p.add_argument("action", choices=["install", "uninstall"])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--user", action="store_true", help="a user service (default unless root)")
    mode.add_argument("--system", action="store_true", help="a system service (default as root)")
    p.add_argument(
        "--launchd",
        action="store_true",
        default=sys.platform == "darwin",
        help="write the launchd agent plist (default on macOS)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the files, write nothing")
    p.add_argument(
        "--root",
        type=Path,
        default=Path("/"),
        help="--system: install below this folder instead of / (preparing an image)",
    )
    p.add_argument("--config", type=Path, help="--system: configuration to take watch roots from")
    p.add_argument(
        "--service-user",
        default=SERVICE_USER,
        metavar="NAME",
        help="--system: the dedicated user (default %(default)s)",
    )
    p.add_argument(
        "--card-mount-root",
        type=Path,
        default=CARD_MOUNT_ROOT,
        metavar="DIR",
        help="--system: where the udev helper mounts cards (default %(default)s)",
    )
    p.add_argument(
        "--no-card-mount",
        action="store_true",
        help="--system: no udev rule (a desktop where udisks2 mounts cards)",
    )
    p.set_defaults(func=run)


# -- where things go ---------------------------------------------------------------------------


def executable() -> list[str]:
    """The command that starts this installation: the venv's `mapillary-daemon` script next to
    the running interpreter (not resolved: a venv's python is a symlink out of the venv)."""
    script = Path(sys.executable).absolute().parent / "mapillary-daemon"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [str(Path(sys.executable).absolute()), "-m", "daemon"]


def user_unit_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def _under(root: Path, path: Path) -> Path:
    """``path`` (absolute) placed below ``root``, for --root installs."""
    return root / path.relative_to(path.anchor)


def template(name: str) -> str:
    return (resources.files("daemon") / "service_files" / name).read_text(encoding="utf-8")


def fill(text: str, values: dict[str, str]) -> str:
    """Replace every ``{{FIELD}}``; a field without a value is a bug in this module."""
    missing = sorted(set(_FIELD.findall(text)) - values.keys())
    if missing:
        raise KeyError(f"no value for template fields: {', '.join(missing)}")
    return _FIELD.sub(lambda m: values[m.group(1)], text)


# -- escaping for each file format ----------------------------------------------------------------


def systemd_word(word: str) -> str:
    """One argument or path in a unit file: % is a specifier and $ a variable there."""
    word = word.replace("%", "%%").replace("$", "$$")
    if re.search(r'[\s"\'\\;]', word):
        return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def systemd_env_value(value: str) -> str:
    """A value inside Environment="KEY=VALUE" (no $ expansion there, but % specifiers)."""
    return value.replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"')


def shell_value(value: str) -> str:
    """A value inside double quotes in the helper script: refuse what would need escaping."""
    if re.search(r'["$`\\\n]', value):
        raise UsageError(f"cannot use {value!r} in the mount helper: it holds shell characters")
    return value


# -- the files of each kind of install -----------------------------------------------------------


def plan_user() -> list[Planned]:
    values = {
        "EXEC": " ".join(systemd_word(w) for w in executable()),
        "CONFIG_HOME": systemd_env_value(str(config.config_dir().parent)),
        "STATE_HOME": systemd_env_value(str(config.state_dir().parent)),
        "DATA_HOME": systemd_env_value(str(config.data_dir().parent)),
    }
    text = fill(template("mapillary-daemon-user.service"), values)
    return [Planned(user_unit_dir() / UNIT, text)]


def plan_launchd() -> list[Planned]:
    logs = Path.home() / "Library" / "Logs" / "mapillary-daemon.log"
    values = {
        "LABEL": LAUNCHD_LABEL,
        # Several arguments when there is no script: close and reopen the <string> element.
        "EXEC": "</string>\n        <string>".join(xml_escape(w) for w in executable()),
        "LOG_FILE": xml_escape(str(logs)),
    }
    text = fill(template("mapillary-daemon.plist"), values)
    return [Planned(launchd_plist_path(), text)]


def launchd_plist_path() -> Path:
    return Path.home() / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"


def system_settings(path: Path | None, root: Path) -> config.Settings:
    """What the system service will read: its configuration file without this shell's
    environment (the service does not inherit it)."""
    file = path or _under(root, SYSTEM_CONFIG_DIR / "config.toml")
    if path is None and not file.exists():
        return config.Settings()
    return config.load(file, env={})


def writable_paths(settings: config.Settings) -> list[Path]:
    """The spool, journal folder and watch roots: all the service may write outside its state
    directory (which systemd makes writable by itself)."""
    paths = list(settings.watch)
    if settings.spool:
        paths.append(settings.spool)
    if settings.journal:
        paths.append(settings.journal.parent)
    return sorted({p.absolute() for p in paths})


def needed_paths(settings: config.Settings, exe: list[str]) -> list[Path]:
    """Everything the service must see: to decide on ProtectHome= and warn about PrivateTmp=."""
    paths = writable_paths(settings) + [p.absolute() for p in settings.mount_roots]
    if settings.gpx_dir:
        paths.append(settings.gpx_dir.absolute())
    return paths + [Path(exe[0])]


def _inside(path: Path, trees: tuple[Path, ...]) -> bool:
    return any(path == t or t in path.parents for t in trees)


def plan_system(args: argparse.Namespace, settings: config.Settings) -> list[Planned]:
    user = args.service_user
    if not _SAFE_NAME.match(user):
        raise UsageError(f"bad service user name {user!r}: use lower-case letters, digits, _ or -")
    exe = executable()
    protect_home = "read-only" if _inside_any(needed_paths(settings, exe), HOME_TREES) else "yes"
    writable = " ".join(systemd_word(f"-{p}") for p in writable_paths(settings))
    unit = fill(
        template("mapillary-daemon.service"),
        {
            "EXEC": " ".join(systemd_word(w) for w in exe),
            "USER": user,
            "GROUP": user,
            "PROTECT_HOME": protect_home,
            "READ_WRITE_PATHS": writable,
        },
    )
    root = args.root
    planned = [
        Planned(_under(root, SYSTEM_UNIT), unit),
        Planned(
            _under(root, SYSUSERS), fill(template("mapillary-daemon.sysusers"), {"USER": user})
        ),
    ]
    if not args.no_card_mount:
        planned += plan_card_mount(root, user, args.card_mount_root)
    return planned


def _inside_any(paths: list[Path], trees: tuple[Path, ...]) -> bool:
    return any(_inside(p, trees) for p in paths)


def plan_card_mount(root: Path, user: str, mount_root: Path) -> list[Planned]:
    if not mount_root.is_absolute():
        raise UsageError(f"--card-mount-root must be an absolute path, not {mount_root}")
    helper = fill(
        template("mapillary-daemon-card-mount"),
        {"MOUNT_ROOT": shell_value(str(mount_root)), "USER": user, "GROUP": user},
    )
    if re.search(r'[\s"]', str(HELPER)):
        raise UsageError(f"the helper path {HELPER} cannot go into a udev rule")
    rule = fill(template("90-mapillary-daemon-cards.rules"), {"HELPER": str(HELPER)})
    return [
        Planned(_under(root, HELPER), helper, 0o755),
        Planned(_under(root, UDEV_RULE), rule),
    ]


# -- what to run afterwards ------------------------------------------------------------------------


def enable_commands(kind: str, args: argparse.Namespace) -> list[str]:
    exe = shlex.join(executable())
    if kind == "launchd":
        plist = shlex.quote(str(launchd_plist_path()))
        return [
            f'launchctl bootstrap "gui/$(id -u)" {plist}',
            f'launchctl print "gui/$(id -u)/{LAUNCHD_LABEL}"',
        ]
    if kind == "user":
        return [
            "systemctl --user daemon-reload",
            f"systemctl --user enable --now {UNIT}",
            'loginctl enable-linger "$USER"   # optional: keep it running while you\'re logged out',
            f"systemctl --user status {UNIT}",
        ]
    cmds = [
        "sudo systemd-sysusers /etc/sysusers.d/mapillary-daemon.conf",
        f"sudo env XDG_CONFIG_HOME=/etc {exe} config init   # if there is no "
        "/etc/mapillary-daemon/config.toml yet; then edit it",
        f"sudo env XDG_CONFIG_HOME=/etc {exe} authenticate   # the token, root-only, "
        "in /etc/mapillary-daemon/tokens.toml",
    ]
    if not args.no_card_mount:
        cmds.append("sudo udevadm control --reload")
    cmds += [
        "sudo systemctl daemon-reload",
        f"sudo systemctl enable --now {UNIT}",
        f"systemctl status {UNIT}; journalctl -u {UNIT} -f",
    ]
    return cmds


def disable_commands(kind: str) -> list[str]:
    if kind == "launchd":
        return [f'launchctl bootout "gui/$(id -u)/{LAUNCHD_LABEL}"']
    if kind == "user":
        return [f"systemctl --user stop {UNIT}", "systemctl --user daemon-reload"]
    return [
        f"sudo systemctl stop {UNIT}",
        "sudo systemctl daemon-reload",
        "sudo udevadm control --reload",
    ]


def warnings(kind: str, args: argparse.Namespace, settings: config.Settings | None) -> list[str]:
    """Things that would make the installed service fail, said before it does."""
    found: list[str] = []
    exe = executable()
    if len(exe) > 1:
        found.append(f"no mapillary-daemon script next to {sys.executable}; using '-m daemon'")
    if kind != "system" or settings is None:
        return found
    for path in needed_paths(settings, exe):
        if _inside(path, TMP_TREES):
            found.append(f"{path} is in a temporary folder the service cannot see (PrivateTmp=)")
    found += system_config_warnings(args.root)
    if not args.no_card_mount and args.card_mount_root not in settings.mount_roots:
        found.append(
            f"add {args.card_mount_root} to mount_roots in /etc/mapillary-daemon/config.toml, "
            "or the daemon will not look at the cards the udev helper mounts"
        )
    return found


def system_config_warnings(root: Path) -> list[str]:
    """The token must be there (systemd refuses to start a unit whose credential is missing)
    and the folder readable by the service user (a 0700 folder hides config.toml from it)."""
    folder = _under(root, SYSTEM_CONFIG_DIR)
    found = []
    if not (folder / auth.TOKENS_FILE).is_file():
        found.append(
            f"no {SYSTEM_CONFIG_DIR / auth.TOKENS_FILE} yet: the service will not start without "
            "it (sudo env XDG_CONFIG_HOME=/etc mapillary-daemon authenticate)"
        )
    if folder.is_dir() and folder.stat().st_mode & 0o005 != 0o005:
        found.append(
            f"the service user cannot read {SYSTEM_CONFIG_DIR}: sudo chmod 755 {SYSTEM_CONFIG_DIR}"
        )
    return found


# -- doing it ---------------------------------------------------------------------------------------


def choose_kind(args: argparse.Namespace) -> str:
    if args.launchd:
        if args.system:
            raise UsageError("on macOS only a launch agent (--user) is supported")
        return "launchd"
    if args.system:
        return "system"
    if args.user:
        return "user"
    return "system" if os.geteuid() == 0 else "user"


def write(planned: Planned) -> str:
    """Write one file atomically (temporary name, then rename); say what happened."""
    path = planned.path
    if path.is_file() and path.read_text(encoding="utf-8") == planned.text:
        os.chmod(path, planned.mode)
        return f"unchanged {path}"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, planned.text, mode=planned.mode, durable=False)
    return f"wrote {path}"


def wants_link(kind: str, args: argparse.Namespace) -> Path | None:
    """The symlink `systemctl enable` made, removed with the unit so nothing dangles."""
    if kind == "user":
        return user_unit_dir() / "default.target.wants" / UNIT
    if kind == "system":
        return _under(args.root, Path("/etc/systemd/system/multi-user.target.wants") / UNIT)
    return None


def install(kind: str, args: argparse.Namespace) -> int:
    settings = system_settings(args.config, args.root) if kind == "system" else None
    if kind == "launchd":
        planned = plan_launchd()
    elif kind == "user":
        planned = plan_user()
    else:
        planned = plan_system(args, settings or config.Settings())
    for line in warnings(kind, args, settings):
        print(f"warning: {line}", file=sys.stderr)
    if args.dry_run:
        print(f"# service install ({kind}), dry run: nothing is written")
        for item in planned:
            print(f"==> {item.path} (mode {item.mode:o}) <==")
            print(item.text, end="" if item.text.endswith("\n") else "\n")
        print("# then run:")
    else:
        for item in planned:
            print(write(item))
        print("to enable it, run:")
    for cmd in enable_commands(kind, args):
        print(f"  {cmd}")
    return EXIT_OK


def uninstall(kind: str, args: argparse.Namespace) -> int:
    """Remove what install writes (found from the same plan), never configuration or data."""
    if kind == "launchd":
        paths = [launchd_plist_path()]
    elif kind == "user":
        paths = [user_unit_dir() / UNIT]
    else:
        paths = [_under(args.root, p) for p in (SYSTEM_UNIT, SYSUSERS, HELPER, UDEV_RULE)]
    link = wants_link(kind, args)
    if link is not None:
        paths.append(link)
    removed = 0
    for path in dict.fromkeys(paths):
        if not (path.exists() or path.is_symlink()):
            continue
        if args.dry_run:
            print(f"would remove {path}")
        else:
            path.unlink()
            print(f"removed {path}")
        removed += 1
    if not removed:
        print("nothing to remove: the service was not installed here")
    print("to stop what is still running, run:")
    for cmd in disable_commands(kind):
        print(f"  {cmd}")
    print("kept: configuration, token, journal and spool (remove them by hand if wanted)")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    kind = choose_kind(args)
    if kind != "system" and args.root != Path("/"):
        raise UsageError("--root is for --system installs")
    if kind == "launchd" and shutil.which("launchctl") is None and not args.dry_run:
        print(
            "warning: no launchctl here: the plist is written but cannot be loaded", file=sys.stderr
        )
    return install(kind, args) if args.action == "install" else uninstall(kind, args)
