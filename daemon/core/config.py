"""Every tunable in one place: defaults < TOML file < environment < command-line flags.

:class:`Settings` is the one table of settings: each field has its name, type and default, and
in its metadata a :class:`Spec` with its section, bounds, command-line flag and help. The TOML
reading and checking here, the ``MAPILLARY_DAEMON_<KEY>`` environment overrides, the commands'
flags (:mod:`daemon.core.flags`) and `config init`'s template are all derived from it: a new
setting is one new field. Nothing else in the package reads ``os.environ`` for settings; it
asks for a ``Settings``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import platformdirs

from daemon.core.coerce import coerce, element, unoptional
from daemon.core.errors import ConfigError

APP = "mapillary-daemon"
ENV_PREFIX = "MAPILLARY_DAEMON_"
SYSTEM_CONFIG = Path("/etc/mapillary-daemon/config.toml")
DEFAULT_GRAPH = "https://graph.mapillary.com"
DEFAULT_UPLOAD = "https://rupload.facebook.com/mapillary_public_uploads"


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


# -- the table --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """What the table says of a setting besides its name, type and default.

    ``help`` may name the default as ``{default}``. ``flag`` is the command-line spelling (None:
    no flag; the file and the environment still set it). ``minimum`` 0 refuses negative values,
    1 values below 1; ``check`` is any further rule, returning what is wrong or None.
    """

    section: str
    help: str = ""
    flag: str | None = None
    metavar: str | None = None
    minimum: float | None = None
    choices: tuple[str, ...] = ()
    check: Callable[[Any], str | None] | None = None
    auto: bool = False  # "auto" is a value too: found from the photos (see daemon.pipeline.clock)


def _setting(section: str, default: Any = None, *, factory: Any = None, **spec: Any) -> Any:
    """A field of :class:`Settings` with its :class:`Spec`."""
    meta = {"spec": Spec(section, **spec)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _http_url(value: str) -> str | None:
    return None if value.startswith(("http://", "https://")) else " must be an http(s) URL"


def _listen(value: str) -> str | None:
    host, _, port = value.rpartition(":")
    # Port 0: any free port (the demo, tests), said in the log and by `status`.
    if value == "off" or (host and port.isdigit() and 0 <= int(port) < 65536):
        return None
    return " must be HOST:PORT (127.0.0.1:8764) or off"


def _gpsd(value: str | None) -> str | None:
    from daemon.intake.gpsd import GpsdAddressError, parse_address

    if value is None:
        return None
    try:
        parse_address(value)
    except GpsdAddressError:
        return " must be HOST:PORT (127.0.0.1:2947)"
    return None


def _hours(value: str) -> str | None:
    from daemon.upload.throttle import parse_hours

    try:
        parse_hours(value)
    except ValueError as exc:
        return f": {exc}"
    return None


def _zone(value: str | None) -> str | None:
    """A zone the pipeline cannot read would stop every batch later; refuse it now."""
    if value is None or value == AUTO:
        return None
    # The pipeline owns zone parsing; imported here only, when a zone is actually given.
    from daemon.pipeline.dates import parse_zone

    try:
        parse_zone(value)
    except ValueError as exc:
        return f": {exc}"
    return None


AUTO = "auto"  # --tz auto, --time-offset auto: the camera clock found from the photos
_SOURCES, _STORAGE, _PIPELINE, _UPLOAD, _LOGS = "sources", "storage", "pipeline", "upload", "logs"
_WEB = "web"
LOG_FORMATS = ("auto", "console", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass
class Settings:
    """All settings of the daemon and its commands, with their defaults (in sections, the order
    of `config init`)."""

    watch: list[Path] = _setting(
        _SOURCES,
        factory=list,
        flag="--watch",
        metavar="DIR",
        help="folder to watch; repeat for more (default: none)",
    )
    mount_roots: list[Path] = _setting(
        _SOURCES,
        factory=list,
        flag="--mount-root",
        metavar="DIR",
        help="where cards get mounted (/media/$USER, /run/media/$USER, /Volumes)",
    )
    gpx_dir: Path | None = _setting(
        _SOURCES,
        flag="--gpx-dir",
        metavar="DIR",
        help="folder a GPS logger writes to (default: none)",
    )
    gpsd: str | None = _setting(
        _SOURCES,
        check=_gpsd,
        flag="--gpsd",
        metavar="HOST:PORT",
        help="log the fixes of this gpsd (127.0.0.1:2947) into our own track, used as a GPX "
        "(default: off)",
    )
    settle_seconds: float = _setting(
        _SOURCES,
        5.0,
        minimum=0,
        flag="--settle-seconds",
        metavar="S",
        help="how long a file must stay unchanged before it is read ({default})",
    )
    batch_quiet_seconds: float = _setting(
        _SOURCES,
        30.0,
        minimum=0,
        flag="--batch-quiet-seconds",
        metavar="S",
        help="how long a folder must be quiet before its photos are processed ({default})",
    )
    position_wait: float = _setting(
        _SOURCES,
        24 * 3600.0,
        minimum=0,
        flag="--position-wait",
        metavar="S",
        help="how long a photo without a position waits for a GPX track ({default})",
    )
    source_wait: float = _setting(
        _SOURCES,
        7 * 24 * 3600.0,
        minimum=0,
        flag="--source-wait",
        metavar="S",
        help="how long photos wait for a missing source (a drive unplugged) ({default})",
    )
    # >0: polling observers (network mounts, which inotify cannot see)
    poll_interval: float = _setting(_SOURCES, 0.0, minimum=0)
    journal: Path | None = _setting(
        _STORAGE,
        flag="--journal",
        metavar="FILE",
        help="journal (default: journal.sqlite3 in the user state folder)",
    )
    spool: Path | None = _setting(
        _STORAGE,
        flag="--spool",
        metavar="DIR",
        help="where card photos are copied (default: spool in the user data folder)",
    )
    keep_days: float = _setting(
        _STORAGE,
        7.0,
        minimum=0,
        flag="--keep-days",
        metavar="D",
        help="days the spool keeps copies of finished sequences ({default})",
    )
    min_free_mb: float = _setting(
        _STORAGE,
        200.0,
        minimum=0,
        flag="--min-free-mb",
        metavar="MB",
        help="card import pauses below this much free disk ({default})",
    )
    max_photo_mb: float = _setting(
        _STORAGE,
        256.0,
        minimum=0,
        check=lambda v: None if v > 0 else " must be more than 0",
        flag="--max-photo-mb",
        metavar="MB",
        help="a bigger photo is set aside at intake ({default})",
    )
    tz: str | None = _setting(
        _PIPELINE,
        check=_zone,
        flag="--tz",
        metavar="ZONE",
        help="zone of camera times: +02:00, Europe/Berlin, or auto (found from the photos)",
    )
    time_offset: float | Literal["auto"] = _setting(
        _PIPELINE,
        0.0,
        flag="--time-offset",
        metavar="S",
        auto=True,
        help="camera clock ahead of GPS, s, or auto (found from the photos)",
    )
    bearing_offset: float = _setting(
        _PIPELINE,
        0.0,
        flag="--bearing-offset",
        metavar="DEG",
        help="degrees added to GPX bearings ({default})",
    )
    max_gap: float = _setting(
        _PIPELINE,
        60.0,
        minimum=0,
        flag="--max-gap",
        metavar="S",
        help="longest GPX gap to bridge ({default})",
    )
    cutoff_distance: float = _setting(
        _PIPELINE,
        100.0,
        minimum=0,
        flag="--cutoff-distance",
        metavar="M",
        help="split at jumps over M ({default})",
    )
    cutoff_time: float = _setting(
        _PIPELINE,
        60.0,
        minimum=0,
        flag="--cutoff-time",
        metavar="S",
        help="split at gaps over S ({default})",
    )
    max_images: int = _setting(
        _PIPELINE,
        1000,
        minimum=1,
        flag="--max-images",
        metavar="N",
        help="photos per sequence ({default})",
    )
    duplicate_distance: float = _setting(
        _PIPELINE,
        4.0,
        minimum=0,
        flag="--duplicate-distance",
        metavar="M",
        help="classic rule ({default})",
    )
    duplicate_angle: float = _setting(
        _PIPELINE,
        20.0,
        minimum=0,
        flag="--duplicate-angle",
        metavar="DEG",
        help="turn that keeps ({default})",
    )
    duplicate_window: float = _setting(
        _PIPELINE,
        30.0,
        minimum=0,
        flag="--duplicate-window",
        metavar="S",
        help="seconds of motion that tell standing from moving; 0 = classic rule ({default})",
    )
    max_speed_kmh: float = _setting(
        _PIPELINE,
        200.0,
        minimum=0,
        flag="--max-speed",
        metavar="KMH",
        help="a faster jump between photos is impossible ({default})",
    )
    interpolate_directions: bool = _setting(
        _PIPELINE,
        False,
        flag="--interpolate-directions",
        help="point each photo towards the next one",
    )
    smoothing: bool = _setting(
        _PIPELINE,
        True,
        flag="--no-smoothing",
        help="positions by raw interpolation of the GPX, not from the smoothed track",
    )
    offset_angle: float = _setting(
        _PIPELINE,
        0.0,
        flag="--offset-angle",
        metavar="DEG",
        help="angle of the camera to the direction of travel, degrees ({default})",
    )
    graph_endpoint: str = _setting(_UPLOAD, DEFAULT_GRAPH, check=_http_url)
    upload_endpoint: str = _setting(_UPLOAD, DEFAULT_UPLOAD, check=_http_url)
    profile: str = _setting(
        _UPLOAD,
        "default",
        flag="--profile",
        metavar="NAME",
        help="stored token profile ({default})",
    )
    organization_id: str | None = _setting(
        _UPLOAD,
        flag="--organization-id",
        metavar="ID",
        help="upload for this organization (default: as yourself)",
    )
    concurrency: int = _setting(
        _UPLOAD,
        4,
        minimum=1,
        flag="--concurrency",
        metavar="N",
        help="images in flight ({default})",
    )
    max_attempts: int = _setting(_UPLOAD, 10, minimum=1)
    max_rate: float = _setting(
        _UPLOAD,
        0.0,
        minimum=0,
        flag="--max-rate",
        metavar="BYTES_PER_S",
        help="bandwidth cap ({default}: none)",
    )
    upload_hours: str = _setting(
        _UPLOAD,
        "",
        check=_hours,
        flag="--upload-hours",
        metavar="HH:MM-HH:MM",
        help="upload only then, local time, e.g. 22:00-07:00 (default: always)",
    )
    retry_failed_after: float = _setting(
        _UPLOAD,
        3600.0,
        minimum=0,
        flag="--retry-failed-after",
        metavar="S",
        help="first retry of a failed sequence, doubled each time ({default} s)",
    )
    upload_delay: float = _setting(
        _UPLOAD,
        0.0,
        minimum=0,
        flag="--upload-delay",
        metavar="S",
        help="seconds a new sequence waits before upload, time to review it ({default})",
    )
    log_format: str = _setting(
        _LOGS,
        "auto",
        choices=LOG_FORMATS,
        flag="--log-format",
        help="console: readable lines; json: one JSON object a line (journald, log files); "
        "auto: console on a terminal, else json ({default})",
    )
    log_level: str = _setting(
        _LOGS,
        "info",
        choices=LOG_LEVELS,
        flag="--log-level",
        help="least severe level logged ({default})",
    )
    web_listen: str = _setting(
        _WEB,
        "127.0.0.1:8764",
        check=_listen,
        flag="--web-listen",
        metavar="HOST:PORT",
        help="the status page; another address than loopback needs web_password_hash; "
        "off: none ({default})",
    )
    # `config web-password` writes it: scrypt$<salt hex>$<hash hex>, never the password itself.
    web_password_hash: str | None = _setting(_WEB)

    @property
    def journal_path(self) -> Path:
        return self.journal or state_dir() / JOURNAL_FILE

    @property
    def spool_path(self) -> Path:
        return self.spool or data_dir() / "spool"


@dataclass(frozen=True)
class Setting:
    """One row of the table: a setting's name, type, default and :class:`Spec`."""

    name: str
    hint: Any
    default: Any
    spec: Spec

    @property
    def env(self) -> str:
        """Its environment variable: ``MAPILLARY_DAEMON_<NAME>``."""
        return ENV_PREFIX + self.name.upper()

    @property
    def kind(self) -> Any:
        """The type of one value: ``float`` for ``float``, ``Path`` for ``list[Path]`` or
        ``Path | None``."""
        return element(unoptional(self.hint))

    @property
    def many(self) -> bool:
        return typing.get_origin(unoptional(self.hint)) is list


