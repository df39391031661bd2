"""Chaos test: SIGKILL the daemon at whatever it is doing, 30+ times, and it still uploads every
photo exactly once.

Unlike tests/test_daemon_crash.py, whose kills are timed, each kill here is triggered by a
moment watched from outside: a spool temp file of a card copy appearing, a sequence upload
starting, image bodies reaching the server, upload handles or a manifest journaled, a sequence
finished. A seeded ``random.Random`` picks, for every cycle, one kind of moment among those
still to come (and how many of it to let pass); a bounded polling loop waits for it and the
daemon is SIGKILLed at once. A moment that does not come within its deadline gives way to a
kill at a random time, counted apart. While the card is being copied that copy is what the
daemon is mostly doing, so spool temps are then drawn far more often than the rest.

318 photos of ~70 KB (a watch folder written before the first start, a card renamed into the
mount root while the daemon runs) in sequences of at most 8 go to a server capped at 600 kB/s,
so uploads span many kills. After the last kill one `run --once` finishes the work; the server
must then hold every photo once (by file name and by the content it received) and every
sequence once, and the journal must be intact.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.demo.drive import plan_drive, write_drive
from daemon.intake.spool import TEMP_PREFIX, TEMP_SUFFIX
from daemon.server.config import ServerConfig
from daemon.server.runner import ServerThread
from tests.daemon_proc import TOKEN, DaemonProc, base_env

SEED = 42
START = datetime(2024, 6, 12, 7, 0, 0, tzinfo=UTC)
MAX_KILLS = 36  # cycles, unless the work runs out first
MIN_KILLS = 30
CARD_CYCLE = 2  # the card goes in while this cycle's daemon runs
DEADLINE = 20.0  # seconds a cycle waits for its moment (start-up included)
POLL = 0.01
JOURNAL_POLL = 0.03  # journal reads, which cost more
GIVE_UP_POLL = 0.5  # checks for a moment that can no longer come
BANDWIDTH = 600_000  # bytes/s: ~22 MB of photos take 35+ s of uploading

# The moments, with the weight of each in the draw while it can still come.
WEIGHTS = {
    "spool_temp": 30,  # a copy from the card appears in the spool (the n-th of this run)
    "upload_start": 2,  # sequence_upload_start logged (the n-th of this run)
    "bytes_sent": 2,  # the server has received n more body bytes than at the start
    "handles_journaled": 2,  # n more rows in the journal's uploads table
    "manifest_journaled": 2,  # n more sequences with their manifest key journaled
    "sequence_finished": 2,  # sequence_finished logged (the n-th of this run)
}
UPLOAD_KINDS = set(WEIGHTS) - {"spool_temp"}

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]


def read_journal(journal: Path, sql: str) -> list[tuple] | None:
    """A read-only query next to the running daemon; None while it cannot be read (not yet
    created, tables not there yet, or busy beyond a short timeout)."""
    if not journal.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=0.2)
    except sqlite3.OperationalError:
        return None
    try:
        return db.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return None
    finally:
        db.close()


def count(journal: Path, sql: str) -> int | None:
    rows = read_journal(journal, sql)
    return None if rows is None else int(rows[0][0])


JOURNALED = "SELECT count(*) FROM file_paths"
UPLOAD_ROWS = "SELECT count(*) FROM uploads"
MANIFESTS = "SELECT count(*) FROM sequences WHERE manifest_key IS NOT NULL"
UNFINISHED = (
    "SELECT (SELECT count(*) FROM files WHERE state NOT IN ('finished', 'duplicate'))"
    " + (SELECT count(*) FROM sequences WHERE state != 'finished')"
)


@dataclass
class LogTail:
    """The events of one run's JSON log (stderr), read as it grows."""

    path: Path
    offset: int = 0
    rest: bytes = b""
    seen: Counter[str] = field(default_factory=Counter)

    def poll(self) -> Counter[str]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return self.seen
        self.offset += len(data)
        *lines, self.rest = (self.rest + data).split(b"\n")
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                self.seen[str(entry.get("event"))] += 1
        return self.seen


def spool_temps(spool: Path, pid: int) -> set[str]:
    """This process's copies in flight (a killed run's leftovers carry another pid)."""
    mine = f"{TEMP_PREFIX}{pid}-"
    names: set[str] = set()
    for folder in (spool, spool / "gpx"):
        try:
            with os.scandir(folder) as entries:
                names.update(
                    e.name
                    for e in entries
                    if e.name.startswith(mine) and e.name.endswith(TEMP_SUFFIX)
                )
        except FileNotFoundError:
            pass
    return names


