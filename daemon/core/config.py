"""Every tunable in one place: defaults < TOML file < environment < command-line flags.

Nothing else in the package reads ``os.environ`` for settings; it asks for a ``Settings``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import platformdirs

APP = "mapillary-daemon"
ENV_PREFIX = "MAPILLARY_DAEMON_"
SYSTEM_CONFIG = Path("/etc/mapillary-daemon/config.toml")
DEFAULT_GRAPH = "https://graph.mapillary.com"
DEFAULT_UPLOAD = "https://rupload.facebook.com/mapillary_public_uploads"


class ConfigError(Exception):
    """A bad configuration: one line naming the source, the key and what is wrong."""


def config_dir() -> Path:
    return platformdirs.user_config_path(APP)


JOURNAL_FILE = "journal.sqlite3"


def state_dir() -> Path:
    return platformdirs.user_state_path(APP)


def data_dir() -> Path:
    return platformdirs.user_data_path(APP)


def default_config_path() -> Path:
    """`MAPILLARY_DAEMON_CONFIG`, else the user config file, else the system one if it exists."""
    explicit = os.environ.get(ENV_PREFIX + "CONFIG")
    if explicit:
        return Path(explicit)
    user = config_dir() / "config.toml"
    if not user.exists() and SYSTEM_CONFIG.exists():
        return SYSTEM_CONFIG
    return user


# How the keys are grouped in the file (`config init`); the sections are only for reading.
SECTIONS = {
    "sources": [
        "watch",
        "mount_roots",
        "gpx_dir",
        "settle_seconds",
        "batch_quiet_seconds",
        "position_wait",
        "source_wait",
        "poll_interval",
    ],
    "storage": ["journal", "spool", "keep_days", "min_free_mb"],
    "pipeline": [
        "tz",
        "time_offset",
        "bearing_offset",
        "max_gap",
        "cutoff_distance",
        "cutoff_time",
        "max_images",
        "duplicate_distance",
        "duplicate_angle",
        "max_speed_kmh",
        "interpolate_directions",
        "offset_angle",
    ],
    "upload": [
        "graph_endpoint",
        "upload_endpoint",
        "profile",
        "organization_id",
        "concurrency",
        "max_attempts",
        "max_rate",
        "upload_delay",
    ],
    "logs": ["log_format", "log_level"],
}


@dataclass
class Settings:
    """All settings of the daemon and its commands, with their defaults."""

    # sources
    watch: list[Path] = field(default_factory=list)
    mount_roots: list[Path] = field(default_factory=list)
    gpx_dir: Path | None = None
    settle_seconds: float = 5.0
    batch_quiet_seconds: float = 30.0
    position_wait: float = 24 * 3600.0
    # seconds a photo waits for its missing source (drive unplugged, folder gone) to come back
    source_wait: float = 7 * 24 * 3600.0
    poll_interval: float = 0.0  # >0: use polling observers (network mounts)
    # storage
    journal: Path | None = None
    spool: Path | None = None
    keep_days: float = 7.0
    min_free_mb: float = 200.0
    # pipeline
    tz: str | None = None
    time_offset: float = 0.0
    bearing_offset: float = 0.0
    max_gap: float = 60.0
    cutoff_distance: float = 100.0
    cutoff_time: float = 60.0
    max_images: int = 1000
    duplicate_distance: float = 4.0
    duplicate_angle: float = 20.0
    max_speed_kmh: float = 200.0
    interpolate_directions: bool = False
    offset_angle: float = 0.0
    # upload
    graph_endpoint: str = DEFAULT_GRAPH
    upload_endpoint: str = DEFAULT_UPLOAD
    profile: str = "default"
    organization_id: str | None = None
    concurrency: int = 4
    max_attempts: int = 10
    max_rate: float = 0.0  # bytes/s, 0 = unlimited
    upload_delay: float = 0.0  # seconds to hold a finished sequence before uploading (review time)
    # logs
    log_format: str = "auto"  # auto | console | json
    log_level: str = "info"

    @property
    def journal_path(self) -> Path:
        return self.journal or state_dir() / JOURNAL_FILE

    @property
    def spool_path(self) -> Path:
        return self.spool or data_dir() / "spool"

    def to_toml(self) -> str:
        return dump_toml(self)


_CHOICES = {
    "log_format": {"auto", "console", "json"},
    "log_level": {"debug", "info", "warning", "error"},
}
_NON_NEGATIVE = {
    "settle_seconds",
    "batch_quiet_seconds",
    "position_wait",
    "source_wait",
    "poll_interval",
    "keep_days",
    "min_free_mb",
    "max_gap",
    "cutoff_distance",
    "cutoff_time",
    "duplicate_distance",
    "duplicate_angle",
    "max_speed_kmh",
    "max_rate",
    "upload_delay",
}
_POSITIVE_INT = {"max_images", "concurrency", "max_attempts"}


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(Settings)


def _coerce(key: str, value: Any, hint: Any, source: str) -> Any:
    """Convert a TOML or environment value to the field's type, or raise ConfigError."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if (
        origin in (typing.Union, getattr(__import__("types"), "UnionType", None))
        and type(None) in args
    ):
        if value is None or value == "":
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    try:
        if origin is list:
            items = value.split(os.pathsep) if isinstance(value, str) else value
            if not isinstance(items, list):
                raise TypeError("expected a list")
            return [_coerce(key, v, args[0], source) for v in items if v != ""]
        if hint is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in {
                "1",
                "true",
                "yes",
                "on",
                "0",
                "false",
                "no",
                "off",
            }:
                return value.lower() in {"1", "true", "yes", "on"}
            raise TypeError("expected true or false")
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError("expected a whole number")
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise TypeError("expected a number")
            return float(value)
        if hint is Path:
            if not isinstance(value, str | Path):
                raise TypeError("expected a path")
            return Path(os.path.expanduser(str(value)))
        if hint is str:
            if not isinstance(value, str):
                raise TypeError("expected a string")
            return value
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: bad value for '{key}': {value!r} ({exc})") from None
    raise ConfigError(f"{source}: cannot read '{key}'")


