"""The map's data as the JSON text ``/api/map`` answers: each sequence's photo positions in
order, the photos outside any sequence (duplicates, set aside) that have a position, read
straight from the journal, and the GPX tracks the daemon knows (thinned: they are only drawn
behind the photos).

SQLite writes the positions out as JSON itself: 50,000 photos held as Python pairs of floats
were 5 MB of the daemon's memory while a page was open, their JSON text is under 1 MB.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from daemon.journal import Journal
from daemon.journal.clusters import image_url
from daemon.journal.meta import GPX_META
from daemon.media.gpx import GpxError, load_gpx

MAX_LOOSE = 5000  # marks beyond this say nothing more on a phone's screen
GPX_POINTS = 500  # per file: a line behind the photos needs no more


# A sequence's photos: their count, last change and sum of changes.
Version = tuple[int, float, float]
# Sequence uuid → the version its points were read at, and those points as JSON text.
KeptPoints = dict[str, tuple[Version, bytes]]


def read_tracks(journal_path: Path, kept: KeptPoints | None = None) -> bytes:
    """The map's JSON text: ``{"sequences": [{"uuid", "state", "reason", "cluster_id", "url",
    "points": [[lat, lon], ...]}], "photos": [{"lat", "lon", "name", "state", "reason"}],
    "gpx": [[[lat, lon], ...]]}``. ``kept``: points of earlier reads, read again only for
    sequences whose photos changed since (a daemon uploading changes a few at a time)."""
    journal = Journal.open_readonly(journal_path)
    try:
        seqs = _sequences(journal, {} if kept is None else kept)
        loose = journal.query(_LOOSE, (MAX_LOOSE,))[0][0]
        known = journal.query("SELECT value FROM settings WHERE key = ?", (GPX_META,))
    finally:
        journal.close()
    gpx = _gpx(json.loads(known[0][0]) if known else {})
    # One join of pieces that are the kept texts themselves: the answer is the one copy.
    return b"".join(
        (b'{"sequences": [', *seqs, b'], "photos": ', loose.encode(), b', "gpx": [')
        + (b", ".join(gpx), b"]}")
    )


def _gpx(known: dict[str, str]) -> list[bytes]:
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
def _gpx_line(path: str, mtime: float, size: int) -> bytes:
    """A GPX file's points, thinned, as JSON text (b"" for none); read once per version of
    the file."""
    try:
        track = load_gpx(path)
    except (GpxError, OSError, ValueError):
        return b""  # the processing stage says why; the map just leaves it out
    step = max(1, len(track.lats) // GPX_POINTS)
    points = [[track.lats[i], track.lons[i]] for i in range(0, len(track.lats), step)]
    return json.dumps(points).encode() if points else b""


def _sequences(journal: Journal, kept: KeptPoints) -> list[bytes]:
    """The pieces of JSON text that, joined, list each sequence with its photos' positions
    in order, as [lat, lon] (to 0.1 m); the page asks for a clicked sequence's photos by
    themselves."""
    seqs: dict[str, dict[str, Any]] = {}
    for uuid, state, reason, cluster, first in journal.query(_SEQUENCES):
        seqs[uuid] = {"uuid": uuid, "state": state, "reason": reason, "cluster_id": cluster}
        seqs[uuid]["url"] = image_url(first)  # on the map: the viewer at its first photo
    for (seq,) in journal.query(_UPLOADING):
        seqs[seq]["state"] = "uploading"
    points = _points(journal, list(seqs), kept)
    pieces: list[bytes] = []
    for s in seqs.values():
        # The sequence's own fields, then its points spliced in as SQLite wrote them.
        head = json.dumps(s)[:-1].encode() + b', "points": '
        pieces += (b", " if pieces else b"", head, points[s["uuid"]], b"}")
    return pieces


def _points(journal: Journal, uuids: list[str], kept: KeptPoints) -> dict[str, bytes]:
    # Reading positions parses each photo's metadata (~5 µs a photo): only where it changed.
    changed: dict[str, Version] = {
        s: (n, last, total) for s, n, last, total in journal.query(_VERSIONS)
    }
    for uuid in set(kept) - set(changed):
        kept.pop(uuid, None)  # gone (another tab's read may have dropped it first)
    points = {}
    for uuid in uuids:
        version = changed.get(uuid, (0, 0.0, 0.0))
        hit = kept.get(uuid)
        if hit is None or hit[0] != version:
            hit = kept[uuid] = (version, journal.query(_POSITIONS, (uuid,))[0][0].encode())
        points[uuid] = hit[1]
    return points


_SEQUENCES = (
    "SELECT s.uuid, s.state, s.reason, s.cluster_id, (SELECT f.image_id FROM cluster_files f "
    "WHERE f.cluster_id = c.cluster_id ORDER BY f.position LIMIT 1) FROM sequences s "
    "LEFT JOIN clusters c ON c.sequence_uuid = s.uuid AND c.mapillary_sequence IS NOT NULL "
    "ORDER BY s.created_at, s.rowid"
)
# An aggregate over a subquery with ORDER BY: SQLite keeps the subquery's order (it does not
# flatten such a subquery into an aggregate), the photos' order in the sequence.
_POSITIONS = (
    "SELECT json_group_array(json_array(lat, lon)) FROM ("
    "SELECT round(json_extract(metadata, '$.lat'), 6) AS lat, "
    "round(json_extract(metadata, '$.lon'), 6) AS lon FROM files "
    "WHERE sequence_id = ? ORDER BY seq_index) WHERE lat IS NOT NULL AND lon IS NOT NULL"
)
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
_LOOSE = (
    "SELECT json_group_array(json_object('lat', lat, 'lon', lon, 'name', name, "
    "'state', state, 'reason', reason)) FROM ("
    "SELECT state, reason, json_extract(metadata, '$.filename') AS name, "
    "json_extract(metadata, '$.lat') AS lat, json_extract(metadata, '$.lon') AS lon FROM files "
    "WHERE sequence_id IS NULL AND json_extract(metadata, '$.lat') IS NOT NULL "
    "ORDER BY updated_at DESC LIMIT ?)"
)
