"""Logging: structlog, readable on a terminal, JSON lines otherwise (what journald stores).

Secrets never reach a log line: a processor redacts known tokens, ``Authorization`` values and
any key that looks like a secret, whatever module logged it. Records of the standard library's
``logging`` (aiohttp, asyncio, watchdog) go through the same processors, so they come out in
the same format, redacted, with the logger's name added.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

REDACTED = "***"
_SECRET_KEYS = re.compile(r"(token|authorization|password|secret|user_key|access_key)", re.I)
_AUTH_VALUE = re.compile(
    r"((?:OAuth|Bearer)\s+)[A-Za-z0-9|._\-]{12,}", re.I
)  # a word is not a token
_known_secrets: set[str] = set()


def register_secret(secret: str | None) -> None:
    """Remember a secret (a token) so that any log line containing it is redacted."""
    if secret and len(secret) >= 4:
        _known_secrets.add(secret)


def redact_text(text: str) -> str:
    text = _AUTH_VALUE.sub(lambda m: m.group(1) + REDACTED, text)
    for secret in _known_secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redact_value(key: str, value: Any) -> Any:
    if _SECRET_KEYS.search(key) and value not in (None, "", False):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(key, v) for v in value)
    if isinstance(value, BaseException):
        return redact_text(str(value))
    return value


def redact_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        # An exception stays one, for the renderer to format; its text is redacted after.
        if key != "exc_info":
            event_dict[key] = _redact_value(key, event_dict[key])
    return event_dict


def _redact_rendered(_logger: Any, _method: str, rendered: Any) -> Any:
    # Last line of defence: exception tracebacks are rendered after the processors above.
    return redact_text(rendered) if isinstance(rendered, str) else rendered


# Libraries' INFO lines (aiohttp's access log: one a request) are not the daemon's story.
_STDLIB_FLOOR = logging.WARNING
_stdlib_handler: logging.Handler | None = None


def setup(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog once per process, and route the standard library's records through
    the same processors. ``fmt``: auto | console | json."""
    out = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    renderer: Any
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    else:
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    shared: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_processor,
    ]
    # Console lines show a traceback as it is; JSON lines carry it as a field.
    last = [renderer, _redact_rendered]
    if fmt != "console":
        last.insert(0, structlog.processors.format_exc_info)
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *shared, *last],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *last],
    )
    _route_stdlib(formatter, logging.getLevelName(level.upper()), stream)


def _route_stdlib(formatter: logging.Formatter, level: int, stream: TextIO | None) -> None:
    """One handler of ours on the root logger (replaced on each setup, others left alone)."""
    global _stdlib_handler
    root = logging.getLogger()
    if _stdlib_handler is not None:
        root.removeHandler(_stdlib_handler)
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(level if level <= logging.DEBUG else max(level, _STDLIB_FLOOR))
    _stdlib_handler = handler


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes (a test may have swapped it),
    as the standard library's own last-resort handler does."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def get(name: str | None = None) -> Any:
    return structlog.get_logger(name) if name else structlog.get_logger()
