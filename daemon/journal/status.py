"""What `status --json` prints and the status page's ``/api/status`` serves: one implementation.

Reads the journal read-only (never writes), so it works next to the running daemon. The journal's
own path is left out: the page may be seen from another machine and needs no file names of ours.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from daemon.journal.clusters import image_url
from daemon.journal.meta import RUNTIME_META
from daemon.journal.store import Journal


def status_json(journal_path: Path, errors: int) -> dict[str, Any]:
    """Everything `status` shows, as one JSON-serialisable dict."""
    journal = Journal.open_readonly(journal_path)
    try:
        summary = journal.summary(errors=errors)
        runtime = journal.get_meta(RUNTIME_META, {}) or {}
        events = journal.recent_events(errors)
    finally:
        journal.close()
    pid = runtime.get("pid") or 0  # none recorded: not running
    runtime["running"] = bool(pid) and alive(int(pid)) and not runtime.get("stopped")
    # A stopped daemon uploads nothing: its last rate would promise an ETA that is not coming.
    rate = (runtime.get("upload_rate") or 0.0) if runtime["running"] else 0.0
    left = summary["bytes_to_upload"]
    summary["eta_seconds"] = round(left / rate) if rate > 0 and left else None
    summary["daemon"] = runtime
    # Files set aside before they reached the journal's file table (cut off, unreadable).
    summary["recent_events"] = [{"at": e.at, "kind": e.kind, "message": e.message} for e in events]
    return summary


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sequence_json(journal_path: Path, uuid: str) -> dict[str, Any] | None:
    """One sequence for `status --sequence UUID`: its state, cluster and, once Mapillary has
    processed it, its link and each photo's (None for a sequence the journal does not know)."""
    journal = Journal.open_readonly(journal_path)
    try:
        row = journal.get_sequence(uuid)
        if row is None:
            return None
        cluster = journal.get_cluster(uuid) if row.cluster_id else None
        photos = journal.published(uuid) if cluster is not None else []
    finally:
        journal.close()
    first = photos[0]["image_id"] if photos else None
    on_map = cluster is not None and cluster.mapillary_sequence is not None
    return {
        "uuid": row.uuid,
        "state": str(row.state),
        "reason": row.reason,
        "images": row.image_count,
        "cluster_id": row.cluster_id,
        "finished_at": row.finished_at,
        "mapillary_sequence": cluster.mapillary_sequence if cluster else None,
        "url": image_url(first) if on_map else None,
        "note": cluster.note if cluster else None,
        "next_check": cluster.next_check if cluster else None,
        "photos": photos,
    }
