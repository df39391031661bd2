"""Signals and logs of the daemon as a subprocess: SIGTERM mid-upload, SIGHUP reloads, no token
in any log line."""

from __future__ import annotations

import dataclasses
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.demo.drive import plan_drive, write_drive
from daemon.server.config import ServerConfig
from daemon.server.runner import ServerThread
from tests.daemon_proc import TOKEN, DaemonProc, base_env, new_daemon, wait_for

pytestmark = pytest.mark.timeout(120)

START = datetime(2024, 6, 1, 7, 0, 0, tzinfo=UTC)


def drive(folder: Path, seed: int, photos: int = 0, **kw: object) -> list[Path]:
    """A drive of its own (photos of different seeds differ: their times do), or its first
    ``photos`` photos."""
    start = START + timedelta(hours=seed)
    planned = plan_drive(start, seed=seed, stop_s=10, break_s=300)
    if photos:
        planned = dataclasses.replace(planned, photos=planned.photos[:photos])
    return write_drive(planned, folder, **kw)


def uploaded(d: DaemonProc, server: ServerThread, total: int) -> bool:
    images = d.images()
    return images.get("finished", 0) + images.get("duplicate", 0) == total and not d.query(
        "SELECT 1 FROM sequences WHERE state != 'finished'"
    )


def assert_once(d: DaemonProc, server: ServerThread) -> None:
    stats = server.stats()
    assert stats["images"] == d.images()["finished"]
    assert stats["sequences"] == d.query("SELECT count(*) FROM sequences")[0][0]
    assert stats["duplicate_images"] == 0 and stats["duplicate_sequences"] == 0


def test_sigterm_mid_upload_stops_cleanly_and_the_next_start_resumes(
    tmp_path: Path, daemons: list[DaemonProc]
) -> None:
    inbox = tmp_path / "in"
    paths = drive(inbox, 1, jpeg_size=(320, 240), quality=90)  # ~11 MB
    config = ServerConfig(tokens=(TOKEN,), bandwidth=1_000_000)
    with ServerThread(config) as server:
        d = new_daemon(daemons, tmp_path / "work", server.environment(), "--watch", str(inbox))
        d.start().wait_event("sequence_upload_start", 30)
        time.sleep(1.0)
        asked = time.monotonic()
        d.signal(signal.SIGTERM)
        assert d.proc is not None and d.proc.wait(10) == 0
        assert time.monotonic() - asked < 10
        assert d.events("daemon_stopped")
        assert not uploaded(d, server, len(paths)), "the upload was over before SIGTERM"
        partial = server.stats()["images"]
        st = d.status()
        assert st["daemon"]["running"] is False and st["bytes_to_upload"] > 0
        done = d.once(timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        assert uploaded(d, server, len(paths))
        assert server.stats()["images"] >= partial
        assert_once(d, server)


def write_config(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)  # an editor's save: the daemon never reads half a file


def test_sighup_adds_a_watch_root_live_and_refuses_a_broken_config(
    tmp_path: Path, daemons: list[DaemonProc]
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    conf = tmp_path / "config.toml"
    write_config(conf, f'watch = ["{first}"]\n')
    with ServerThread(ServerConfig(tokens=(TOKEN,))) as server:
        d = new_daemon(daemons, tmp_path / "work", server.environment(), "--config", str(conf))
        d.start().wait_event("root_watched", 15)
        write_config(conf, f'watch = ["{first}", "{second}"]\n')
        d.signal(signal.SIGHUP)
        reloaded = d.wait_event("config_reloaded", 15)[0]
        assert reloaded["added"] == [str(second)]
        paths = drive(second / "a", 1)
        wait_for("the new root's photos uploaded", lambda: uploaded(d, server, len(paths)), 40)
        assert_once(d, server)
        # Broken: not TOML at all, then an unknown key. Each is refused in one clear line
        # naming the file, and the daemon goes on with what it had.
        write_config(conf, f'watch = ["{first}", "{second}"\n')
        d.signal(signal.SIGHUP)
        refused = d.wait_event("reload_refused", 15)[-1]
        assert str(conf) in refused["reason"] and "not valid TOML" in refused["reason"]
        write_config(conf, f'wacth = ["{first}"]\n')
        d.signal(signal.SIGHUP)
        refused = d.wait_event("reload_refused", 15, count=2)[-1]
        assert str(conf) in refused["reason"] and "unknown key 'wacth'" in refused["reason"]
        assert len(d.events("config_reloaded")) == 1
        more = drive(second / "b", 2)
        total = len(paths) + len(more)
        wait_for("the old config still in force", lambda: uploaded(d, server, total), 40)
        assert_once(d, server)
        assert d.stop() == 0


def test_no_log_line_of_a_whole_upload_run_contains_the_token(
    tmp_path: Path, daemons: list[DaemonProc]
) -> None:
    inbox = tmp_path / "in"
    paths = drive(inbox, 3, photos=60)
    # Faults make the client retry and log its errors: those lines are checked too.
    config = ServerConfig(tokens=(TOKEN,), fail_rate=0.1, drop_rate=0.05, seed=7)
    with ServerThread(config) as server:
        d = new_daemon(
            daemons,
            tmp_path / "work",
            server.environment(),
            *("--watch", str(inbox), "--log-level", "debug"),
        )
        done = d.once(timeout=90)
        assert done.returncode == 0, done.stderr[-2000:]
        assert uploaded(d, server, len(paths))
        assert server.stats()["faults_injected"] > 0
        status = d.status()
        logs = done.stdout + done.stderr
        assert "sequence_finished" in logs
        assert TOKEN not in logs and TOKEN not in str(status)
        # A token the server refuses is not logged either.
        wrong = "tok-refused-9f8e7d6c5b4a39281706"
        refused = DaemonProc(d.work, base_env(server.environment(), token=wrong), d.args)
        drive(inbox / "more", 4, photos=10)
        out = refused.once(timeout=60)
        logs = out.stdout + out.stderr
        assert out.returncode == 2 and "refused" in logs.lower()  # as `upload`: exit 2
        assert wrong not in logs
