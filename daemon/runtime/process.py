"""The daemon's pipeline step: journal files of a settled batch → described, sequenced or set aside.

A batch is every imported photo of one source root (a watch folder or a card) plus the photos of
that root still waiting for a position. Reading EXIF and GPX happens here (in a worker thread);
the decisions are the pure stages of ``daemon.pipeline``; the results go to the journal in one
transaction per batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.core import log
from daemon.journal import FileRow, FileState, Journal, StateChange
from daemon.media.gpx import GpxError, Track, load_gpx_files
from daemon.media.load import load_record
from daemon.pipeline import PipelineOptions, PipelineResult, run_pipeline
from daemon.pipeline.dates import parse_zone
from daemon.pipeline.describe import describe
from daemon.pipeline.records import NO_POSITION, OUTSIDE_TRACK, ImageRecord

# Reasons that a later GPX file can cure: such photos wait (up to position_wait) instead of
# being rejected at once.
CURABLE = frozenset({NO_POSITION, OUTSIDE_TRACK})


@dataclass
class BatchOutcome:
    """What one batch turned into, for logs, status and the demo's summary."""

    root: str
    sequences: int = 0
    images: int = 0
    duplicates: int = 0
    waiting: int = 0
    rejected: dict[str, int] = field(default_factory=dict)


class GpxLibrary:
    """Every GPX file the daemon knows, merged into one track (rebuilt only when files change).

    The file list changes on the event loop (``add``); the track is built in a worker thread
    from a ``snapshot`` taken on the loop, so the two never share a dict being changed, and a
    file added during a build makes a new ``version`` that the next build picks up.
    """

    def __init__(self) -> None:
        self._paths: dict[str, str] = {}  # content hash → readable path
        self.version = 0
        self._built: tuple[int, Track | None] = (-1, None)

    def load_known(self, known: dict[str, str]) -> None:
        self._paths.update(known)
        self.version += 1

    def add(self, file_hash: str, path: str) -> bool:
        """Add a GPX file; True if it is new (so waiting photos deserve another look)."""
        if self._paths.get(file_hash) == path:
            return False
        self._paths[file_hash] = path
        self.version += 1
        return True

    @property
    def known(self) -> dict[str, str]:
        return dict(self._paths)

    def snapshot(self) -> tuple[int, list[str]]:
        return self.version, list(self._paths.values())

    def build(self, version: int, paths: list[str]) -> Track | None:
        """The merged track of a snapshot (worker thread); unreadable files are logged and left
        out."""
        if self._built[0] == version:
            return self._built[1]
        good = []
        for path in paths:
            try:
                load_gpx_files([Path(path)])
                good.append(Path(path))
            except (GpxError, OSError) as exc:
                log.get("gpx").warning("gpx_unusable", file=path, reason=str(exc))
        track = load_gpx_files(good) if good else None
        self._built = (version, track)
        return track


def _load(rows: list[FileRow], tz: str | None) -> list[ImageRecord]:
    zone, label = parse_zone(tz)
    records = []
    for row in rows:
        record = load_record(Path(row.readable_path), zone, label)
        records.append(record.replace(content_hash=row.hash))
    return records


def _first_seen(rows: list[FileRow]) -> dict[str, float]:
    return {r.hash: r.created_at for r in rows}


def _metadata(
    record: ImageRecord, description: dict[str, Any], name: str | None = None
) -> dict[str, Any]:
    # A card photo is read from the spool under its hash: the user's own name goes up instead.
    if name:
        description = {**description, "MAPFilename": name}
    return {
        "filename": name or record.filename,
        "capture_time": record.capture_time.isoformat() if record.capture_time else None,
        "lat": record.lat,
        "lon": record.lon,
        "zone": record.zone,
        "position_source": record.position_source,
        "description": description,
    }


def plan_changes(
    result: PipelineResult,
    first_seen: dict[str, float],
    position_wait: float,
    now: float,
    names: dict[str, str] | None = None,
) -> tuple[list[StateChange], list[tuple[str, list[str]]], BatchOutcome]:
    """Journal changes for a pipeline result: pure, so it is easy to test and reason about.
    ``names`` maps content hashes to the photos' original file names."""
    names = names or {}
    changes: list[StateChange] = []
    sequences: list[tuple[str, list[str]]] = []
    outcome = BatchOutcome(root="")
    for seq in result.sequences:
        hashes = []
        for r in seq:
            assert r.content_hash is not None
            meta = _metadata(r, describe(r), names.get(r.content_hash))
            changes.append(
                StateChange(r.content_hash, FileState.DESCRIBED, None, {"metadata": meta})
            )
            hashes.append(r.content_hash)
        sequences.append((seq[0].sequence or "", hashes))
        outcome.sequences += 1
        outcome.images += len(seq)
    for r in result.duplicates:
        assert r.content_hash is not None and r.error is not None
        meta = {"filename": names.get(r.content_hash) or r.filename}
        changes.append(StateChange(r.content_hash, FileState.DESCRIBED, None, {"metadata": meta}))
        changes.append(StateChange(r.content_hash, FileState.DUPLICATE, r.error.message))
        outcome.duplicates += 1
    for r in result.set_aside:
        assert r.content_hash is not None and r.error is not None
        waited = now - first_seen.get(r.content_hash, now)
        if r.error.type in CURABLE and waited < position_wait:
            left = position_wait - waited
            reason = f"{r.error.message}; waiting {left / 3600:.1f} h more for a GPX that covers it"
            changes.append(StateChange(r.content_hash, FileState.WAITING_FOR_POSITION, reason))
            outcome.waiting += 1
        else:
            changes.append(StateChange(r.content_hash, FileState.REJECTED, r.error.message))
            outcome.rejected[r.error.type] = outcome.rejected.get(r.error.type, 0) + 1
    return changes, sequences, outcome


@dataclass
class BatchPlan:
    """Everything one batch will write to the journal, decided before touching it."""

    root: str
    changes: list[StateChange]
    sequences: list[tuple[str, list[str]]]
    rejected: list[tuple[str, str, str]]  # (hash, original path, reason)
    outcome: BatchOutcome


def plan_batch(
    root: str,
    rows: list[FileRow],
    track: Track | None,
    options: PipelineOptions,
    position_wait: float,
) -> BatchPlan:
    """Read the photos and run the pipeline (blocking I/O: call it from a worker thread)."""
    records = _load(rows, options.tz)
    result = run_pipeline(records, track, options)
    origin = {r.hash: r.paths[0] if r.paths else r.readable_path for r in rows}
    names = {h: Path(p).name for h, p in origin.items()}
    changes, sequences, outcome = plan_changes(
        result, _first_seen(rows), position_wait, time.time(), names
    )
    outcome.root = root
    # Every photo rejected now, also one whose wait for a position just ran out.
    rejected = [
        (c.hash, origin.get(c.hash, c.hash), c.reason or "")
        for c in changes
        if c.state == FileState.REJECTED
    ]
    return BatchPlan(root, changes, sequences, rejected, outcome)


def apply_plan(journal: Journal, plan: BatchPlan) -> None:
    """Journal a batch in one transaction: all of it, or (on error) none of it."""
    with journal.transaction():
        journal.set_file_states(plan.changes)
        for uuid, hashes in plan.sequences:
            journal.create_sequence(uuid, hashes, source_root=plan.root)
        for file_hash, path, reason in plan.rejected:
            journal.record_event("rejected", f"{path}: {reason}", file_hash)
