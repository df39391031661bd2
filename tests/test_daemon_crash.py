"""Crash test: SIGKILL the daemon at random (seeded) moments, restart it, and nothing is lost or
sent twice.

About 320 photos (a watch folder written before the first start, a card inserted while the
daemon runs), cut into sequences of at most 40, go to a server whose bandwidth is capped so the
kills land during imports, processing and uploads alike. After the last kill one `run --once`
finishes the work; the server must then hold every photo exactly once and every sequence once,
and the journal must be intact.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.demo.drive import plan_drive, write_drive
from daemon.server.config import ServerConfig
from daemon.server.runner import ServerThread
from tests.daemon_proc import TOKEN, DaemonProc, base_env

CYCLES = 21
SEED = 20240601
START = datetime(2024, 6, 1, 7, 0, 0, tzinfo=UTC)

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]


def cut_short(events: list[dict]) -> set[str]:
    """What a killed run was in the middle of."""
    names = [e.get("event") for e in events]
    cut = set()
    if names.count("sequence_upload_start") > names.count("sequence_finished"):
        cut.add("uploading")
    if "card_inserted" in names and "card_imported" not in names:
        cut.add("importing a card")
    if "daemon_started" not in names:
        cut.add("starting")
    return cut or {str(names[-1])}


def test_sigkill_at_random_moments_loses_nothing_and_sends_nothing_twice(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    inbox, media = tmp_path / "in", tmp_path / "media"
    media.mkdir()
    size = {"jpeg_size": (320, 240), "quality": 90}  # ~70 KB each
    folder = write_drive(plan_drive(START, seed=1, stop_s=10, break_s=300), inbox, **size)
    staged = tmp_path / "staging" / "CARD1"
    later = START + timedelta(hours=3)
    card = write_drive(
        plan_drive(later, seed=2, stop_s=10, break_s=300),
        staged / "DCIM" / "100GOPRO",
        name_pattern="C%07d.JPG",
        **size,
    )
    photos = folder + card
    assert len(photos) >= 300
    # ~22 MB at 1.5 MB/s: the uploads take many cycles.
    config = ServerConfig(tokens=(TOKEN,), bandwidth=1_500_000, latency_ms=5, seed=SEED)
    with ServerThread(config) as server:
        d = DaemonProc(
            tmp_path / "work",
            base_env(server.environment()),
            [
                *("--watch", str(inbox), "--mount-root", str(media), "--tz", "+02:00"),
                *("--settle-seconds", "0.3", "--batch-quiet-seconds", "0.5"),
                *("--max-images", "40"),
            ],
        )
        d.work.mkdir()
        where: list[set[str]] = []
        try:
            for cycle in range(CYCLES):
                d.start()
                if cycle == 2:
                    time.sleep(0.8)  # up and watching: the card is "mounted" under it
                    os.rename(staged, media / "CARD1")
                    # Kill while it copies: the ~11 MB card takes well under a second, so
                    # the kill is timed from the daemon noticing the card, not from the rename.
                    d.wait_event("card_inserted", 10)
                    delay = rng.uniform(0.0, 0.15)
                else:
                    delay = rng.uniform(1.0, 3.5)  # start-up takes ~1.3 s of it
                time.sleep(delay)
                d.kill()
                where.append(cut_short(d.events()))
            assert (media / "CARD1").exists()
            done = d.once(timeout=90)
        finally:
            d.kill()
        assert done.returncode == 0, done.stderr[-3000:]
        stats = server.stats()
        stored = list(server.server.store.images.values())
    print("kills landed:", where)
    # The cap makes uploads long and a card takes a while to copy: kills land in both.
    assert any("uploading" in w for w in where) and any("importing a card" in w for w in where)
    # Every photo journaled once, uploaded once or skipped as a duplicate of its neighbour.
    assert d.query("SELECT count(*) FROM files")[0][0] == len(photos)
    assert d.query("SELECT count(*) FROM file_paths")[0][0] == len(photos)
    states = dict(d.query("SELECT state, count(*) FROM files GROUP BY state"))
    assert set(states) <= {"finished", "duplicate"}, states
    seqs = dict(d.query("SELECT state, count(*) FROM sequences GROUP BY state"))
    assert set(seqs) == {"finished"}, seqs
    # The server: each image exactly once, each sequence finished once.
    assert stats["duplicate_images"] == 0 and stats["duplicate_sequences"] == 0
    assert stats["images"] == states["finished"]
    assert stats["sequences"] == seqs["finished"]
    names = [i.filename for i in stored]
    assert len(set(names)) == len(names)
    finished = {
        Path(p).name
        for (p,) in d.query(
            "SELECT p.path FROM file_paths p JOIN files f ON f.hash = p.hash "
            "WHERE f.state = 'finished'"
        )
    }
    assert set(names) == finished
    db = sqlite3.connect(f"file:{d.journal}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        db.close()
    # Nothing half-copied left in the spool, and no card file touched.
    assert not [p for p in d.spool.rglob(".import-*")]
    assert sorted(p.name for p in (media / "CARD1" / "DCIM" / "100GOPRO").iterdir()) == sorted(
        [p.name for p in card] + ["track.gpx"]
    )
