"""`status` says why photos wait: files still being written, photos without a position (and
the times no track covers), sequences held until upload hours, folders not quiet yet. The real
daemon as a subprocess watching a folder, the embedded server on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from daemon.server import ServerConfig
from daemon.server.runner import ServerThread
from tests.daemon_proc import TOKEN, DaemonProc, free_port, new_daemon, wait_for
from tests.jpegs import make_jpeg
from tests.test_upload_cmd import geotagged

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(tokens=(TOKEN,))) as srv:
        yield srv


def closed_window() -> str:
    """Upload hours that are not now (they start in two hours)."""
    start = (time.localtime().tm_hour + 2) % 24
    return f"{start:02d}:00-{(start + 1) % 24:02d}:00"


def status_text(d: DaemonProc) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "status", "--journal", str(d.journal)],
        env=dict(d.env, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def waiting(d: DaemonProc, *reasons: str) -> dict[str, Any] | None:
    """The running daemon's waiting figures once every one of ``reasons`` is among them."""
    shown = d.status()["daemon"]
    counts = shown.get("waiting") or {}
    return shown if all(r in counts for r in reasons) else None


def test_status_says_settling_position_and_upload_hours_with_counts(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    work = tmp_path / "work"
    inbox = work / "inbox"
    inbox.mkdir(parents=True)
    window = closed_window()
    d = new_daemon(
        daemons, work, server.environment(), "--watch", str(inbox), "--upload-hours", window
    )
    d.start().wait_event("root_watched", 15)
    geotagged(inbox / "ride", 3, 48.1, seed=5)
    (inbox / "lost").mkdir()
    for minute in (2, 9, 15):  # 10:xx at +02:00; no GPS, and no GPX covers them
        make_jpeg(
            inbox / "lost" / f"P{minute:02d}.jpg",
            capture_time=datetime(2024, 6, 1, 10, minute, 30),
            offset="+02:00",
            seed=minute,
        )
    shown = wait_for(
        "upload hours and position", lambda: waiting(d, "upload hours", "position"), 60, 0.5
    )
    assert shown["waiting"]["upload hours"] == 3
    assert shown["waiting"]["position"] == 3
    assert shown["waiting_why"]["position"] == "no GPS track covers 08:02-08:15 UTC"
    assert shown["waiting_why"]["upload hours"] == window
    text = status_text(d)
    assert (
        f"waiting: 3 for a position (no GPS track covers 08:02-08:15 UTC), 3 until upload hours {window}"
        in text
    )
    # Held back by upload hours: no rate and no ETA promised for the bytes left.
    upload = next(line for line in text.splitlines() if line.startswith("to upload:"))
    assert " at " not in upload and "left" not in upload and "to upload: 0 B" not in upload

    # A photo still being written: its start only, the rest never comes while we look.
    whole = make_jpeg(tmp_path / "whole.jpg", size=(320, 240), seed=9)
    (inbox / "ride" / "IMG_0100.jpg").write_bytes(whole.read_bytes()[:2000])
    shown = wait_for("settling", lambda: waiting(d, "settling"), 30, 0.3)
    assert shown["waiting"]["settling"] == 1
    assert "1 settling (files still being written)" in status_text(d)
    assert server.stats()["images"] == 0


def test_status_says_a_folder_waits_to_be_quiet_and_nothing_to_upload(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    work = tmp_path / "work"
    inbox = work / "inbox"
    inbox.mkdir(parents=True)
    d = new_daemon(
        daemons,
        work,
        server.environment(),
        "--watch",
        str(inbox),
        "--batch-quiet-seconds",
        "600",
    )
    d.start().wait_event("root_watched", 15)
    text = status_text(d)
    assert "to upload: nothing" in text and " B at " not in text
    geotagged(inbox / "ride", 4, 48.2, seed=20)
    shown = wait_for("batch quiet", lambda: waiting(d, "batch quiet"), 60, 0.5)
    assert shown["waiting"] == {"batch quiet": 4}
    why = shown["waiting_why"]["batch quiet"]
    assert why.startswith("their folder quiet for 600 s, until ")
    until = datetime.strptime(why.rsplit(" ", 1)[1], "%H:%M:%S").time()
    now = datetime.now()
    left = (datetime.combine(now.date(), until) - now).total_seconds() % 86400
    assert 500 < left <= 600
    assert "waiting: 4 for a quiet folder (their folder quiet for 600 s" in status_text(d)


def test_status_says_photos_wait_for_an_unreachable_server(
    tmp_path: Path, daemons: list[DaemonProc]
) -> None:
    work = tmp_path / "work"
    inbox = work / "inbox"
    inbox.mkdir(parents=True)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    endpoints = {
        "MAPILLARY_GRAPH_API_ENDPOINT": f"{dead}/graph",
        "MAPILLARY_UPLOAD_ENDPOINT": f"{dead}/mapillary_public_uploads",
        "MAPILLARY_DAEMON_MAX_ATTEMPTS": "1",  # give up at once: the test need not wait
    }
    d = new_daemon(daemons, work, endpoints, "--watch", str(inbox))
    d.start().wait_event("root_watched", 15)
    geotagged(inbox / "ride", 2, 48.5, seed=60)
    shown = wait_for("server unreachable", lambda: waiting(d, "server unreachable"), 60, 0.5)
    assert shown["waiting"]["server unreachable"] == 2
    assert "connection error" in shown["waiting_why"]["server unreachable"]
    assert "waiting: 2 for the server (" in status_text(d)


def test_photos_no_longer_wait_for_the_server_once_it_takes_them(
    tmp_path: Path, daemons: list[DaemonProc]
) -> None:
    work = tmp_path / "work"
    inbox = work / "inbox"
    inbox.mkdir(parents=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"  # nothing listens there yet
    endpoints = {
        "MAPILLARY_GRAPH_API_ENDPOINT": f"{base}/graph",
        "MAPILLARY_UPLOAD_ENDPOINT": f"{base}/mapillary_public_uploads",
        "MAPILLARY_DAEMON_MAX_ATTEMPTS": "1",
    }
    d = new_daemon(daemons, work, endpoints, "--watch", str(inbox))
    d.start().wait_event("root_watched", 15)
    geotagged(inbox / "ride", 8, 48.5, seed=80)
    wait_for("server unreachable", lambda: waiting(d, "server unreachable"), 60, 0.5)
    # The server comes up, slow enough that the pass lasts well beyond a status save.
    config = ServerConfig(host="127.0.0.1", port=port, tokens=(TOKEN,), bandwidth=2500)
    with ServerThread(config):

        def sending() -> dict[str, Any] | None:
            st = d.status()
            shown = st["daemon"]
            if shown.get("server") != "reachable" or not st["sequences"].get("pending"):
                return None
            return shown if "server unreachable" not in (shown.get("waiting") or {}) else None

        shown = wait_for("the pass under way said as such", sending, 60, 0.5)
    assert "server unreachable" not in shown.get("waiting_why", {})
