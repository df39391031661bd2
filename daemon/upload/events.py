"""Upload events: the transfer code announces what happens, subscribers decide what to show.

A progress bar, the status line, the journal or statistics subscribe to an ``EventBus``; the
client knows nothing about terminals. Subscribers are plain callables run on the event loop:
they must be quick, and one that raises is logged and otherwise ignored, so a broken display
never breaks an upload.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from daemon.core import log

EventKind = Literal["start", "progress", "end", "retry", "failed"]


@dataclass(frozen=True)
class UploadEvent:
    """One thing that happened to one upload object (an image or a manifest).

    ``offset`` is how many bytes of ``total`` the server holds or has been sent so far;
    ``reason``/``delay`` are set for ``retry`` (and ``reason`` for ``failed``); ``handle`` for
    ``end``.
    """

    kind: EventKind
    key: str
    total: int
    offset: int = 0
    name: str | None = None
    reason: str | None = None
    delay: float | None = None
    attempt: int | None = None
    handle: str | None = None


Subscriber = Callable[[UploadEvent], None]


class EventBus:
    """Fan-out of upload events to any number of subscribers."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._log = log.get("upload.events")

    def subscribe(self, subscriber: Subscriber) -> None:
        """Add a subscriber for every event from now on."""
        self._subscribers.append(subscriber)

    def emit(self, event: UploadEvent) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception as exc:  # a display bug must not stop the transfer
                self._log.warning("event subscriber failed", kind=event.kind, error=repr(exc))
