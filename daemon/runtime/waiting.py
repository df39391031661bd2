"""Why photos wait, for `status`: each stage's hold-ups counted in ``Runtime.waiting`` (reason →
photos) with a few words each in ``Runtime.waiting_why`` (reason → detail).

The reasons, in the order a photo meets them:
- ``settling``: files still being written (or not looked at yet), not in the journal;
- ``card copying``: a card's files not copied into the spool yet, and photos of a card whose
  batch waits for the rest of the card;
- ``batch quiet``: photos whose folder has not been quiet for ``batch_quiet_seconds`` yet;
- ``position``: photos without a position, waiting for a GPX that covers their time;
- ``upload delay``: sequences within their ``upload_delay``;
- ``upload hours`` / ``no token`` / ``server unreachable``: sequences the upload stage holds
  back (``Uploading.blocked``).
Read from the stages and the journal at most every REFRESH_SECONDS, just before the status
board is saved.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from daemon.core import config
from daemon.journal import AsyncJournal, Journal
from daemon.journal.waiting import WaitingFigures
from daemon.runtime.roots import RootActivity
from daemon.runtime.state import Runtime

REFRESH_SECONDS = 2.0


@dataclass
class Holdups:
    """Where the stages' own hold-ups are read from (each a cheap call, no I/O)."""

    settling: Callable[[], int]  # files the sources still watch settle
    settling_under: Callable[[str], int]  # ... under one root
    copying: Callable[[], int]  # card files queued or being copied into the spool
    activity: RootActivity
    missing_roots: Callable[[], set[str]]
    upload_blocked: Callable[[], tuple[str, str] | None]  # (reason, detail) or None


class WaitingReasons:
    def __init__(
        self,
        settings: Callable[[], config.Settings],  # the settings in force (a reload changes them)
        journal: AsyncJournal,
        holdups: Holdups,
    ) -> None:
        self._settings = settings
        self.journal = journal
        self.holdups = holdups
        self._at = -1e9

    @property
    def settings(self) -> config.Settings:
        return self._settings()

    async def refresh(self, runtime: Runtime, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._at < REFRESH_SECONDS:
            return
        self._at = now
        delay = self.settings.upload_delay
        figures = await self.journal.run(lambda j: Journal.waiting_figures(j, delay))
        counts, why = self.reasons(figures)
        runtime.waiting = counts
        runtime.waiting_why = why

    def reasons(self, f: WaitingFigures) -> tuple[dict[str, int], dict[str, str]]:
        h = self.holdups
        counts: dict[str, int] = {}
        why: dict[str, str] = {}

        def add(reason: str, n: int, detail: str) -> None:
            if n > 0:
                counts[reason] = counts.get(reason, 0) + n
                why[reason] = detail

        add("settling", h.settling(), "files still being written")
        add("card copying", h.copying(), "card files not copied into the spool yet")
        quiet = self.settings.batch_quiet_seconds
        missing = h.missing_roots()
        for root, n in f.imported.items():
            if root in h.activity.importing:
                add("card copying", n, "the rest of the card is still being copied")
            elif root in missing:
                continue  # said by the sources' line: the drive or folder is away
            elif h.settling_under(root):
                add("settling", n, "files still being written")
            elif (left := quiet - h.activity.quiet_for(root)) > 0:
                # The time it ends, not the seconds left: the same until a new file comes, so
                # the status board is not rewritten at every save (an SD card's wear).
                until = time.strftime("%H:%M:%S", time.localtime(time.time() + left))
                add("batch quiet", n, f"their folder quiet for {quiet:g} s, until {until}")
        add("position", f.for_position, position_detail(f.position_span))
        add("upload delay", f.delayed, f"sequences wait {self.settings.upload_delay:g} s")
        blocked = h.upload_blocked()
        if blocked is not None:
            add(blocked[0], f.to_send, blocked[1])
        return counts, why


def position_detail(span: tuple[str, str] | None) -> str:
    """Which capture times no track covers, in UTC as GPX tracks are (the journal keeps the
    photos' times in UTC).

    >>> position_detail(("2024-06-01T08:02:05+00:00", "2024-06-01T08:15:40+00:00"))
    'no GPS track covers 08:02-08:15 UTC'
    >>> position_detail(("2024-06-01T23:50:00+00:00", "2024-06-02T00:10:00+00:00"))
    'no GPS track covers 2024-06-01 23:50 - 2024-06-02 00:10 UTC'
    >>> position_detail(None)
    'no GPS track covers them yet'
    """
    if span is None:
        return "no GPS track covers them yet"
    first, last = span
    if first[:10] == last[:10]:
        return f"no GPS track covers {first[11:16]}-{last[11:16]} UTC"
    return f"no GPS track covers {first[:10]} {first[11:16]} - {last[:10]} {last[11:16]} UTC"
