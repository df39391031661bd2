"""The sequences of the journal: which described images go up together, in capture order, and
whether the server has finished them (its cluster id)."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from daemon.core.files import valid_text
from daemon.journal.clusters import ClusterStore
from daemon.journal.errors import IllegalTransition, JournalError, NotFound
from daemon.journal.files import FileStore
from daemon.journal.meta import RETRY_META, RETRY_REQUESTS_META
from daemon.journal.rows import (
    FILE_SELECT,
    SEQUENCE_SELECT,
    FileRow,
    SequenceRow,
    dump,
    path_value,
    sequence_row,
)
from daemon.journal.states import FileState, SequenceState, check_sequence_transition


class SequenceStore(FileStore, ClusterStore):
    """Cutting sequences from described images and carrying them to finished (or failed)."""

    def create_sequence(
        self,
        uuid: str,
        image_hashes: Sequence[str],
        *,
        source_root: str | os.PathLike[str] | None = None,
    ) -> bool:
        """Record a sequence of described images in capture order and set them sequenced, in
        one transaction. Returns False if this exact sequence already exists (a retry after a
        crash); a different one under the same uuid is an error."""
        if not image_hashes:
            raise ValueError("a sequence needs at least one image")
        now = time.time()
        with self.transaction():
            existing = self._conn.execute(
                "SELECT hash FROM files WHERE sequence_id = ? ORDER BY seq_index", (uuid,)
            ).fetchall()
            if self._conn.execute("SELECT 1 FROM sequences WHERE uuid = ?", (uuid,)).fetchone():
                if [r[0] for r in existing] == list(image_hashes):
                    return False
                raise JournalError(f"journal {self.path}: sequence {uuid} exists with other images")
            self._conn.execute(
                "INSERT INTO sequences (uuid, state, source_root, created_at) VALUES (?,?,?,?)",
                (uuid, str(SequenceState.PENDING), path_value(source_root), now),
            )
            for index, file_hash in enumerate(image_hashes):
                self._sequence_image(uuid, index, file_hash, now)
        return True

    def _sequence_image(self, uuid: str, index: int, file_hash: str, now: float) -> None:
        row = self._conn.execute("SELECT state FROM files WHERE hash = ?", (file_hash,)).fetchone()
        if row is None:
            raise NotFound(f"journal {self.path}: no file {file_hash}")
        if row[0] != FileState.DESCRIBED:
            raise IllegalTransition(f"illegal state change {row[0]} → sequenced for {file_hash}")
        self._conn.execute(
            "UPDATE files SET state = ?, reason = NULL, sequence_id = ?, seq_index = ?, "
            "updated_at = ? WHERE hash = ?",
            (str(FileState.SEQUENCED), uuid, index, now, file_hash),
        )

    def get_sequence(self, uuid: str) -> SequenceRow | None:
        """The sequence with this uuid, or None."""
        rows = self._read(f"{SEQUENCE_SELECT} WHERE s.uuid = ?", (uuid,))
        return sequence_row(rows[0]) if rows else None

    def sequences_in_state(self, state: SequenceState) -> list[SequenceRow]:
        """Sequences in ``state``, oldest first."""
        rows = self._read(
            f"{SEQUENCE_SELECT} WHERE s.state = ? ORDER BY s.created_at, s.rowid",
            (str(SequenceState(state)),),
        )
        return [sequence_row(r) for r in rows]

    def sequence_images(self, uuid: str) -> list[FileRow]:
        """The images of a sequence in capture order."""
        return self._file_rows(
            f"{FILE_SELECT} WHERE f.sequence_id = ? ORDER BY f.seq_index", (uuid,)
        )

    def record_manifest(self, uuid: str, key: str, handle: str | None = None) -> None:
        """Record the manifest's session key (before uploading it, so a resume reuses the key)
        and, once uploaded, its handle."""
        with self.transaction():
            cur = self._conn.execute(
                "UPDATE sequences SET manifest_key = ?, manifest_handle = ? WHERE uuid = ?",
                (key, handle, uuid),
            )
            if cur.rowcount == 0:
                raise NotFound(f"journal {self.path}: no sequence {uuid}")

    def set_sequence_finished(self, uuid: str, cluster_id: str) -> bool:
        """Record the cluster id from ``finish_upload``: the sequence and its images are finished,
        and the cluster is recorded with the files it covers (asked about from now on).

        Every image must be uploaded or rejected (set aside: left out of the manifest, it stays
        rejected). Returns False if it was already finished with this cluster id; a different
        cluster id raises JournalError (the sequence must never finish twice).
        """
        now = time.time()
        with self.transaction():
            state, finished_as = self._sequence_state(uuid)
            if state == SequenceState.FINISHED:
                if finished_as == cluster_id:
                    return False
                raise JournalError(
                    f"journal {self.path}: sequence {uuid} already finished as cluster "
                    f"{finished_as}, not {cluster_id}"
                )
            if state != SequenceState.PENDING:
                raise IllegalTransition(f"illegal sequence state change {state} → finished")
            waiting = self._conn.execute(
                "SELECT count(*) FROM files WHERE sequence_id = ? AND state NOT IN (?, ?)",
                (uuid, str(FileState.UPLOADED), str(FileState.REJECTED)),
            ).fetchone()[0]
            if waiting:
                raise IllegalTransition(
                    f"sequence {uuid} cannot finish: {waiting} image(s) not uploaded"
                )
            self._conn.execute(
                "UPDATE sequences SET state = ?, cluster_id = ?, reason = NULL, finished_at = ? "
                "WHERE uuid = ?",
                (str(SequenceState.FINISHED), cluster_id, now, uuid),
            )
            self._conn.execute(
                "UPDATE files SET state = ?, updated_at = ? WHERE sequence_id = ? AND state = ?",
                (str(FileState.FINISHED), now, uuid, str(FileState.UPLOADED)),
            )
            self._record_cluster(uuid, cluster_id, now)
        return True

    def set_sequence_state(
        self, uuid: str, state: SequenceState, reason: str | None = None
    ) -> None:
        """Mark a sequence failed (with a reason, e.g. finish_upload refused) or pending again for
        a retry. Use ``set_sequence_finished`` to finish one."""
        state = SequenceState(state)
        if state == SequenceState.FINISHED:
            raise IllegalTransition("use set_sequence_finished to finish a sequence")
        if state == SequenceState.FAILED and not reason:
            raise ValueError("a failed sequence needs a reason")
        with self.transaction():
            check_sequence_transition(self._sequence_state(uuid)[0], state)
            self._conn.execute(
                "UPDATE sequences SET state = ?, reason = ? WHERE uuid = ?",
                (str(state), valid_text(reason) if reason else reason, uuid),
            )

    def _sequence_state(self, uuid: str) -> tuple[SequenceState, str | None]:
        """A sequence's state and cluster id; the caller holds the transaction."""
        row = self._conn.execute(
            "SELECT state, cluster_id FROM sequences WHERE uuid = ?", (uuid,)
        ).fetchone()
        if row is None:
            raise NotFound(f"journal {self.path}: no sequence {uuid}")
        return SequenceState(row[0]), row[1]

    # -- failed sequences are tried again: by themselves after growing delays, or when asked ----

    def retry_schedule(self) -> dict[str, dict[str, float]]:
        """Each failed sequence's retry bookkeeping: ``tries`` so far and the ``next`` time."""
        rows = self._read("SELECT value FROM settings WHERE key = ?", (RETRY_META,))
        value = json.loads(rows[0][0]) if rows else {}
        return value if isinstance(value, dict) else {}

    def schedule_retries(
        self, first_delay: float, now: float | None = None, max_delay: float = 7 * 86400.0
    ) -> list[str]:
        """Give every failed sequence without one a next try (``first_delay``, doubled for each
        try before it, at most ``max_delay``); returns the failed sequences due by ``now``."""
        now = time.time() if now is None else now
        with self.transaction():
            failed = [
                r[0]
                for r in self._conn.execute(
                    "SELECT uuid FROM sequences WHERE state = ?", (str(SequenceState.FAILED),)
                )
            ]
            schedule = self.retry_schedule()
            for uuid in failed:
                entry = schedule.setdefault(uuid, {"tries": 0})
                if "next" not in entry:
                    wait = min(first_delay * 2.0 ** min(int(entry.get("tries", 0)), 30), max_delay)
                    entry["next"] = now + wait
            schedule = {u: e for u, e in schedule.items() if u in failed or "next" not in e}
            self._put(RETRY_META, schedule)
        return [u for u in failed if schedule[u]["next"] <= now]

    def retry_sequences(
        self, uuids: Sequence[str] | None = None, *, auto: bool = False
    ) -> list[str]:
        """Queue failed sequences again (all of them for None): pending, their failed images
        sequenced again. ``auto``: a try of the schedule, which counts towards the next delay.
        Returns the uuids queued again; unknown or not failed ones are left as they are."""
        now = time.time()
        done: list[str] = []
        with self.transaction():
            schedule = self.retry_schedule()
            wanted = (
                list(uuids)
                if uuids is not None
                else [
                    r[0]
                    for r in self._conn.execute(
                        "SELECT uuid FROM sequences WHERE state = ?", (str(SequenceState.FAILED),)
                    )
                ]
            )
            for uuid in wanted:
                row = self._conn.execute(
                    "SELECT state FROM sequences WHERE uuid = ?", (uuid,)
                ).fetchone()
                if row is None or row[0] != SequenceState.FAILED:
                    continue
                self._conn.execute(
                    "UPDATE sequences SET state = ?, reason = NULL WHERE uuid = ?",
                    (str(SequenceState.PENDING), uuid),
                )
                self._conn.execute(
                    "UPDATE files SET state = ?, reason = NULL, updated_at = ? "
                    "WHERE sequence_id = ? AND state = ?",
                    (str(FileState.SEQUENCED), now, uuid, str(FileState.FAILED)),
                )
                entry = schedule.get(uuid, {"tries": 0})
                tries = int(entry.get("tries", 0)) + (1 if auto else 0)
                schedule[uuid] = {"tries": tries}  # the next failure schedules the next try
                done.append(uuid)
            self._put(RETRY_META, schedule)
        return done

    def take_retry_requests(self) -> list[str] | None | Literal[False]:
        """What ``retry`` asked for while a daemon held the journal, cleared: a list of uuids,
        None for all, False for nothing."""
        with self.transaction():
            row = self._conn.execute(
                "SELECT value FROM settings WHERE key = ?", (RETRY_REQUESTS_META,)
            ).fetchone()
            if row is None:
                return False
            self._conn.execute("DELETE FROM settings WHERE key = ?", (RETRY_REQUESTS_META,))
        value = json.loads(row[0])
        return None if value == "all" else [str(u) for u in value]

    def _put(self, key: str, value: Any) -> None:
        self._conn.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, dump(value)),
        )


