"""A root with more photos than PROCESS_CHUNK is planned piece by piece (bounded memory), and
the journal ends as it would have with the whole root at once: same sequences, same photos."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from daemon.core import config
from daemon.demo.drive import plan_drive, write_drive
from daemon.runtime import process as service
from daemon.runtime.daemon import Daemon


def sequences(journal: Path) -> list[list[str]]:
    """Each sequence's photos (file names), in sequence order, sequences by first photo."""
    with sqlite3.connect(journal) as db:
        rows = db.execute(
            "SELECT f.sequence_id, json_extract(f.metadata, '$.filename') FROM files f "
            "WHERE f.sequence_id IS NOT NULL ORDER BY f.sequence_id, f.seq_index"
        ).fetchall()
    out: dict[str, list[str]] = {}
    for uuid, name in rows:
        out.setdefault(uuid, []).append(name)
    return sorted(out.values())


async def planned_once(
    folder: Path, work: Path, chunk: int, monkeypatch: pytest.MonkeyPatch, **given: Any
) -> Daemon:
    """The daemon run once in this process over ``folder`` (journal and spool in ``work``),
    planning ``chunk`` photos at a time; nothing is uploaded. ``given``: more settings."""
    monkeypatch.setattr(service, "PROCESS_CHUNK", chunk)
    settings = config.Settings(
        watch=[folder],
        journal=work / "journal.sqlite3",
        spool=work / "spool",
        settle_seconds=0.2,
        batch_quiet_seconds=0.2,
        min_free_mb=1,
        upload_delay=1e9,  # only the planning matters here
        **given,
    )
    daemon = Daemon(settings, once=True)
    await daemon.startup()
    try:
        await daemon.main()
    finally:
        await daemon.shutdown()
    return daemon


async def process(tmp: Path, folder: Path, chunk: int, monkeypatch: pytest.MonkeyPatch) -> Daemon:
    """``folder`` planned ``chunk`` photos at a time, in a work folder of its own."""
    work = tmp / f"work-{chunk}"
    return await planned_once(folder, work, chunk, monkeypatch, tz="+02:00", max_images=7)


async def test_a_root_planned_in_chunks_ends_as_planned_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drive = plan_drive(datetime(2024, 6, 1, 7, 0, tzinfo=UTC), seed=5, interval_s=2.0)
    folder = tmp_path / "in"
    photos = write_drive(drive, folder, with_gps_in_exif=True, gpx_name=None)
    assert len(photos) > 60
    whole = await process(tmp_path, folder, 100_000, monkeypatch)
    pieces = await process(tmp_path, folder, 80, monkeypatch)
    expected = sequences(tmp_path / "work-100000" / "journal.sqlite3")
    assert sum(map(len, expected)) > 40 and len(expected) > 6
    assert sequences(tmp_path / "work-80" / "journal.sqlite3") == expected
    # One batch, counted once, however many pieces it took.
    assert pieces.stats.figures() == whole.stats.figures()
    assert pieces.stats.sequences == len(expected)
