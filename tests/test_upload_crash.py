"""Exactly once through crashes: `upload` SIGKILLed at random moments, then run until done.

120 small photos in 6 sequences (a mapillary_tools-style description file), a server on
127.0.0.1 slowed by a bandwidth cap and latency so that kills land mid-body, mid-manifest and
around finishes. Afterwards the server holds every photo once and every sequence once, and the
journal is sound.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from daemon.server import ServerConfig, ServerThread
from tests.daemon_proc import user_env
from tests.test_upload_cmd import TOKEN, mapillary_tools_folder

SEQUENCES = [20] * 6
KILLS = 20
SEED = 20240601
pytestmark = pytest.mark.slow


def admin_stats(server: ServerThread) -> dict[str, int]:
    with urllib.request.urlopen(server.base_url + "/_admin/stats", timeout=10) as reply:
        return json.load(reply)


def start_upload(tmp_path: Path, server: ServerThread, photos: Path, run: int) -> subprocess.Popen:
    env = user_env(tmp_path, server.environment(), TOKEN)
    journal = tmp_path / "journal.sqlite3"
    with open(tmp_path / f"run{run:02d}.out", "w") as out:  # the child keeps its own copy
        return subprocess.Popen(
            [sys.executable, "-m", "daemon", "upload", str(photos), "--journal", str(journal)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )


def kill_at_random(proc: subprocess.Popen, server: ServerThread, rnd: random.Random) -> bool:
    """SIGKILL ``proc`` at a random moment; True if it was still running then.

    Most kills wait until the uploader is talking to the server (so they land in transfers and
    finishes); some strike anywhere from start-up on (opening the journal, queueing).
    """
    if rnd.random() < 0.25:
        time.sleep(rnd.uniform(0.0, 2.0))
    else:
        seen = admin_stats(server)["requests"]
        deadline = time.monotonic() + 30
        while admin_stats(server)["requests"] == seen and proc.poll() is None:
            assert time.monotonic() < deadline, "the uploader never reached the server"
            time.sleep(0.02)
        time.sleep(rnd.uniform(0.0, 0.8))
    running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return running


def test_sigkill_at_random_moments_never_duplicates_or_loses_anything(tmp_path: Path) -> None:
    photos = tmp_path / "ride"
    names = mapillary_tools_folder(photos, SEQUENCES, 47.5, seed=1000)
    rnd = random.Random(SEED)
    config = ServerConfig(
        data_dir=tmp_path / "server",
        tokens=(TOKEN,),
        # ~1.9 MB in all: about 24 s of transfer; 20 kills get through ~1.2 MB of it (at
        # 200 KB/s a quick run of kills sometimes finished the upload before the 20th).
        bandwidth=80_000,
        latency_ms=20,
    )
    runs = 0
    with ServerThread(config) as server:
        kills = 0
        for _ in range(3 * KILLS):  # bounded even if runs keep ending on their own
            if kills >= KILLS:
                break
            proc = start_upload(tmp_path, server, photos, runs)
            runs += 1
            kills += kill_at_random(proc, server, rnd)
        assert kills >= KILLS
        mid_way = admin_stats(server)
        for _ in range(5):
            proc = start_upload(tmp_path, server, photos, runs)
            runs += 1
            assert proc.wait(timeout=180) == 0, (tmp_path / f"run{runs - 1:02d}.out").read_text()
            last = (tmp_path / f"run{runs - 1:02d}.out").read_text()
            if "nothing to upload" in last:
                break
        else:
            pytest.fail("five runs after the kills did not finish the upload")
        stats = admin_stats(server)
        sequences = server.sequences()
    print(f"{runs} runs, {kills} killed; after the kills: {mid_way}; at the end: {stats}")

    assert (stats["duplicate_images"], stats["duplicate_sequences"]) == (0, 0)
    assert stats["images"] == len(names)
    assert stats["sequences"] == len(SEQUENCES)
    # The kills did interrupt real work, not a finished upload.
    assert mid_way["sequences"] < len(SEQUENCES)
    got = [[i["filename"] for i in s["images"]] for s in sequences]
    assert sorted(got) == sorted(_groups(names, SEQUENCES))
    assert Counter(i["md5"] for s in sequences for i in s["images"]).most_common(1)[0][1] == 1
    _journal_is_sound(tmp_path / "journal.sqlite3", sequences)
    for out in tmp_path.glob("run*.out"):
        assert TOKEN not in out.read_text()


def _groups(names: list[str], sizes: list[int]) -> list[list[str]]:
    out, start = [], 0
    for size in sizes:
        out.append(names[start : start + size])
        start += size
    return out


def _journal_is_sound(path: Path, sequences: list[dict[str, Any]]) -> None:
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = db.execute("SELECT state, cluster_id FROM sequences").fetchall()
        files = Counter(r[0] for r in db.execute("SELECT state FROM files"))
    db.close()
    assert sorted(rows) == sorted(("finished", s["cluster_id"]) for s in sequences)
    assert files == {"finished": sum(SEQUENCES)}