@dataclass
class Moment:
    """A kind of moment, how many of it to let pass, and the fallback kill time."""

    kind: str
    n: int
    fallback_s: float


def draw(rng: random.Random, kinds: list[str]) -> Moment:
    kind = rng.choices(kinds, weights=[WEIGHTS[k] for k in kinds])[0]
    n = {
        "spool_temp": rng.randint(1, 128),  # a card batch is 64 copies
        "upload_start": rng.randint(1, 3),
        "bytes_sent": rng.randint(1, 1_500_000),
        "handles_journaled": rng.randint(1, 24),  # handles are journaled 16 at a time
        "manifest_journaled": rng.randint(1, 2),
        "sequence_finished": rng.randint(1, 2),
    }[kind]
    return Moment(kind, n, rng.uniform(0.0, 1.5))


def all_done(journal: Path, photos: int) -> bool:
    """Every photo journaled, and uploaded (or a duplicate) in finished sequences."""
    return count(journal, JOURNALED) == photos and count(journal, UNFINISHED) == 0


def wait_and_kill(d: DaemonProc, server: ServerThread, moment: Moment, photos: int) -> str:
    """Watch the running daemon for ``moment`` and SIGKILL it as soon as it comes; what the
    kill was triggered by (the moment's kind, or a fallback)."""
    assert d.proc is not None
    pid, log = d.proc.pid, LogTail(d.work / f"run{d.runs}.err")
    base_bytes = server.stats()["bytes_received"]
    base_rows = {
        "handles_journaled": count(d.journal, UPLOAD_ROWS) or 0,
        "manifest_journaled": count(d.journal, MANIFESTS) or 0,
    }
    temps: set[str] = set()
    fired: dict[str, Callable[[], bool]] = {
        "spool_temp": lambda: len(temps) >= moment.n,
        "upload_start": lambda: log.seen["sequence_upload_start"] >= moment.n,
        "bytes_sent": lambda: server.stats()["bytes_received"] - base_bytes >= moment.n,
        "sequence_finished": lambda: log.seen["sequence_finished"] >= moment.n,
    }
    rows_sql = {"handles_journaled": UPLOAD_ROWS, "manifest_journaled": MANIFESTS}
    started = time.monotonic()
    next_read = next_check = started
    why = "deadline"
    while time.monotonic() - started < DEADLINE:
        if not d.running():
            raise AssertionError(f"the daemon exited by itself:\n{d.output()[-3000:]}")
        log.poll()
        now = time.monotonic()
        if moment.kind == "spool_temp":
            temps |= spool_temps(d.spool, pid)
        if moment.kind in rows_sql:
            if now >= next_read:
                next_read = now + JOURNAL_POLL
                got = count(d.journal, rows_sql[moment.kind])
                if got is not None and got - base_rows[moment.kind] >= moment.n:
                    d.kill()
                    return moment.kind
        elif fired[moment.kind]():
            d.kill()
            return moment.kind
        # Give up early on a moment that can no longer come in this run.
        if moment.kind == "spool_temp" and log.seen["card_imported"]:
            why = "card imported"
            break
        if now >= next_check:
            next_check = now + GIVE_UP_POLL
            if moment.kind in UPLOAD_KINDS and all_done(d.journal, photos):
                why = "all uploaded"
                break
        time.sleep(POLL)
    time.sleep(moment.fallback_s)
    d.kill()
    return f"time ({moment.kind}: {why})"


