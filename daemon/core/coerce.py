"""A setting's value as read from TOML, the environment or a flag, converted to its type.

TOML gives numbers and lists, the environment only strings (a list is split at ``os.pathsep``,
as ``PATH`` is), and flags what argparse made of them; each comes out as the field's type or
as a ConfigError naming the source, the key and the value.
"""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Any

from daemon.core.errors import ConfigError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def coerce(key: str, value: Any, hint: Any, source: str) -> Any:
    """Convert a TOML, environment or flag value to the field's type, or raise ConfigError."""
    if unoptional(hint) is not hint:
        if value is None or value == "":
            return None
        hint = unoptional(hint)
    try:
        if typing.get_origin(hint) is list:
            items = value.split(os.pathsep) if isinstance(value, str) else value
            if not isinstance(items, list):
                raise TypeError("expected a list")
            return [coerce(key, v, element(hint), source) for v in items if v != ""]
        return _scalar(value, hint)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: bad value for '{key}': {value!r} ({exc})") from None


def _scalar(value: Any, hint: Any) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
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
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def unoptional(hint: Any) -> Any:
    """``X`` for ``X | None``; any other type as it is."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def element(hint: Any) -> Any:
    """``X`` for ``list[X]``; any other type as it is."""
    return typing.get_args(hint)[0] if typing.get_origin(hint) is list else hint
