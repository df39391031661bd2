"""The recent-activity ring: the last few hundred things worth telling the user, for ``status``."""

from __future__ import annotations

import time

from daemon.core.files import valid_text
from daemon.journal.base import JournalBase
from daemon.journal.rows import EVENT_SELECT, Event, event_row

EVENTS_KEPT = 200


class EventStore(JournalBase):
    """Appending to and reading the ring of events."""

    def record_event(self, kind: str, message: str, file_hash: str | None = None) -> None:
        """Append to the recent-activity ring (the last EVENTS_KEPT rows are kept)."""
        with self.transaction():
            cur = self._conn.execute(
                "INSERT INTO events (at, kind, message, file_hash) VALUES (?,?,?,?)",
                (time.time(), kind, valid_text(message), file_hash),  # names may not be UTF-8
            )
            assert cur.lastrowid is not None  # an INSERT always sets it
            self._conn.execute("DELETE FROM events WHERE id <= ?", (cur.lastrowid - EVENTS_KEPT,))

    def recent_events(self, n: int = 20) -> list[Event]:
        """The last ``n`` events, newest first."""
        rows = self._read(f"{EVENT_SELECT} ORDER BY id DESC LIMIT ?", (n,))
        return [event_row(r) for r in rows]
