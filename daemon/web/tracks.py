"""The map's data: each sequence's photo positions in order, and the photos outside any
sequence (duplicates, set aside) that have a position, read straight from the journal."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

MAX_LOOSE = 5000  # marks beyond this say nothing more on a phone's screen


def read_tracks(journal_path: Path) -> dict[str, Any]:
    uri = f"file:{quote(str(journal_path))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=10)
    try:
        return {"sequences": _sequences(conn), "photos": _loose(conn)}
    finally:
        conn.close()


def _sequences(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    seqs: dict[str, dict[str, Any]] = {}
    for uuid, state, reason in conn.execute(
        "SELECT uuid, state, reason FROM sequences ORDER BY created_at, rowid"
    ):
        seqs[uuid] = {"uuid": uuid, "state": state, "reason": reason, "points": []}
    for seq, state, name, lat, lon in conn.execute(
        "SELECT sequence_id, state, json_extract(metadata, '$.filename'), "
        "json_extract(metadata, '$.lat'), json_extract(metadata, '$.lon') FROM files "
        "WHERE sequence_id IS NOT NULL ORDER BY sequence_id, seq_index"
    ):
        if seq in seqs and lat is not None and lon is not None:
            seqs[seq]["points"].append({"lat": lat, "lon": lon, "name": name, "state": state})
    return list(seqs.values())


def _loose(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return [
        {"lat": lat, "lon": lon, "name": name, "state": state, "reason": reason}
        for state, reason, name, lat, lon in conn.execute(
            "SELECT state, reason, json_extract(metadata, '$.filename'), "
            "json_extract(metadata, '$.lat'), json_extract(metadata, '$.lon') FROM files "
            "WHERE sequence_id IS NULL AND json_extract(metadata, '$.lat') IS NOT NULL "
            "ORDER BY updated_at DESC LIMIT ?",
            (MAX_LOOSE,),
        )
    ]
