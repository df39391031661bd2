"""The journal's key-value table (``settings`` in the file) and every key the program keeps in it.

Each key has one home here, so two parts of the program never pick the same name for two things.
"""

from __future__ import annotations

import json
from typing import Any

from daemon.journal.base import JournalBase
from daemon.journal.rows import dump

GPX_META = "gpx_files"  # the GPX files the daemon knows: {content hash: path}
ASIDE_META = "set_aside_files"  # files set aside at intake: {path: reason}
RUNTIME_META = "daemon_runtime"  # the running daemon's own state, for `status`
RETRY_META = "sequence_retries"  # failed sequences' next try: {uuid: {"tries": n, "next": ts}}
RETRY_REQUESTS_META = "sequence_retry_requests"  # `retry` while a daemon writes: uuids or "all"
FAILURES_META = "file_failures"  # unexpected failures in a row, by hash or path (failures.py)


class MetaStore(JournalBase):
    """Reading and writing JSON values by key."""

    def get_meta(self, key: str, default: Any = None) -> Any:
        """A value from the settings table (JSON-decoded), or ``default``."""
        rows = self._read("SELECT value FROM settings WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable value under ``key`` in the settings table."""
        with self.transaction():
            self._conn.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, dump(value)),
            )
