"""Command-line flags for settings, made from the table in :mod:`daemon.core.config`.

A flag's value lands under the setting's own name and is None when the flag is not given, so
that the configuration file and the environment decide; :func:`given` collects them as the
overrides :func:`daemon.core.config.load` takes.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

from daemon.core import config


def flagged(section: str | None = None) -> list[str]:
    """The names of the settings that have a flag (in ``section`` only, when given)."""
    return [
        row.name
        for row in config.FIELDS.values()
        if row.spec.flag and (section is None or row.spec.section == section)
    ]


def _shown(default: Any) -> str:
    """
    >>> _shown(30.0), _shown(86400.0), _shown(4), _shown("default")
    ('30', '86400', '4', 'default')
    """
    return f"{default:g}" if isinstance(default, float) else str(default)


def _or_auto(kind: Any) -> Any:
    """A flag's type that also takes the word ``auto``."""

    def convert(text: str) -> Any:
        return config.AUTO if text.strip().lower() == config.AUTO else kind(text)

    convert.__name__ = getattr(kind, "__name__", "value")  # argparse names it in its errors
    return convert


def add(parser: argparse._ActionsContainer, names: Iterable[str]) -> None:
    """One flag per setting of ``names``, as the table spells and explains it."""
    for name in names:
        row = config.FIELDS[name]
        spec = row.spec
        if not spec.flag:
            raise ValueError(f"setting {name!r} has no flag")
        kwargs: dict[str, Any] = {"dest": name, "default": None}
        if spec.help:
            kwargs["help"] = spec.help.format(default=_shown(row.default))
        if row.kind is bool:
            kwargs["action"] = "store_false" if row.default else "store_true"  # --no-...
        else:
            kwargs["action"] = "append" if row.many else "store"
            kwargs["type"] = _or_auto(row.kind) if spec.auto else row.kind
            kwargs["metavar"] = spec.metavar
            kwargs["choices"] = spec.choices or None
        parser.add_argument(spec.flag, **kwargs)


def add_sections(parser: argparse.ArgumentParser, sections: Iterable[str]) -> None:
    """The flags of every setting in ``sections``, one argument group each."""
    for section in sections:
        add(parser.add_argument_group(f"[{section}] settings"), flagged(section))


def given(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """The settings of ``names`` as given on the command line (None: not given)."""
    return {name: getattr(args, name, None) for name in names}
