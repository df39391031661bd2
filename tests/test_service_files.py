"""`service install|uninstall` and the files it writes: systemd units (checked by
`systemd-analyze verify` when it is there, else parsed), the sysusers entry, the udev rule, the
card mount helper and the launchd plist; plus the token handed over as a systemd credential."""

from __future__ import annotations

import configparser
import os
import plistlib
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from daemon import cli as daemon_cli
from daemon.commands import service
from daemon.core import auth

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "daemon" / "service_files"
SCRIPT = Path(sys.executable).absolute().parent / "mapillary-daemon"
EXEC = str(SCRIPT) if SCRIPT.is_file() else f"{Path(sys.executable).absolute()} -m daemon"


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


def subprocess_cli(*args: str, env: dict[str, str]) -> Done:
    """The command as users run it: a real process."""
    done = subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    return Done(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def home_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A fresh HOME and XDG dirs, so nothing of the real user's is read or written; set in this
    process too (most tests call the CLI's main() in-process: a process start costs seconds)."""
    for key in list(os.environ):
        if key.startswith(("XDG_", "MAPILLARY_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var, sub in (("CONFIG", "cfg"), ("STATE", "state"), ("DATA", "data")):
        monkeypatch.setenv(f"XDG_{var}_HOME", str(tmp_path / sub))
    (tmp_path / "home").mkdir()
    return dict(os.environ)


@pytest.fixture
def cli(home_env, capsys: pytest.CaptureFixture[str]) -> Callable[..., Done]:
    def call(*args: str, env: dict[str, str] | None = None) -> Done:
        with pytest.MonkeyPatch.context() as mp:
            for key, value in (env or {}).items():
                mp.setenv(key, value)
            code = daemon_cli.main(list(args))
        out = capsys.readouterr()
        return Done(code, out.out, out.err)

    return call


def parse_dry_run(stdout: str) -> tuple[dict[Path, tuple[str, str]], list[str]]:
    """The files (path → (mode, text)) and the commands a dry run prints."""
    files: dict[Path, tuple[str, str]] = {}
    commands: list[str] = []
    current: Path | None = None
    in_commands = False
    for line in stdout.splitlines(keepends=True):
        header = re.fullmatch(r"==> (.+) \(mode (\d+)\) <==\n", line)
        if header:
            current = Path(header.group(1))
            files[current] = (header.group(2), "")
        elif line.startswith("# then run:"):
            in_commands, current = True, None
        elif in_commands:
            assert line.startswith("  "), line
            commands.append(line.strip())
        elif current is not None:
            mode, text = files[current]
            files[current] = (mode, text + line)
    return files, commands


def unit_sections(text: str) -> configparser.ConfigParser:
    """A unit file parsed like systemd does for our needs: sections, repeated keys kept."""
    parser = configparser.ConfigParser(
        strict=False, interpolation=None, delimiters=("=",), comment_prefixes=("#", ";")
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    # configparser merges repeated keys; systemd appends them. Number repeats to keep them all.
    seen: dict[tuple[str, str], int] = {}
    lines, section = [], ""
    for line in text.splitlines():
        if line.startswith("["):
            section = line
        elif "=" in line and not line.startswith(("#", ";")):
            key, value = line.split("=", 1)
            n = seen.get((section, key), 0)
            seen[(section, key)] = n + 1
            line = f"{key}{'#' + str(n) if n else ''}={value}"
        lines.append(line)
    parser.read_string("\n".join(lines))
    return parser


def values(units: configparser.ConfigParser, section: str, key: str) -> list[str]:
    return [v for k, v in units.items(section) if k == key or k.startswith(key + "#")]


def verify_unit(path: Path, *, user: bool, tmp_path: Path) -> None:
    """`systemd-analyze verify` when installed: no error and no warning about our file."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd); units were parsed")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime), SYSTEMD_LOG_LEVEL="warning")
    cmd = [tool, *(["--user"] if user else []), "verify", str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    ours = [line for line in done.stderr.splitlines() if path.name in line or "Unknown" in line]
    assert done.returncode == 0, done.stderr
    assert not ours, done.stderr


# -- user unit ---------------------------------------------------------------------------------


def test_user_dry_run_prints_the_unit_with_this_installation_paths(cli, tmp_path):
    done = cli("service", "install", "--user", "--dry-run")
    assert done.returncode == 0, done.stderr
    files, commands = parse_dry_run(done.stdout)
    unit_path = tmp_path / "cfg" / "systemd" / "user" / "mapillary-daemon.service"
    assert list(files) == [unit_path]
    assert not unit_path.exists()  # a dry run writes nothing
    units = unit_sections(files[unit_path][1])
    assert units["Service"]["Type"] == "notify"
    assert units["Service"]["ExecStart"] == f"{EXEC} run"
    assert int(units["Service"]["WatchdogSec"]) > 0
    assert units["Service"]["Restart"] == "on-failure"
    assert units["Install"]["WantedBy"] == "default.target"
    env_lines = " ".join(values(units, "Service", "Environment"))
    for var, sub in (
        ("XDG_CONFIG_HOME", "cfg"),
        ("XDG_STATE_HOME", "state"),
        ("XDG_DATA_HOME", "data"),
    ):
        assert f'"{var}={tmp_path / sub}"' in env_lines
    assert "{{" not in files[unit_path][1].replace("{{...}}", "")
    assert commands[:2] == [
        "systemctl --user daemon-reload",
        "systemctl --user enable --now mapillary-daemon.service",
    ]


def test_user_install_and_uninstall_in_a_temporary_home(cli, home_env, tmp_path):
    unit_dir = tmp_path / "cfg" / "systemd" / "user"
    done = subprocess_cli("service", "install", "--user", env=home_env)
    assert done.returncode == 0, done.stderr
    unit = unit_dir / "mapillary-daemon.service"
    assert f"wrote {unit}" in done.stdout
    assert "systemctl --user enable --now mapillary-daemon.service" in done.stdout
    text = unit.read_text()
    assert f"ExecStart={EXEC} run\n" in text
    verify_target = tmp_path / "verify" / "mapillary-daemon.service"
    verify_target.parent.mkdir()
    verify_target.write_text(text)

    again = cli("service", "install", "--user")
    assert f"unchanged {unit}" in again.stdout

    # What `systemctl --user enable` would have made; uninstall must not leave it dangling.
    wants = unit_dir / "default.target.wants"
    wants.mkdir()
    (wants / "mapillary-daemon.service").symlink_to(unit)
    gone = cli("service", "uninstall", "--user")
    assert gone.returncode == 0, gone.stderr
    assert not unit.exists()
    assert not (wants / "mapillary-daemon.service").is_symlink()
    assert "systemctl --user stop mapillary-daemon.service" in gone.stdout
    assert "nothing to remove" in cli("service", "uninstall", "--user").stdout

    verify_unit(verify_target, user=True, tmp_path=tmp_path)


# -- system unit, sysusers, udev, helper --------------------------------------------------------


def system_dry_run(cli: Callable[..., Done], root: Path, *extra: str, env=None):
    done = cli("service", "install", "--system", "--dry-run", "--root", str(root), *extra, env=env)
    assert done.returncode == 0, done.stderr
    files, commands = parse_dry_run(done.stdout)
    return done, files, commands


def test_system_dry_run_hardening_credential_and_paths(cli, tmp_path):
    root = tmp_path / "root"
    done, files, commands = system_dry_run(cli, root)
    assert not root.exists()
    unit_file = root / "etc/systemd/system/mapillary-daemon.service"
    assert set(files) == {
        unit_file,
        root / "etc/sysusers.d/mapillary-daemon.conf",
        root / "usr/local/libexec/mapillary-daemon-card-mount",
        root / "etc/udev/rules.d/90-mapillary-daemon-cards.rules",
    }
    assert files[root / "usr/local/libexec/mapillary-daemon-card-mount"][0] == "755"
    units = unit_sections(files[unit_file][1])
    s = units["Service"]
    assert s["Type"] == "notify"
    assert s["ExecStart"] == f"{EXEC} run"
    assert s["User"] == "mapillary-daemon" and s["Group"] == "mapillary-daemon"
    assert int(s["WatchdogSec"]) >= 10
    assert s["Restart"] == "on-failure"
    for key, want in {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
    }.items():
        assert s[key] == want, key
    assert s["LoadCredential"] == f"{auth.CREDENTIAL}:/etc/mapillary-daemon/tokens.toml"
    assert s["ReadWritePaths"] == ""  # nothing configured: the state directory is enough
    assert s["StateDirectory"] == "mapillary-daemon"
    assert units["Install"]["WantedBy"] == "multi-user.target"
    assert "sudo systemctl enable --now mapillary-daemon.service" in commands
    assert "sudo systemd-sysusers /etc/sysusers.d/mapillary-daemon.conf" in commands
    assert "sudo udevadm control --reload" in commands
    # The card mount root is not in the (absent) configuration: said before it bites.
    assert "add /media/mapillary-daemon to mount_roots" in done.stderr


def test_system_read_write_paths_follow_the_configuration(cli, home_env, tmp_path):
    root = tmp_path / "root"
    conf = root / "etc/mapillary-daemon/config.toml"
    conf.parent.mkdir(parents=True)
    conf.write_text(
        '[sources]\nwatch = ["/srv/photos in", "/home/pi/import"]\n'
        'mount_roots = ["/media/mapillary-daemon"]\n'
        '[storage]\nspool = "/srv/spool"\njournal = "/srv/state/journal.sqlite3"\n'
    )
    # The shell's environment must not leak into what the service will see.
    env = dict(home_env, MAPILLARY_DAEMON_WATCH="/elsewhere")
    done, files, _ = system_dry_run(cli, root, env=env)
    unit = files[root / "etc/systemd/system/mapillary-daemon.service"][1]
    s = unit_sections(unit)["Service"]
    assert s["ReadWritePaths"] == '-/home/pi/import "-/srv/photos in" -/srv/spool -/srv/state'
    assert s["ProtectHome"] == "read-only"  # a watch root is under /home
    assert "mount_roots" not in done.stderr


def test_system_install_warns_about_a_missing_token_and_a_closed_config_folder(cli, tmp_path):
    root = tmp_path / "root"
    done, _, _ = system_dry_run(cli, root)
    assert "no /etc/mapillary-daemon/tokens.toml yet" in done.stderr
    folder = root / "etc/mapillary-daemon"
    auth.save_token("default", "MLY|x-token-1234", path=folder / "tokens.toml")
    assert folder.stat().st_mode & 0o777 == 0o700  # what the token store makes of a new folder
    done, _, _ = system_dry_run(cli, root)
    assert "tokens.toml yet" not in done.stderr
    assert "cannot read /etc/mapillary-daemon: sudo chmod 755" in done.stderr
    folder.chmod(0o755)
    assert "cannot read" not in system_dry_run(cli, root)[0].stderr


def test_system_unit_files_pass_systemd_analyze(cli, tmp_path):
    root = tmp_path / "root"
    done = cli("service", "install", "--system", "--root", str(root))
    assert done.returncode == 0, done.stderr
    unit = root / "etc/systemd/system/mapillary-daemon.service"
    assert unit.is_file() and f"wrote {unit}" in done.stdout
    helper = root / "usr/local/libexec/mapillary-daemon-card-mount"
    assert os.access(helper, os.X_OK)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir()
    (wants / "mapillary-daemon.service").symlink_to("/etc/systemd/system/mapillary-daemon.service")
    gone = cli("service", "uninstall", "--system", "--root", str(root))
    assert gone.returncode == 0, gone.stderr
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())
    assert left == [], left
    assert "sudo systemctl stop mapillary-daemon.service" in gone.stdout

    _, files, _ = system_dry_run(cli, tmp_path / "again")
    check = tmp_path / "verify" / "mapillary-daemon.service"
    check.parent.mkdir()
    check.write_text(files[tmp_path / "again/etc/systemd/system/mapillary-daemon.service"][1])
    verify_unit(check, user=False, tmp_path=tmp_path)


def test_sysusers_entry_names_the_service_user(cli, tmp_path):
    _, files, _ = system_dry_run(cli, tmp_path / "r", "--service-user", "mly")
    text = files[tmp_path / "r/etc/sysusers.d/mapillary-daemon.conf"][1]
    entries = [line.split() for line in text.splitlines() if line and not line.startswith("#")]
    assert len(entries) == 1 and entries[0][:3] == ["u", "mly", "-"]
    unit = unit_sections(files[tmp_path / "r/etc/systemd/system/mapillary-daemon.service"][1])
    assert unit["Service"]["User"] == "mly"
    bad = cli("service", "install", "--system", "--dry-run", "--service-user", "x y")
    assert bad.returncode == 2 and "bad service user name" in bad.stderr


UDEV_KEY = re.compile(
    r'(?P<key>[A-Z_]+)(\{(?P<attr>[A-Za-z0-9_]+)\})?\s*(?P<op>==|!=|\+=|-=|:=|=)\s*"(?P<value>[^"]*)"'
)
UDEV_MATCH_KEYS = {"ACTION", "SUBSYSTEM", "KERNEL", "ENV", "DEVPATH", "DRIVERS", "ATTRS"}
UDEV_ASSIGN_KEYS = {"RUN", "ENV", "SYMLINK", "OWNER", "GROUP", "MODE", "TAG"}


def parse_udev_rule(line: str) -> list[tuple[str, str | None, str, str]]:
    """One rule line as (key, attr, op, value); anything else on the line fails the test."""
    parts, pos = [], 0
    while pos < len(line):
        m = UDEV_KEY.match(line, pos)
        assert m, f"cannot parse udev rule at {line[pos:]!r}"
        parts.append((m["key"], m["attr"], m["op"], m["value"]))
        pos = m.end()
        sep = re.match(r"\s*,\s*|\s*$", line[pos:])
        assert sep and (sep.group() or pos == len(line)), f"no comma before {line[pos:]!r}"
        pos += sep.end()
    return parts


def test_udev_rule_parses_and_runs_the_installed_helper(cli, tmp_path):
    _, files, _ = system_dry_run(cli, tmp_path / "r")
    text = files[tmp_path / "r/etc/udev/rules.d/90-mapillary-daemon-cards.rules"][1]
    rules = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert len(rules) == 2
    parsed = [parse_udev_rule(line) for line in rules]
    for rule in parsed:
        matches = [p for p in rule if p[2] in ("==", "!=")]
        assigns = [p for p in rule if p[2] not in ("==", "!=")]
        assert {p[0] for p in matches} <= UDEV_MATCH_KEYS
        assert {p[0] for p in assigns} <= UDEV_ASSIGN_KEYS
        assert ("SUBSYSTEM", None, "==", "block") in rule
        run = [p[3] for p in assigns if p[0] == "RUN"]
        assert len(run) == 1 and run[0].split()[0] == str(service.HELPER)
    actions = {dict((p[0], p[3]) for p in rule if p[2] == "==")["ACTION"] for rule in parsed}
    assert actions == {"add|change", "remove"}
    assert [r for r in parsed if ("ENV", "ID_FS_TYPE", "==", "vfat|exfat") in r] == parsed


def test_card_mount_helper_is_valid_shell_and_refuses_bad_arguments(cli, tmp_path):
    root = tmp_path / "r"
    assert cli("service", "install", "--system", "--root", str(root)).returncode == 0
    helper = root / "usr/local/libexec/mapillary-daemon-card-mount"
    text = helper.read_text()
    assert 'MOUNT_ROOT="/media/mapillary-daemon"' in text
    assert '--options="$options"' in text and "ro,nosuid,nodev,noexec" in text
    assert "--fsck=no" in text  # a camera card is never written to
    syntax = subprocess.run(["sh", "-n", str(helper)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    # Bad arguments: exit 2 before anything else runs.
    for args in ([], ["add"], ["add", "sda1"], ["eject", "/dev/sda1"]):
        done = subprocess.run([str(helper), *args], capture_output=True, text=True, timeout=10)
        assert done.returncode == 2, (args, done.stderr)


def test_card_mount_root_with_shell_characters_is_refused(cli):
    done = cli(
        "service",
        "install",
        "--system",
        "--dry-run",
        "--card-mount-root",
        "/media/$(x)",
    )
    assert done.returncode == 2 and "shell characters" in done.stderr


# -- launchd -------------------------------------------------------------------------------------


def test_launchd_plist_parses_and_keeps_the_daemon_alive(cli, tmp_path):
    done = cli("service", "install", "--launchd", "--dry-run")
    assert done.returncode == 0, done.stderr
    files, commands = parse_dry_run(done.stdout)
    path = tmp_path / "home/Library/LaunchAgents/local.mapillary-daemon.plist"
    assert list(files) == [path]
    plist = plistlib.loads(files[path][1].encode())
    assert plist["Label"] == "local.mapillary-daemon"
    assert plist["ProgramArguments"] == [*EXEC.split(), "run", "--mount-root", "/Volumes"]
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["RunAtLoad"] is True
    assert plist["StandardOutPath"] == str(tmp_path / "home/Library/Logs/mapillary-daemon.log")
    assert any(c.startswith("launchctl bootstrap") and str(path) in c for c in commands)

    assert cli("service", "install", "--launchd").returncode == 0
    assert plistlib.loads(path.read_bytes())["Label"] == "local.mapillary-daemon"
    assert cli("service", "uninstall", "--launchd").returncode == 0
    assert not path.exists()


def test_plist_escapes_paths_for_xml():
    text = service.fill(
        service.template("mapillary-daemon.plist"),
        {
            "LABEL": "l",
            "EXEC": "/opt/a&b/<bin>".replace("&", "&amp;")
            .replace("<", "&lt;")
            .replace(">", "&gt;"),
            "LOG_FILE": "x",
        },
    )
    assert plistlib.loads(text.encode())["ProgramArguments"][0] == "/opt/a&b/<bin>"


# -- templates and the systemd/ folder ----------------------------------------------------------


def test_systemd_folder_links_to_the_packaged_templates():
    names = sorted(p.name for p in TEMPLATES.iterdir())
    linked = sorted(p.name for p in (REPO / "systemd").iterdir() if p.is_symlink())
    assert linked == names
    for name in names:
        assert (REPO / "systemd" / name).read_text() == service.template(name)
        text = service.template(name)
        # Every file says what it is for: a comment near the top.
        assert any(
            m in text[:400] for m in ("# mapillary-daemon", "# sysusers.d", "# udev", "<!--")
        )


def test_fill_refuses_a_missing_field():
    with pytest.raises(KeyError, match="USER"):
        service.fill("User={{USER}}", {})


def test_systemd_escaping():
    assert service.systemd_word("/opt/mly 50%/bin") == '"/opt/mly 50%%/bin"'
    assert service.systemd_word("/a$b") == "/a$$b"
    assert service.systemd_env_value('a"b%') == 'a\\"b%%'


# -- the token as a systemd credential ------------------------------------------------------------


def test_token_from_the_systemd_credential(tmp_path):
    creds = tmp_path / "creds"
    auth.save_token("default", "MLY|cred-token-7777", path=creds / auth.CREDENTIAL)
    home_store = tmp_path / "home-tokens.toml"
    auth.save_token("default", "MLY|home-token-8888", path=home_store)
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    assert auth.credential_path(env) == creds / auth.CREDENTIAL
    assert auth.load_token("default", env=env) == "MLY|cred-token-7777"
    # An explicit file and MAPILLARY_TOKEN still win, in that order of weight.
    assert auth.load_token("default", path=home_store, env=env) == "MLY|home-token-8888"
    assert auth.load_token("default", env={**env, auth.TOKEN_ENV: "env-9"}) == "env-9"
    # A credentials directory without our credential (another service's) is not an error.
    assert auth.credential_path({"CREDENTIALS_DIRECTORY": str(tmp_path / "empty")}) is None
