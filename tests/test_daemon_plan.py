"""The daemon's batch planning, without a daemon: what a pipeline result writes to the journal,
and what status shows of each root."""

from __future__ import annotations

import doctest
from pathlib import Path

from daemon.journal import FileState
from daemon.pipeline import PipelineResult
from daemon.pipeline.plan import BatchOutcome, plan_changes
from daemon.pipeline.records import NO_POSITION, ImageRecord
from daemon.runtime import roots
from daemon.runtime.roots import RootState, shown_states

HOUR = 3600.0


def no_position(name: str) -> ImageRecord:
    record = ImageRecord(Path(name)).replace(content_hash=name)
    return record.set_aside(NO_POSITION, "no GPS position in its EXIF")


def test_doctests() -> None:
    assert doctest.testmod(roots).failed == 0


def test_a_photo_without_position_waits_for_a_gpx_until_its_wait_runs_out() -> None:
    result = PipelineResult([], [], [no_position("new.jpg"), no_position("old.jpg")])
    now = 100 * HOUR
    first_seen = {"new.jpg": now - HOUR, "old.jpg": now - 30 * HOUR}
    changes, sequences, outcome = plan_changes(result, first_seen, 24 * HOUR, now)
    states = {c.hash: c.state for c in changes}
    assert states == {"new.jpg": FileState.WAITING_FOR_POSITION, "old.jpg": FileState.REJECTED}
    assert "waiting 23.0 h more" in next(c.reason or "" for c in changes if c.hash == "new.jpg")
    assert sequences == []
    assert (outcome.waiting, outcome.rejected) == (1, {NO_POSITION: 1})


def test_a_batch_planned_in_pieces_counts_as_one() -> None:
    total = BatchOutcome("/card")
    total.add(BatchOutcome("/card", sequences=2, images=9, rejected={NO_POSITION: 1}))
    total.add(BatchOutcome("/card", sequences=1, images=3, waiting=2, rejected={NO_POSITION: 2}))
    assert (total.sequences, total.images, total.waiting) == (3, 12, 2)
    assert total.rejected == {NO_POSITION: 3}


def test_status_shows_our_note_unless_the_sources_say_more() -> None:
    live = {"/watch": "watching, 3 file(s) settling", "/media/CARD": "card A: importing"}
    notes = {"/watch": RootState.IDLE, "/media/CARD": RootState.CARD_IMPORTED}
    shown = shown_states(live, notes)
    assert shown == {"/watch": live["/watch"], "/media/CARD": "card imported: you may remove it"}
