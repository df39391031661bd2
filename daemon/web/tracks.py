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

from daemon.journal.clusters import image_url
from daemon.journal.meta import GPX_META
from daemon.media.gpx import GpxError, load_gpx

MAX_LOOSE = 5000  # marks beyond this say nothing more on a phone's screen
GPX_POINTS = 500  # per file: a line behind the photos needs no more


Points = list[tuple[float, float]]
# Sequence uuid → (its photos' count, last change and sum of changes, their positions).
KeptPoints = dict[str, tuple[tuple[int, float, float], Points]]


def read_tracks(journal_path: Path, kept: KeptPoints | None = None) -> dict[str, Any]:
    """The map's data. ``kept``: positions of earlier reads, read again only for sequences
    whose photos changed since (a daemon uploading changes a few at a time)."""
    uri = f"file:{quote(str(journal_path))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=10)
    try:
        seqs = _sequences(conn, {} if kept is None else kept)
        tracks: dict[str, Any] = {"sequences": seqs, "photos": _loose(conn)}
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


def _sequences(conn: sqlite3.Connection, kept: KeptPoints) -> list[dict[str, Any]]:
    """Each sequence with its photos' positions in order, as [lat, lon] (to 0.1 m: 50,000
    photos are 1 MB); the page asks for a clicked sequence's photos by themselves."""
    seqs: dict[str, dict[str, Any]] = {}
    for uuid, state, reason, cluster, first in conn.execute(
        "SELECT s.uuid, s.state, s.reason, s.cluster_id, (SELECT f.image_id FROM cluster_files f "
        "WHERE f.cluster_id = c.cluster_id ORDER BY f.position LIMIT 1) FROM sequences s "
        "LEFT JOIN clusters c ON c.sequence_uuid = s.uuid AND c.mapillary_sequence IS NOT NULL "
        "ORDER BY s.created_at, s.rowid"
    ):
        seqs[uuid] = {"uuid": uuid, "state": state, "reason": reason, "cluster_id": cluster}
        seqs[uuid]["url"] = image_url(first)  # on the map: the viewer at its first photo
    _points(conn, seqs, kept)
    for (seq,) in conn.execute(_UPLOADING):
        seqs[seq]["state"] = "uploading"
    return list(seqs.values())


def _points(conn: sqlite3.Connection, seqs: dict[str, dict[str, Any]], kept: KeptPoints) -> None:
    # Reading positions parses each photo's metadata (~5 µs a photo): only where it changed.
    changed = {seq: (n, last, total) for seq, n, last, total in conn.execute(_VERSIONS)}
    for uuid in set(kept) - set(changed):
        kept.pop(uuid, None)  # gone (another tab's read may have dropped it first)
    for uuid, entry in seqs.items():
        version = changed.get(uuid, (0, 0.0, 0.0))
        hit = kept.get(uuid)
        if hit is None or hit[0] != version:
            hit = kept[uuid] = (version, _positions(conn, uuid))
        entry["points"] = hit[1]


def _positions(conn: sqlite3.Connection, uuid: str) -> Points:
    return [
        (lat, lon)
        for lat, lon in conn.execute(
            "SELECT round(json_extract(metadata, '$.lat'), 6), "
            "round(json_extract(metadata, '$.lon'), 6) FROM files "
            "WHERE sequence_id = ? ORDER BY seq_index",
            (uuid,),
        )
        if lat is not None and lon is not None
    ]


# The sum too: a change stamped earlier than the last one (a Pi without a clock, set back
# at boot to the time it saved) moves no max but does move the sum.
_VERSIONS = (
    "SELECT sequence_id, count(*), max(updated_at), total(updated_at) FROM files "
    "WHERE sequence_id IS NOT NULL GROUP BY sequence_id"
)
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
