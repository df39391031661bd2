"""The upload objects of the journal: one per image, under the session key its bytes give, with
the handle the server returns once it holds them all."""

from __future__ import annotations

import time

from daemon.journal.errors import JournalError, NotFound
from daemon.journal.files import FileStore
from daemon.journal.rows import UPLOAD_SELECT, StateChange, UploadRow, upload_row
from daemon.journal.states import FileState


class UploadStore(FileStore):
    """Starting an image's upload object and recording its handle."""

    def upsert_upload(self, file_hash: str, key: str, md5: str, size: int) -> UploadRow:
        """Start (or find) the upload object of a file and return it.

        The same key returns the recorded object (a resume). A new key (the tagged bytes changed)
        replaces it, unless the file already has a handle: then JournalError, since an image is
        never sent twice once the server holds it.
        """
        with self.transaction():
            old = self._upload_where("u.file_hash = ?", file_hash)
            if old is not None and old.key == key:
                return old
            if old is not None and old.handle is not None:
                raise JournalError(
                    f"journal {self.path}: file {file_hash} was already uploaded as {old.key}"
                )
            self._conn.execute(
                "INSERT INTO uploads (file_hash, key, md5, size, updated_at) VALUES (?,?,?,?,?) "
                "ON CONFLICT(file_hash) DO UPDATE SET key = excluded.key, md5 = excluded.md5, "
                "size = excluded.size, updated_at = excluded.updated_at",
                (file_hash, key, md5, size, time.time()),
            )
            new = self._upload_where("u.file_hash = ?", file_hash)
        assert new is not None
        return new

    def record_handle(self, file_hash: str, key: str, handle: str) -> None:
        """The server returned ``handle`` for ``key``: the upload is complete and the file is
        uploaded, in one transaction. Recording the same handle again is a no-op."""
        now = time.time()
        with self.transaction():
            upload = self._upload_where("u.key = ?", key)
            if upload is None or upload.file_hash != file_hash:
                raise NotFound(f"journal {self.path}: no upload {key} for file {file_hash}")
            if upload.handle is not None and upload.handle != handle:
                raise JournalError(
                    f"journal {self.path}: upload {key} already has handle {upload.handle}"
                )
            self._conn.execute(
                "UPDATE uploads SET handle = ?, updated_at = ? WHERE key = ?", (handle, now, key)
            )
            self._set_state(
                StateChange(file_hash, FileState.UPLOADED, None, {"handle": handle}), now
            )

    def get_upload(self, file_hash: str) -> UploadRow | None:
        """The upload object of a file, or None if its upload never started."""
        return self._upload_where("u.file_hash = ?", file_hash)

    def _upload_where(self, where: str, value: str) -> UploadRow | None:
        row = self._conn.execute(f"{UPLOAD_SELECT} WHERE {where}", (value,)).fetchone()
        return upload_row(row) if row else None