def _validate(settings: Settings, source: str) -> None:
    for key in _NON_NEGATIVE:
        if getattr(settings, key) < 0:
            raise ConfigError(f"{source}: '{key}' must not be negative")
    for key in _POSITIVE_INT:
        if getattr(settings, key) < 1:
            raise ConfigError(f"{source}: '{key}' must be at least 1")
    for key, allowed in _CHOICES.items():
        if getattr(settings, key) not in allowed:
            raise ConfigError(f"{source}: '{key}' must be one of {', '.join(sorted(allowed))}")
    for key in ("graph_endpoint", "upload_endpoint"):
        if not getattr(settings, key).startswith(("http://", "https://")):
            raise ConfigError(f"{source}: '{key}' must be an http(s) URL")
    if settings.tz is not None:
        # A zone the pipeline cannot read would stop every batch later; refuse it now.
        from daemon.pipeline.dates import parse_zone

        try:
            parse_zone(settings.tz)
        except ValueError as exc:
            raise ConfigError(f"{source}: 'tz': {exc}") from None


def apply(settings: Settings, values: dict[str, Any], source: str) -> Settings:
    """A copy of ``settings`` with ``values`` applied; unknown keys and bad values raise."""
    hints = _field_types()
    changes: dict[str, Any] = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in hints:
            raise ConfigError(f"{source}: unknown key '{key}'")
        changes[name] = _coerce(name, value, hints[name], source)
    updated = dataclasses.replace(settings, **changes)
    _validate(updated, source)
    return updated


def _flatten(table: dict[str, Any]) -> dict[str, Any]:
    """Accept both a flat file and one grouped in [sections]: sections are only for humans."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(_flatten(value))
        else:
            flat[key] = value
    return flat


def read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return _flatten(tomllib.load(fh))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def environment_values(env: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if env is None else env)
    values = {
        k[len(ENV_PREFIX) :].lower(): v
        for k, v in env.items()
        if k.startswith(ENV_PREFIX) and k != ENV_PREFIX + "CONFIG"
    }
    # mapillary_tools' own variable names, so one environment serves both clients.
    if env.get("MAPILLARY_GRAPH_API_ENDPOINT"):
        values["graph_endpoint"] = env["MAPILLARY_GRAPH_API_ENDPOINT"]
    if env.get("MAPILLARY_UPLOAD_ENDPOINT"):
        values["upload_endpoint"] = env["MAPILLARY_UPLOAD_ENDPOINT"]
    # The old scripts' knobs.
    if env.get("NUMBER_THREADS"):
        values.setdefault("concurrency", env["NUMBER_THREADS"])
    if env.get("MAX_ATTEMPTS"):
        values.setdefault("max_attempts", env["MAX_ATTEMPTS"])
    return values


def load(
    path: Path | None = None,
    overrides: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> Settings:
    """Settings from defaults, the file (if it exists, or must exist when given), env and flags.

    ``overrides`` holds command-line values; ``None`` values mean "flag not given".
    """
    settings = Settings()
    file_path = path or default_config_path()
    if file_path.exists() or path is not None:
        settings = apply(settings, read_file(file_path), str(file_path))
    settings = apply(settings, environment_values(env), "environment")
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    return apply(settings, given, "command line")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def dump_toml(settings: Settings) -> str:
    """The settings as TOML; unset optional values are written as comments."""
    lines = []
    for f in fields(settings):
        value = getattr(settings, f.name)
        if value is None:
            lines.append(f"# {f.name} = ")
        else:
            lines.append(f"{f.name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"
