"""Writing TOML: the few shapes the daemon writes (settings files, the token file).

The standard library reads TOML (``tomllib``) but does not write it; what we write is flat
``key = value`` lines under ``[table]`` headers, so these few functions are all it takes.
"""

from __future__ import annotations

import re
from pathlib import PurePath

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")

Value = bool | int | float | str | PurePath | list["Value"]


def string(text: str) -> str:
    r"""A TOML basic string: quotes, backslashes and control characters escaped.

    >>> print(string('say "hi" \\o/'))
    "say \"hi\" \\o/"
    >>> print(string("tab\there"))
    "tab\u0009here"
    """
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if c >= " " and c != "\x7f" else f"\\u{ord(c):04x}" for c in escaped)
    return f'"{escaped}"'


def key(name: str) -> str:
    """A key: bare where TOML allows it, else quoted.

    >>> key("settle_seconds"), key("a b")
    ('settle_seconds', '"a b"')
    """
    return name if _BARE_KEY.match(name) else string(name)


def value(item: Value) -> str:
    """A value: booleans, numbers, lists of values, and anything else as a string (paths).

    >>> value(True), value(30.0), value(4), value(["/a", PurePath("/b")])
    ('true', '30.0', '4', '["/a", "/b"]')
    """
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, int | float):
        return repr(item)
    if isinstance(item, list):
        return "[" + ", ".join(value(v) for v in item) + "]"
    return string(str(item))


def assignment(name: str, item: Value) -> str:
    """One ``key = value`` line (without the newline)."""
    return f"{key(name)} = {value(item)}"
