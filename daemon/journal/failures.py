"""Files that failed unexpectedly: how often in a row, why, and the quarantine after that.

An unexpected exception while taking, reading, describing, tagging or sending one file costs
that file, never the daemon (the fences are in ``daemon.runtime`` and ``daemon.upload``). Each
failure is counted here; at ``QUARANTINE_AFTER`` failures in a row the file is quarantined: it
is not tried again (a file not journaled yet until it changes; a journaled one is rejected with
the reason, so its sequence can finish without it). The counts live in the journal (meta
``FAILURES_META``), so a restart neither forgets them nor starts over on a quarantined file,
and a file that brings the daemon down somehow is still counted by the runs it cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from daemon.core import log
from daemon.core.files import valid_text
from daemon.journal.errors import IllegalTransition, JournalError, NotFound
from daemon.journal.facade import AsyncJournal
from daemon.journal.meta import FAILURES_META
from daemon.media.errors import one_line

QUARANTINE_AFTER = 3  # failures in a row


def journal_trouble(exc: BaseException) -> bool:
    """Whether ``exc`` is the journal failing (gone, unwritable), which no file is to blame
    for: a fence lets it through, so the stage stops instead of setting files aside.

    >>> journal_trouble(JournalError("journal x: disk I/O error"))
    True
    >>> journal_trouble(IllegalTransition("illegal state change finished → imported"))
    False
    >>> journal_trouble(UnicodeEncodeError("utf-8", "\\udcff", 0, 1, "surrogates not allowed"))
    False
    """
    return isinstance(exc, JournalError) and not isinstance(exc, IllegalTransition | NotFound)


@dataclass(frozen=True)
class Failure:
    """One more failure of a file: ``reason`` is the one line to show (with the count)."""

    key: str
    file: str
    count: int
    reason: str

    @property
    def quarantined(self) -> bool:
        return self.count >= QUARANTINE_AFTER


class FileFailures:
    """The failure counts of files, by key: the content hash of a journaled file, else its path
    (with its size and mtime as ``version``: a file that changed starts a new count)."""

    def __init__(self, journal: AsyncJournal) -> None:
        self.journal = journal
        self._known: dict[str, dict[str, Any]] | None = None
        self.log = log.get("daemon")

    async def load(self) -> None:
        if self._known is None:
            self._known = dict(await self.journal.get_meta(FAILURES_META, {}) or {})

    async def _entries(self) -> dict[str, dict[str, Any]]:
        await self.load()
        assert self._known is not None
        return self._known

    async def quarantined(self, key: str, version: list[float] | None = None) -> str | None:
        """The reason ``key`` is quarantined (for this version of it), or None."""
        entry = (await self._entries()).get(key)
        if entry is None or entry.get("version") != version:
            return None
        return str(entry["reason"]) if entry["count"] >= QUARANTINE_AFTER else None

    async def failed(
        self,
        key: str,
        file: str,
        exc: BaseException,
        step: str,
        version: list[float] | None = None,
    ) -> Failure:
        """Count a failure of ``file`` while doing ``step`` ("reading", "sending", ...); logs
        ``file_set_aside`` with the reason (and the traceback once, at debug level)."""
        known = await self._entries()
        entry = known.get(key)
        count = 1 if entry is None or entry.get("version") != version else entry["count"] + 1
        reason = f"unexpected error while {step}: {valid_text(one_line(exc))}"
        if count >= QUARANTINE_AFTER:
            reason = f"quarantined after {count} failures in a row: {reason}"
        else:
            reason = f"{reason} (failure {count} of {QUARANTINE_AFTER}, tried again later)"
        known[key] = {"count": count, "file": valid_text(file), "reason": reason}
        if version is not None:
            known[key]["version"] = version
        await self.journal.set_meta(FAILURES_META, known)
        self.log.error("file_set_aside", file=file, reason=reason, failures=count)
        if count == 1:
            self.log.debug("file_set_aside_traceback", file=file, exc_info=exc)
        return Failure(key, file, count, reason)

    async def cleared(self, *keys: str) -> None:
        """``keys`` went through: their runs of failures are over (one write, if any was on)."""
        known = await self._entries()
        gone = [known.pop(key) for key in keys if key in known]
        if gone:
            await self.journal.set_meta(FAILURES_META, known)