def request_retry(path: Path, uuids: Sequence[str] | None, busy_timeout: float = 10.0) -> None:
    """Leave a retry request in the journal a running daemon writes (it holds the writer lock):
    one small transaction of SQLite's own, which the daemon's upload stage takes on its next
    periodic check. ``uuids`` None asks for every failed sequence.

    The one place where a second process writes a journal a daemon holds (see
    ``daemon/commands/retry.py`` for why it is safe): it only merges uuids into one settings
    row that only ``take_retry_requests`` reads and clears; every state change is still the
    daemon's own. Opened read-write, never created (a journal gone meanwhile is an error, not
    a new empty file), on the real file as ``Journal.open`` does, committed with a full sync.
    """
    real = Path(os.path.realpath(path))
    conn = sqlite3.connect(
        f"{real.as_uri()}?mode=rw", timeout=busy_timeout, isolation_level=None, uri=True
    )
    try:
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("BEGIN IMMEDIATE")
        row = conn.execute(
            "SELECT value FROM settings WHERE key = ?", (RETRY_REQUESTS_META,)
        ).fetchone()
        before = json.loads(row[0]) if row else []
        merged: Any = "all" if uuids is None or before == "all" else sorted({*before, *uuids})
        conn.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (RETRY_REQUESTS_META, json.dumps(merged)),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
