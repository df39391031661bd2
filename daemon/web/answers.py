"""The page's answers read from the journal, kept until the journal changes.

Every open page asks for ``/api/status`` every 2 s; with 50,000 photos journaled each answer
costs ~100 ms of SQLite. SQLite's ``PRAGMA data_version`` (on a connection of our own) moves
whenever another connection commits, so an idle daemon answers from memory and a busy one reads
again exactly when something changed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from daemon.journal import Journal


class JournalAnswers:
    """Answers by name, each with the journal version it was read at. Blocking: in a thread."""

    def __init__(self, journal_path: Path) -> None:
        self.journal_path = journal_path
        self._journal: Journal | None = None
        self._lock = threading.Lock()
        self._kept: dict[str, tuple[int, bytes]] = {}

    def version(self) -> int:
        with self._lock:
            if self._journal is None:
                self._journal = Journal.open_readonly(self.journal_path)
            journal = self._journal
        return int(journal.query("PRAGMA data_version")[0][0])

    def get(self, name: str, read: Callable[[], bytes]) -> bytes:
        """The answer ``read`` gives, read again only when the journal changed since."""
        # The version is taken first: a commit during ``read`` makes the next call read again.
        version = self.version()
        kept = self._kept.get(name)
        if kept is not None and kept[0] == version:
            return kept[1]
        answer = read()
        self._kept[name] = (version, answer)
        return answer

    def close(self) -> None:
        with self._lock:
            if self._journal is not None:
                self._journal.close()
                self._journal = None
