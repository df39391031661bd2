"""The figures ``status`` shows, read from the journal in one query set (the caller gives the
snapshot): counts per state, bytes still to send, the latest failures, and each source's share."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from daemon.journal.clusters import image_url
from daemon.journal.meta import RETRY_META
from daemon.journal.rows import path_text
from daemon.journal.states import FileState, SequenceState

RECENT_ERRORS = 20
RECENT_UPLOADS = 5


def read_summary(conn: sqlite3.Connection, errors: int = RECENT_ERRORS) -> dict[str, Any]:
    """See ``Journal.summary``; runs inside the caller's read transaction."""
    return {
        "images": _count(conn, "files", FileState),
        "sequences": _count(conn, "sequences", SequenceState),
        "bytes_to_upload": _bytes_to_upload(conn),
        "waiting_for_source": _waiting_for_source(conn),
        "failed_sequences": _failed_sequences(conn, errors),
        "recent_errors": _recent_errors(conn, errors),
        "sources": _sources(conn),
        "recent_uploads": recent_uploads(conn, RECENT_UPLOADS),
    }


def _count(
    conn: sqlite3.Connection, table: str, states: type[FileState] | type[SequenceState]
) -> dict[str, int]:
    counts = {str(s): 0 for s in states}
    counts.update(conn.execute(f"SELECT state, count(*) FROM {table} GROUP BY state").fetchall())
    return counts


def _bytes_to_upload(conn: sqlite3.Connection) -> int:
    # Only sequences still pending will send anything: a failed one waits for the user. A started
    # upload sends its tagged bytes, unless the server already holds them (it has a handle).
    left: int = conn.execute(
        "SELECT coalesce(sum(CASE WHEN u.file_hash IS NULL THEN f.size "
        "WHEN u.handle IS NULL THEN u.size ELSE 0 END), 0) FROM files f "
        "JOIN sequences s ON s.uuid = f.sequence_id "
        "LEFT JOIN uploads u ON u.file_hash = f.hash WHERE f.state = ? AND s.state = ?",
        (str(FileState.SEQUENCED), str(SequenceState.PENDING)),
    ).fetchone()[0]
    return left


def _waiting_for_source(conn: sqlite3.Connection) -> dict[str, int]:
    # A sequenced image with a reason waits for its source (drive unplugged, folder gone): see
    # daemon.upload.worker. Its sequence stays pending until it is back or its wait ends.
    images, sequences = conn.execute(
        "SELECT count(*), count(DISTINCT f.sequence_id) FROM files f "
        "JOIN sequences s ON s.uuid = f.sequence_id "
        "WHERE f.state = ? AND f.reason IS NOT NULL AND s.state = ?",
        (str(FileState.SEQUENCED), str(SequenceState.PENDING)),
    ).fetchone()
    return {"images": images, "sequences": sequences}


def _failed_sequences(conn: sqlite3.Connection, errors: int) -> list[dict[str, Any]]:
    row = conn.execute("SELECT value FROM settings WHERE key = ?", (RETRY_META,)).fetchone()
    schedule = json.loads(row[0]) if row else {}
    return [
        {"uuid": u, "reason": r, "images": n, "next_try": schedule.get(u, {}).get("next")}
        for u, r, n in conn.execute(
            "SELECT s.uuid, s.reason, (SELECT count(*) FROM files WHERE sequence_id = s.uuid) "
            "FROM sequences s WHERE s.state = ? ORDER BY s.created_at DESC, s.rowid DESC "
            "LIMIT ?",
            (str(SequenceState.FAILED), errors),
        )
    ]


def _recent_errors(conn: sqlite3.Connection, errors: int) -> list[dict[str, Any]]:
    return [
        {"hash": h, "path": path_text(p), "state": s, "reason": r, "at": at}
        for h, s, r, at, p in conn.execute(
            "SELECT f.hash, f.state, f.reason, f.updated_at, (SELECT path FROM file_paths "
            "WHERE hash = f.hash ORDER BY seen_at DESC, rowid DESC LIMIT 1) FROM files f "
            "WHERE f.state IN (?, ?) ORDER BY f.updated_at DESC, f.rowid DESC LIMIT ?",
            (str(FileState.REJECTED), str(FileState.FAILED), errors),
        )
    ]


def _sources(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    sources: dict[str, dict[str, Any]] = {}
    for root, kind, state, n in conn.execute(
        "SELECT source_root, source_kind, state, count(*) FROM files "
        "GROUP BY source_root, source_kind, state ORDER BY source_root"
    ):
        entry = sources.setdefault(path_text(root), {"kind": kind, "images": {}})
        entry["images"][state] = entry["images"].get(state, 0) + n
    return sources


def recent_uploads(conn: sqlite3.Connection, n: int) -> list[dict[str, Any]]:
    """The last ``n`` finished sequences: cluster, and once Mapillary processed it, its
    sequence id and a link (the viewer at its first image), else why not yet."""
    out = []
    for uuid, cluster, finished, sequence, note, next_check, images, first in conn.execute(
        "SELECT s.uuid, s.cluster_id, s.finished_at, c.mapillary_sequence, c.note, "
        "c.next_check, (SELECT count(*) FROM cluster_files WHERE cluster_id = c.cluster_id), "
        "(SELECT image_id FROM cluster_files WHERE cluster_id = c.cluster_id "
        "ORDER BY position LIMIT 1) FROM sequences s "
        "LEFT JOIN clusters c ON c.sequence_uuid = s.uuid WHERE s.state = ? "
        "ORDER BY s.finished_at DESC, s.rowid DESC LIMIT ?",
        (str(SequenceState.FINISHED), n),
    ):
        out.append(
            {
                "uuid": uuid,
                "cluster_id": cluster,
                "finished_at": finished,
                "images": images,
                "mapillary_sequence": sequence,
                "url": image_url(first) if sequence else None,
                "note": note,
                "next_check": next_check,
            }
        )
    return out
