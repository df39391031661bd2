"""The status page: the real daemon as a subprocess serves it on ``web_listen``; what it says is
what `status --json` says, read from the same journal; loopback only unless a password is set."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.error
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

import pytest

from daemon.demo.drive import plan_drive, write_drive
from daemon.server.config import ServerConfig
from daemon.server.runner import ServerThread
from daemon.web import hash_password
from tests.daemon_proc import TOKEN, DaemonProc, free_port, new_daemon, wait_for

pytestmark = pytest.mark.timeout(120)

START = datetime(2024, 6, 1, 7, 0, 0, tzinfo=UTC)
XSS = "<img src=x onerror=alert(1)>.jpg"


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(tokens=(TOKEN,))) as srv:
        yield srv


def get(url: str, auth: str | None = None) -> tuple[int, str, dict[str, str]]:
    req = Request(url)
    if auth is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urlopen(req, timeout=10) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def finished(d: DaemonProc, total: int) -> bool:
    images = d.images()
    done = images.get("finished", 0) + images.get("duplicate", 0)
    pending = d.query("SELECT count(*) FROM sequences WHERE state != 'finished'")[0][0]
    return done == total and pending == 0


def same_as_status(d: DaemonProc, base: str) -> dict[str, Any]:
    """/api/status equals `status --json` (retried briefly: the daemon's own figures, its
    activity and rate, may move between the two reads)."""

    def equal() -> dict[str, Any] | None:
        _, body, _ = get(base + "api/status")
        page = json.loads(body)
        return page if page == d.status() else None

    return wait_for("/api/status to equal status --json", equal, 20, every=0.5)


def test_the_page_shows_what_status_json_says_and_the_map_has_each_sequence(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    port = free_port()
    d = new_daemon(
        daemons, tmp_path / "work", server.environment(), "--watch", str(inbox),
        "--web-listen", f"127.0.0.1:{port}",
    )  # fmt: skip
    d.start()
    said = d.wait_event("web_page", 15)[0]
    base = f"http://127.0.0.1:{port}/"
    assert said["url"] == base and said["protected"] is False
    drive = plan_drive(START, seed=3, stop_s=10.0, break_s=300.0)
    paths = write_drive(drive, inbox / "2024-06-01")
    paths[5] = paths[5].rename(paths[5].with_name(XSS))  # a name a card could bring
    wait_for("the drive uploaded", lambda: finished(d, len(paths)), 60)

    page = same_as_status(d, base)
    assert page["images"]["finished"] > 0 and page["daemon"]["web"] == base
    # The map: one track per sequence, one point per photo of it (all have a position).
    _, body, _ = get(base + "api/map")
    tracks = json.loads(body)
    journal = dict(d.query("SELECT sequence_id, count(*) FROM files WHERE sequence_id IS NOT NULL "
                           "GROUP BY sequence_id"))  # fmt: skip
    assert {s["uuid"]: len(s["points"]) for s in tracks["sequences"]} == journal
    assert len(journal) >= 2 and all(s["state"] == "finished" for s in tracks["sequences"])
    names = [p["name"] for s in tracks["sequences"] for p in s["points"]]
    names += [p["name"] for p in tracks["photos"]]
    assert XSS in names  # as data, for the page to show as text

    status, html, headers = get(base)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "<svg" in html and "api/status" in html and "innerHTML" not in html
    assert XSS not in html and "onerror" not in html  # the page holds no data to escape
    for text in (html, json.dumps(page), body):
        assert TOKEN not in text and str(d.journal) not in text
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    # `status` says where the page is.
    text = subprocess.run(
        [sys.executable, "-m", "daemon", "status", "--journal", str(d.journal)],
        env=d.env, capture_output=True, text=True, timeout=30,
    ).stdout  # fmt: skip
    assert f"page: {base}" in text
    assert d.stop() == 0
    with pytest.raises(OSError):
        urlopen(base, timeout=2)


def test_another_address_without_a_password_serves_no_page_but_the_daemon_runs(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    port = free_port()
    d = new_daemon(
        daemons, tmp_path / "work", server.environment(), "--watch", str(inbox),
        "--web-listen", f"0.0.0.0:{port}",
    )  # fmt: skip
    d.start()
    refused = d.wait_event("web_page_refused", 15)[0]
    assert "password" in refused["reason"] and refused["level"] == "error"
    d.wait_event("root_watched", 15)
    with pytest.raises(OSError):
        urlopen(f"http://127.0.0.1:{port}/", timeout=2)
    assert d.running() and d.stop() == 0


def test_another_address_with_a_password_asks_for_it(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    port = free_port()
    (tmp_path / "in").mkdir()
    d = new_daemon(
        daemons, tmp_path / "work", server.environment(), "--watch", str(tmp_path / "in"),
        "--web-listen", f"0.0.0.0:{port}",
    )  # fmt: skip
    stored = hash_password("glovebox")
    d.env["MAPILLARY_DAEMON_WEB_PASSWORD_HASH"] = stored
    d.start()
    assert d.wait_event("web_page", 15)[0]["protected"] is True
    base = f"http://127.0.0.1:{port}/"
    for auth in (None, "me:wrong"):
        status, body, headers = get(base + "api/status", auth)
        assert status == 401 and "Basic" in headers["WWW-Authenticate"]
    status, body, _ = get(base + "api/status", "me:glovebox")
    assert status == 200 and stored not in body and "glovebox" not in body
    assert get(base, "me:glovebox")[0] == 200
    assert "glovebox" not in d.all_output() and stored not in d.all_output()
    assert d.stop() == 0


def test_off_serves_nothing(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    (tmp_path / "in").mkdir()
    d = new_daemon(
        daemons, tmp_path / "work", server.environment(), "--watch", str(tmp_path / "in"),
        "--web-listen", "off",
    )  # fmt: skip
    d.start().wait_event("daemon_started", 15)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and not d.events("web_page"):
        time.sleep(0.2)
    assert not d.events("web_page") and not d.events("web_page_refused")
    assert d.status()["daemon"].get("web") is None
    assert d.stop() == 0


def test_a_bad_listen_value_is_refused_at_start(tmp_path: Path) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "daemon", "run", "--journal", str(tmp_path / "j"),
         "--web-listen", "8764"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert p.returncode != 0 and "web_listen" in p.stderr + p.stdout


def test_config_web_password_stores_only_a_salted_hash(tmp_path: Path) -> None:
    from daemon.core import config
    from daemon.web import verify_password

    path = tmp_path / "config.toml"
    path.write_text("[sources]\nsettle_seconds = 2\n")
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "daemon", "config", "web-password", "--config", str(path)]
    for _ in range(2):  # a second run replaces the line, never adds one
        p = subprocess.run(cmd, input="drive safely\n", env=env, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
    text = path.read_text()
    assert "drive safely" not in text and text.count("web_password_hash") == 1
    stored = config.load(path).web_password_hash
    assert stored is not None and verify_password("drive safely", stored)
    assert not verify_password("drive safely!", stored)
    short = subprocess.run(cmd, input="short\n", env=env, capture_output=True, text=True)
    assert short.returncode != 0 and path.read_text() == text


def post_retry(base: str, uuid: str, csrf: str | None, origin: str | None = None) -> int:
    req = Request(base + "api/retry", data=json.dumps({"sequence": uuid}).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    if csrf is not None:
        req.add_header("X-CSRF-Token", csrf)
    if origin is not None:
        req.add_header("Origin", origin)
    try:
        with urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_retry_on_the_page_queues_a_failed_sequence_again_and_it_goes_up(
    tmp_path: Path, daemons: list[DaemonProc]
) -> None:
    import re

    data, port = tmp_path / "server", free_port()
    # The server refuses every manifest: each sequence fails at its finish, photos already up.
    strict = ServerConfig(port=port, data_dir=data, tokens=(TOKEN,), max_manifest_bytes=10)
    inbox, web_port = tmp_path / "in", free_port()
    inbox.mkdir()
    with ServerThread(strict) as server:
        d = new_daemon(
            daemons, tmp_path / "work", server.environment(), "--watch", str(inbox),
            "--web-listen", f"127.0.0.1:{web_port}",
        )  # fmt: skip
        d.start().wait_event("web_page", 15)
        paths = write_drive(plan_drive(START, seed=4, stop_s=10.0, break_s=300.0), inbox / "d")
        assert paths
        d.wait_event("sequence_failed", 60)
        failed = wait_for("a failed sequence", lambda: d.status()["failed_sequences"], 30)
        env = server.environment()
    uuid = failed[0]["uuid"]
    base = f"http://127.0.0.1:{web_port}/"
    _, html, _ = get(base)
    csrf = re.search(r'<meta name="csrf" content="([^"]+)">', html)
    assert csrf is not None
    # Without the token, with a wrong one, or from another site's page: refused, nothing changed.
    assert post_retry(base, uuid, None) == 403
    assert post_retry(base, uuid, "forged") == 403
    assert post_retry(base, uuid, csrf[1], origin="http://evil.example") == 403
    assert d.query("SELECT state FROM sequences WHERE uuid = ?", uuid) == [("failed",)]
    with ServerThread(ServerConfig(port=port, data_dir=data, tokens=(TOKEN,))) as server:
        assert server.environment() == env
        assert post_retry(base, uuid, csrf[1], origin=base.rstrip("/")) == 200
        d.wait_event("sequence_retry", 10)
        wait_for(
            "the retried sequence finished",
            lambda: d.query("SELECT state FROM sequences WHERE uuid = ?", uuid) == [("finished",)],
            60,
        )
        stats = server.stats()
        assert stats["duplicate_images"] == 0 and stats["duplicate_sequences"] == 0
    assert post_retry(base, uuid, csrf[1]) == 409  # finished: nothing to retry


def test_a_taken_port_is_said_and_the_daemon_runs_on(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    import socket

    (tmp_path / "in").mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        d = new_daemon(
            daemons, tmp_path / "work", server.environment(), "--watch", str(tmp_path / "in"),
            "--web-listen", f"127.0.0.1:{port}",
        )  # fmt: skip
        d.start()
        refused = d.wait_event("web_page_refused", 15)[0]
        assert "cannot listen" in refused["reason"]
        d.wait_event("root_watched", 15)
        assert d.running() and d.stop() == 0
