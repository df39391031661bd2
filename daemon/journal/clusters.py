"""What finish_upload made of each sequence: the cluster with the local files it covers, and,
once the service has processed it, the Mapillary sequence and image ids (so `status` can say
"this photo is on the map" with a link). Asked for by a low-frequency follow-up, never blocking
uploads: ``clusters_due`` gives the ones to ask about, ``record_ids`` or ``record_check`` what
the answer was."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from daemon.journal.base import JournalBase
from daemon.journal.rows import path_text
from daemon.journal.states import FileState

IMAGE_URL = "https://www.mapillary.com/app/?pKey={}"


def image_url(image_id: str | None) -> str | None:
    """The Mapillary viewer at one image; a sequence is shown at its first image.

    >>> image_url("1000000000001"), image_url(None)
    ('https://www.mapillary.com/app/?pKey=1000000000001', None)
    """
    return IMAGE_URL.format(image_id) if image_id else None


@dataclass(frozen=True)
class ClusterRow:
    cluster_id: str
    sequence_uuid: str
    mapillary_sequence: str | None
    checks: int
    next_check: float | None
    note: str | None


class ClusterStore(JournalBase):
    def _record_cluster(self, uuid: str, cluster_id: str, now: float) -> None:
        """Inside the finish's transaction: the cluster and the finished files it covers, in
        manifest order (the images the server got, set-aside ones left out)."""
        self._conn.execute(
            "INSERT OR IGNORE INTO clusters (cluster_id, sequence_uuid, next_check) "
            "VALUES (?, ?, ?)",
            (cluster_id, uuid, now),
        )
        hashes = self._conn.execute(
            "SELECT hash FROM files WHERE sequence_id = ? AND state = ? ORDER BY seq_index",
            (uuid, str(FileState.FINISHED)),
        ).fetchall()
        self._conn.executemany(
            "INSERT OR IGNORE INTO cluster_files (file_hash, cluster_id, position) VALUES (?,?,?)",
            [(h, cluster_id, i) for i, (h,) in enumerate(hashes)],
        )

    def clusters_due(self, now: float | None = None, limit: int = 5) -> list[ClusterRow]:
        """Clusters whose ids are still unknown and whose next check has come, oldest first."""
        now = time.time() if now is None else now
        rows = self._read(
            f"{CLUSTER_SELECT} WHERE mapillary_sequence IS NULL AND next_check IS NOT NULL "
            "AND next_check <= ? ORDER BY next_check LIMIT ?",
            (now, limit),
        )
        return [ClusterRow(*r) for r in rows]

    def cluster_files(self, cluster_id: str) -> list[str]:
        """The content hashes a cluster covers, in manifest order."""
        rows = self._read(
            "SELECT file_hash FROM cluster_files WHERE cluster_id = ? ORDER BY position",
            (cluster_id,),
        )
        return [r[0] for r in rows]

    def record_ids(self, cluster_id: str, sequence_id: str, image_ids: Sequence[str]) -> None:
        """The service processed the cluster: its sequence id and the image id of each file.
        Image ids are matched in manifest order, and only when their number is the files'
        (else the sequence link alone is kept, with a note)."""
        with self.transaction():
            hashes = [
                r[0]
                for r in self._conn.execute(
                    "SELECT file_hash FROM cluster_files WHERE cluster_id = ? ORDER BY position",
                    (cluster_id,),
                )
            ]
            note = None
            if len(hashes) == len(image_ids):
                self._conn.executemany(
                    "UPDATE cluster_files SET image_id = ? WHERE file_hash = ?",
                    list(zip(image_ids, hashes, strict=True)),
                )
            else:
                note = f"the service has {len(image_ids)} images of {len(hashes)} sent"
            self._conn.execute(
                "UPDATE clusters SET mapillary_sequence = ?, checks = checks + 1, "
                "next_check = NULL, note = ? WHERE cluster_id = ?",
                (sequence_id, note, cluster_id),
            )

    def record_check(self, cluster_id: str, next_check: float | None, note: str) -> None:
        """Asked, not processed yet (or not answerable): when to ask again (None: never)."""
        with self.transaction():
            self._conn.execute(
                "UPDATE clusters SET checks = checks + 1, next_check = ?, note = ? "
                "WHERE cluster_id = ?",
                (next_check, note, cluster_id),
            )

    def get_cluster(self, uuid: str) -> ClusterRow | None:
        rows = self._read(f"{CLUSTER_SELECT} WHERE sequence_uuid = ?", (uuid,))
        return ClusterRow(*rows[0]) if rows else None

    def published(self, uuid: str) -> list[dict[str, str | None]]:
        """Each photo of a finished sequence: its path, image id and link (None until known)."""
        rows = self._read(
            "SELECT c.file_hash, c.image_id, (SELECT path FROM file_paths WHERE hash = c.file_hash "
            "ORDER BY seen_at DESC, rowid DESC LIMIT 1) FROM cluster_files c "
            "JOIN clusters k ON k.cluster_id = c.cluster_id WHERE k.sequence_uuid = ? "
            "ORDER BY c.position",
            (uuid,),
        )
        return [
            {"hash": h, "path": path_text(p), "image_id": i, "url": image_url(i)}
            for h, i, p in rows
        ]


CLUSTER_SELECT = (
    "SELECT cluster_id, sequence_uuid, mapillary_sequence, checks, next_check, note FROM clusters"
)
