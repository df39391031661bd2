"""The sequences of the journal: which described images go up together, in capture order, and
whether the server has finished them (its cluster id)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from daemon.core.files import valid_text
from daemon.journal.errors import IllegalTransition, JournalError, NotFound
from daemon.journal.files import FileStore
from daemon.journal.rows import (
    FILE_SELECT,
    SEQUENCE_SELECT,
    FileRow,
    SequenceRow,
    path_value,
    sequence_row,
)
from daemon.journal.states import FileState, SequenceState, check_sequence_transition


class SequenceStore(FileStore):
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
        """Record the cluster id from ``finish_upload``: the sequence and its images are finished.

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
