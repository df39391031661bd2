"""Batch planning: a pipeline result → the journal changes it makes. Pure: no I/O, no clock.

A batch is every imported photo of one source root (a watch folder or a card) plus the photos of
that root still waiting for a position. The daemon reads the photos and runs ``run_pipeline``;
what this module decides from the result is written to the journal in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.journal import FileRow, FileState, StateChange
from daemon.media.errors import one_line
from daemon.pipeline import PipelineResult
from daemon.pipeline.describe import describe
from daemon.pipeline.provenance import Provenance
from daemon.pipeline.records import BAD_METADATA, NO_POSITION, OUTSIDE_TRACK, ImageRecord

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
    provenance: Provenance = field(default_factory=Provenance)  # of the photos described

    def add(self, other: BatchOutcome) -> None:
        """Count a piece of the same batch in (a root planned a chunk at a time)."""
        self.provenance.merge(other.provenance)
        self.sequences += other.sequences
        self.images += other.images
        self.duplicates += other.duplicates
        self.waiting += other.waiting
        for kind, n in other.rejected.items():
            self.rejected[kind] = self.rejected.get(kind, 0) + n


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
    """Journal changes for a pipeline result. ``names`` maps content hashes to the photos'
    original file names."""
    names = names or {}
    changes: list[StateChange] = []
    sequences: list[tuple[str, list[str]]] = []
    outcome = BatchOutcome(root="")
    for seq in result.sequences:
        hashes = []
        for r in seq:
            assert r.content_hash is not None
            try:
                meta = _metadata(r, describe(r), names.get(r.content_hash))
            except Exception as exc:  # the fence: a photo that cannot be described costs itself
                # Pure and deterministic, so trying again would fail again: rejected at once.
                why = f"unexpected error while describing: {one_line(exc)}"
                changes.append(StateChange(r.content_hash, FileState.REJECTED, why))
                outcome.rejected[BAD_METADATA] = outcome.rejected.get(BAD_METADATA, 0) + 1
                continue
            changes.append(
                StateChange(r.content_hash, FileState.DESCRIBED, None, {"metadata": meta})
            )
            hashes.append(r.content_hash)
            outcome.provenance.add(r)
        if hashes:
            sequences.append((seq[0].sequence or "", hashes))
            outcome.sequences += 1
            outcome.images += len(hashes)
    for r in result.duplicates:
        assert r.content_hash is not None and r.error is not None
        # Where and when it was taken, so the status page can mark it on the map.
        meta = {
            "filename": names.get(r.content_hash) or r.filename,
            "capture_time": r.capture_time.isoformat() if r.capture_time else None,
            "lat": r.lat,
            "lon": r.lon,
        }
        changes.append(StateChange(r.content_hash, FileState.DESCRIBED, None, {"metadata": meta}))
        changes.append(StateChange(r.content_hash, FileState.DUPLICATE, r.error.message))
        outcome.duplicates += 1
    for r in result.set_aside:
        assert r.content_hash is not None and r.error is not None
        waited = now - first_seen.get(r.content_hash, now)
        if r.error.type in CURABLE and waited < position_wait:
            left = position_wait - waited
            reason = f"{r.error.message}; waiting {left / 3600:.1f} h more for a GPX that covers it"
            # Its capture time lets `status` say which span no track covers yet.
            when = {"capture_time": r.capture_time.isoformat() if r.capture_time else None}
            changes.append(
                StateChange(
                    r.content_hash, FileState.WAITING_FOR_POSITION, reason, {"metadata": when}
                )
            )
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
    root: str, rows: list[FileRow], result: PipelineResult, position_wait: float, now: float
) -> BatchPlan:
    """The plan of a root's journal ``rows`` once the pipeline has judged their photos."""
    origin = {r.hash: r.paths[0] if r.paths else r.readable_path for r in rows}
    names = {h: Path(p).name for h, p in origin.items()}
    first_seen = {r.hash: r.created_at for r in rows}
    changes, sequences, outcome = plan_changes(result, first_seen, position_wait, now, names)
    outcome.root = root
    # Every photo rejected now, also one whose wait for a position just ran out.
    rejected = [
        (c.hash, origin.get(c.hash, c.hash), c.reason or "")
        for c in changes
        if c.state == FileState.REJECTED
    ]
    return BatchPlan(root, changes, sequences, rejected, outcome)


def tail_from_last_sequence(plan: BatchPlan, rows: list[FileRow], chunk: int) -> list[FileRow]:
    """The rows of a chunk from the first photo of its last sequence on (recorded order is a
    camera's order): planned again with the next chunk, so a sequence (and a stop full of
    duplicates) running across the chunk's end is not cut there. Empty if that is most of it."""
    if not plan.sequences:
        return []
    last = set(plan.sequences[-1][1])
    start = next(i for i, r in enumerate(rows) if r.hash in last)
    return rows[start:] if len(rows) - start <= chunk // 2 else []
