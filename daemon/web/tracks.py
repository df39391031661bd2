"""The map's data: each sequence's photo positions in order, the photos outside any sequence
(duplicates, set aside) that have a position, read straight from the journal, and the GPX
tracks the daemon knows (thinned: they are only drawn behind the photos)."""

from __future__ import annotations

import json
import os
import sqlite3
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from daemon.journal.meta import GPX_META
from daemon.media.gpx import GpxError, load_gpx

MAX_LOOSE = 5000  # marks beyond this say nothing more on a phone's screen
GPX_POINTS = 500  # per file: a line behind the photos needs no more


def read_tracks(journal_path: Path) -> dict[str, Any]:
    uri = f"file:{quote(str(journal_path))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=10)
    try:
        tracks: dict[str, Any] = {"sequences": _sequences(conn), "photos": _loose(conn)}
        known = conn.execute("SELECT value FROM settings WHERE key = ?", (GPX_META,)).fetchall()
    finally:
        conn.close()
    tracks["gpx"] = _gpx(json.loads(known[0][0]) if known else {})
    return tracks


def _gpx(known: dict[str, str]) -> list[list[list[float]]]:
    lines = []
    for path in sorted(set(known.values())):
        try:
            st = os.stat(path)
        except OSError:
            continue  # a card's GPX, gone with the card
        line = _gpx_line(path, st.st_mtime, st.st_size)
        if line:
            lines.append(line)
    return lines


@lru_cache(maxsize=64)
def _gpx_line(path: str, mtime: float, size: int) -> list[list[float]]:
    """A GPX file's points, thinned; read once per version of the file."""
    try:
        track = load_gpx(path)
    except (GpxError, OSError, ValueError):
        return []  # the processing stage says why; the map just leaves it out
    step = max(1, len(track.lats) // GPX_POINTS)
    return [[track.lats[i], track.lons[i]] for i in range(0, len(track.lats), step)]


def _sequences(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Each sequence with its photos' positions in order, as [lat, lon] (to 0.1 m: 50,000
    photos are 1 MB); the page asks for a clicked sequence's photos by themselves."""
    seqs: dict[str, dict[str, Any]] = {}
    for uuid, state, reason, cluster in conn.execute(
        "SELECT uuid, state, reason, cluster_id FROM sequences ORDER BY created_at, rowid"
    ):
        seqs[uuid] = {"uuid": uuid, "state": state, "reason": reason, "cluster_id": cluster}
        seqs[uuid]["points"] = []
    for seq, lat, lon in conn.execute(
        "SELECT sequence_id, round(json_extract(metadata, '$.lat'), 6), "
        "round(json_extract(metadata, '$.lon'), 6) FROM files "
        "WHERE sequence_id IS NOT NULL ORDER BY sequence_id, seq_index"
    ):
        if seq in seqs and lat is not None and lon is not None:
            seqs[seq]["points"].append((lat, lon))
    for (seq,) in conn.execute(_UPLOADING):
        seqs[seq]["state"] = "uploading"
    return list(seqs.values())


# A waiting sequence some of whose photos have started to go up (or are up): uploading.
_UPLOADING = (
    "SELECT DISTINCT s.uuid FROM sequences s JOIN files f ON f.sequence_id = s.uuid "
    "JOIN uploads u ON u.file_hash = f.hash WHERE s.state = 'pending'"
)


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