def _rows() -> dict[str, Setting]:
    hints = typing.get_type_hints(Settings)
    rows = {}
    for f in fields(Settings):
        factory = f.default_factory
        default = factory() if callable(factory) else f.default  # MISSING is not callable
        rows[f.name] = Setting(f.name, hints[f.name], default, f.metadata["spec"])
    return rows


FIELDS = _rows()  # name -> Setting, in the table's order
SECTIONS: dict[str, list[str]] = {}  # section -> names, for `config init`
for _row in FIELDS.values():
    SECTIONS.setdefault(_row.spec.section, []).append(_row.name)


def _validate(settings: Settings, source: str) -> None:
    for name, row in FIELDS.items():
        value, spec = getattr(settings, name), row.spec
        wrong = None
        if spec.minimum is not None and value < spec.minimum:
            wrong = (
                " must not be negative"
                if spec.minimum == 0
                else f" must be at least {spec.minimum:g}"
            )
        elif spec.choices and value not in spec.choices:
            wrong = f" must be one of {', '.join(sorted(spec.choices))}"
        elif spec.check is not None:
            wrong = spec.check(value)
        if wrong:
            raise ConfigError(f"{source}: '{name}'{wrong}")


def apply(settings: Settings, values: dict[str, Any], source: str) -> Settings:
    """A copy of ``settings`` with ``values`` applied; unknown keys and bad values raise."""
    changes: dict[str, Any] = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in FIELDS:
            raise ConfigError(f"{source}: unknown key '{key}'")
        row = FIELDS[name]
        if row.spec.auto and isinstance(value, str) and value.strip().lower() == AUTO:
            changes[name] = AUTO
        else:  # a setting that may be "auto" is otherwise of its plain type
            changes[name] = coerce(name, value, row.kind if row.spec.auto else row.hint, source)
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
    """``MAPILLARY_DAEMON_<NAME>`` sets the setting ``name`` (see :attr:`Setting.env`); any
    other variable with that prefix is refused by :func:`apply` as an unknown key, so a typo
    is an error, not a silent default."""
    env = dict(os.environ if env is None else env)
    names = {row.env: row.name for row in FIELDS.values()}
    values = {
        names.get(k, k.removeprefix(ENV_PREFIX).lower()): v
        for k, v in env.items()
        if k.startswith(ENV_PREFIX) and k != ENV_PREFIX + "CONFIG"
    }
    # mapillary_tools' own variable names, so one environment serves both clients.
    if env.get("MAPILLARY_GRAPH_API_ENDPOINT"):
        values["graph_endpoint"] = env["MAPILLARY_GRAPH_API_ENDPOINT"]
    if env.get("MAPILLARY_UPLOAD_ENDPOINT"):
        values["upload_endpoint"] = env["MAPILLARY_UPLOAD_ENDPOINT"]
    return values


# The old scripts' knobs, read as our settings; a MAPILLARY_DAEMON_ variable wins over them.
OLD_SCRIPT_VARIABLES = {"NUMBER_THREADS": "concurrency", "MAX_ATTEMPTS": "max_attempts"}


def _old_script_variables(settings: Settings, env: dict[str, str] | None) -> Settings:
    """Each old variable applied alone, so that a bad value is refused under its own name."""
    env = dict(os.environ if env is None else env)
    for variable, name in OLD_SCRIPT_VARIABLES.items():
        if env.get(variable):
            settings = apply(settings, {name: env[variable]}, f"environment {variable}")
    return settings


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
    settings = _old_script_variables(settings, env)
    settings = apply(settings, environment_values(env), "environment")
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    return apply(settings, given, "command line")
