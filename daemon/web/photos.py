"""One sequence as the page shows it when clicked: its photos in order, and the photos of the
same stretch that did not go into it (duplicates of a stop, photos set aside), each with the
file id its thumbnail is asked for by."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daemon.journal import Journal

LEFT_OUT = ("duplicate", "rejected", "waiting_for_position")
MAX_LEFT_OUT = 500


def sequence_photos(journal_path: Path, uuid: str) -> dict[str, Any] | None:
    """The sequence and its photos, or None when the journal has no such sequence."""
    journal = Journal.open_readonly(journal_path)
    try:
        rows = journal.query(
            "SELECT uuid, state, reason, cluster_id, source_root FROM sequences WHERE uuid = ?",
            (uuid,),
        )
        if not rows:
            return None
        row = rows[0]
        photos = _photos(journal, uuid)
        times = [p["time"] for p in photos if p["time"]]
        root = row[4] or _root_of(journal, uuid)
        left_out = _left_out(journal, root, min(times), max(times)) if times else []
    finally:
        journal.close()
    return {
        "uuid": row[0],
        "state": row[1],
        "reason": row[2],
        "cluster_id": row[3],
        "photos": photos,
        "left_out": left_out,
    }


_COLUMNS = (
    "hash, state, reason, json_extract(metadata, '$.filename'), "
    "json_extract(metadata, '$.capture_time')"
)


def _photo(row: tuple[Any, ...]) -> dict[str, Any]:
    file_id, state, reason, name, when = row
    return {"id": file_id, "state": state, "reason": reason, "name": name, "time": when}


def _photos(journal: Journal, uuid: str) -> list[dict[str, Any]]:
    sql = f"SELECT {_COLUMNS} FROM files WHERE sequence_id = ? ORDER BY seq_index"
    return [_photo(r) for r in journal.query(sql, (uuid,))]


def _root_of(journal: Journal, uuid: str) -> str | None:
    found = journal.query("SELECT source_root FROM files WHERE sequence_id = ? LIMIT 1", (uuid,))
    return str(found[0][0]) if found else None


def _left_out(journal: Journal, root: str | None, first: str, last: str) -> list[Any]:
    """Photos of the sequence's source taken while it was being captured, left out of it."""
    marks = ", ".join("?" * len(LEFT_OUT))
    sql = (
        f"SELECT {_COLUMNS} FROM files WHERE sequence_id IS NULL AND state IN ({marks}) "
        "AND source_root IS ? AND json_extract(metadata, '$.capture_time') BETWEEN ? AND ? "
        "ORDER BY json_extract(metadata, '$.capture_time') LIMIT ?"
    )
    return [_photo(r) for r in journal.query(sql, (*LEFT_OUT, root, first, last, MAX_LEFT_OUT))]