def test_sigkill_at_what_the_daemon_is_doing_loses_nothing_and_sends_nothing_twice(
    tmp_path: Path,
) -> None:
    rng = random.Random(SEED)
    inbox, media = tmp_path / "in", tmp_path / "media"
    media.mkdir()
    size = {"jpeg_size": (320, 240), "quality": 90}  # ~70 KB each
    folder = write_drive(plan_drive(START, seed=3, stop_s=10, break_s=300), inbox, **size)
    staged = tmp_path / "staging" / "CARD1"
    card = write_drive(
        plan_drive(START + timedelta(hours=3), seed=4, stop_s=10, break_s=300),
        staged / "DCIM" / "100GOPRO",
        name_pattern="C%07d.JPG",
        **size,
    )
    photos = folder + card
    assert len(photos) >= 300
    config = ServerConfig(tokens=(TOKEN,), bandwidth=BANDWIDTH, latency_ms=5, seed=SEED)
    kills: Counter[str] = Counter()
    began = time.monotonic()
    with ServerThread(config) as server:
        d = DaemonProc(
            tmp_path / "work",
            base_env(server.environment()),
            [
                *("--watch", str(inbox), "--mount-root", str(media), "--tz", "+02:00"),
                *("--settle-seconds", "0.3", "--batch-quiet-seconds", "0.5"),
                *("--max-images", "8"),
            ],
        )
        d.work.mkdir()
        try:
            for cycle in range(MAX_KILLS):
                # Between runs (nothing writes): which moments can still come?
                if all_done(d.journal, len(photos)):
                    break  # nothing left to interrupt
                kinds = sorted(UPLOAD_KINDS)
                card_in = (media / "CARD1").exists() or cycle == CARD_CYCLE
                if card_in and (count(d.journal, JOURNALED) or 0) < len(photos):
                    kinds.append("spool_temp")
                moment = draw(rng, kinds)
                d.start()
                if cycle == CARD_CYCLE:
                    d.wait_event("daemon_started", DEADLINE)  # up and watching the mount root
                    os.rename(staged, media / "CARD1")
                t0 = time.monotonic()
                why = wait_and_kill(d, server, moment, len(photos))
                kills[why] += 1
                print(
                    f"cycle {cycle:2}: {moment.kind}#{moment.n} -> {why} after "
                    f"{time.monotonic() - t0:.1f} s; server {server.stats()['images']} images"
                )
            assert (media / "CARD1").exists()
            killed_for = time.monotonic() - began
            done = d.once(timeout=120)
        finally:
            d.kill()
        assert done.returncode == 0, done.stderr[-3000:]
        stats = server.stats()
        stored = list(server.server.store.images.values())
    total = sum(kills.values())
    by_kind = dict(sorted(kills.items()))
    figures = f"{total} kills in {killed_for:.0f} s, by trigger: {by_kind}"
    print(f"\nchaos: {figures}; stats after --once: {stats}")

    # Enough kills, and most of them at the moments they were meant for.
    assert total >= MIN_KILLS, figures
    hit = [k for k in WEIGHTS if kills[k] >= 3]
    assert len(hit) >= 3, f"fewer than 3 kinds of moment hit 3 times: {figures}"

    # Every photo journaled once, uploaded once or skipped as a duplicate of its neighbour.
    assert d.query("SELECT count(*) FROM files")[0][0] == len(photos), figures
    assert d.query("SELECT count(*) FROM file_paths")[0][0] == len(photos), figures
    states = dict(d.query("SELECT state, count(*) FROM files GROUP BY state"))
    assert set(states) <= {"finished", "duplicate"}, (states, figures)
    seqs = dict(d.query("SELECT state, count(*) FROM sequences GROUP BY state"))
    assert set(seqs) == {"finished"}, (seqs, figures)

    # The server: each image exactly once, each sequence once.
    assert stats["duplicate_images"] == 0 and stats["duplicate_sequences"] == 0, (stats, figures)
    assert stats["images"] == states["finished"], (stats, states, figures)
    assert stats["sequences"] == seqs["finished"], (stats, seqs, figures)
    names = [i.filename for i in stored]
    assert len(set(names)) == len(names), figures
    md5s = [i.md5 for i in stored]
    assert len(set(md5s)) == len(md5s), figures
    by_state = {
        state: {
            Path(p).name
            for (p,) in d.query(
                "SELECT p.path FROM file_paths p JOIN files f ON f.hash = p.hash WHERE f.state = ?",
                state,
            )
        }
        for state in ("finished", "duplicate")
    }
    assert set(names) == by_state["finished"], figures
    sent = d.query(
        "SELECT u.md5 FROM uploads u JOIN files f ON f.hash = u.file_hash "
        "WHERE f.state = 'finished'"
    )
    assert sorted(md5 for (md5,) in sent) == sorted(md5s), figures
    # Every photo is on the server or journaled as a duplicate of a neighbour, never both.
    assert by_state["finished"].isdisjoint(by_state["duplicate"]), figures
    assert by_state["finished"] | by_state["duplicate"] == {p.name for p in photos}, figures

    db = sqlite3.connect(f"file:{d.journal}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)], figures
        assert db.execute("PRAGMA foreign_key_check").fetchall() == [], figures
    finally:
        db.close()
    # Nothing half-copied left in the spool.
    assert not list(d.spool.rglob(f"{TEMP_PREFIX}*")), figures
