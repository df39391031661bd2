"""A reload (SIGHUP) that changes `gpsd` starts, re-points and stops the GPS stage of a running
daemon: each log it was writing is finished (its closing tags) before the next one starts."""

from __future__ import annotations

import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.demo.drive import plan_drive
from daemon.intake.gpslog import FOOTER
from daemon.media.nmea import load_track
from daemon.server.config import ServerConfig
from daemon.server.runner import ServerThread
from tests.daemon_proc import TOKEN, DaemonProc, new_daemon, wait_for
from tests.fake_gpsd import FakeGpsdThread, drive_reports

pytestmark = pytest.mark.timeout(120)
START = datetime(2024, 6, 1, 7, 0, 0, tzinfo=UTC)


def write_config(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)  # an editor's save: the daemon never reads half a file


def fixes_in(log: Path) -> int:
    try:
        return log.read_text(encoding="ascii").count("<trkpt ")
    except FileNotFoundError:
        return 0


def finished(log: Path) -> bool:
    return log.read_text(encoding="ascii").endswith(FOOTER)


def test_sighup_starts_repoints_and_stops_the_gps_stage(
    tmp_path: Path, daemons: list[DaemonProc]
) -> None:
    inbox, conf = tmp_path / "in", tmp_path / "config.toml"
    inbox.mkdir()
    logs = tmp_path / "data" / "mapillary-daemon" / "gps"
    first, second = logs / "gps-2024-06-01.gpx", logs / "gps-2024-06-01-2.gpx"
    reports = drive_reports(plan_drive(START, seed=3, stop_s=5.0, break_s=0.0))
    watch = f'watch = ["{inbox}"]\nweb_listen = "off"\n'
    write_config(conf, watch)
    with (
        ServerThread(ServerConfig(tokens=(TOKEN,))) as server,
        FakeGpsdThread(reports, rate=40.0) as one,
        FakeGpsdThread(reports, rate=40.0) as two,
    ):
        d = new_daemon(daemons, tmp_path / "work", server.environment(), "--config", str(conf))
        d.env["XDG_DATA_HOME"] = str(tmp_path / "data")
        d.start().wait_event("root_watched", 15)
        assert d.status()["daemon"].get("gps") is None

        write_config(conf, f'{watch}gpsd = "127.0.0.1:{one.port}"\n')
        d.signal(signal.SIGHUP)
        switched = d.wait_event("gps_switched", 15)[-1]
        assert (switched["before"], switched["now"]) == ("off", f"127.0.0.1:{one.port}")
        d.wait_event("gps_connected", 15)
        wait_for("fixes from the first gpsd in the own log", lambda: fixes_in(first) >= 10, 30)

        write_config(conf, f'{watch}gpsd = "127.0.0.1:{two.port}"\n')
        d.signal(signal.SIGHUP)
        switched = d.wait_event("gps_switched", 15, count=2)[-1]
        assert switched["before"] == f"127.0.0.1:{one.port}"
        assert switched["now"] == f"127.0.0.1:{two.port}"
        assert finished(first)  # written to its last fix and closed before the switch
        connected = d.wait_event("gps_connected", 15, count=2)[-1]
        assert connected["server"] == f"127.0.0.1:{two.port}"
        wait_for("fixes from the second gpsd in a new log", lambda: fixes_in(second) >= 10, 30)
        assert d.status()["daemon"]["gps"]["server"] == f"127.0.0.1:{two.port}"
        kept = first.read_bytes()

        write_config(conf, watch)
        d.signal(signal.SIGHUP)
        switched = d.wait_event("gps_switched", 15, count=3)[-1]
        assert (switched["before"], switched["now"]) == (f"127.0.0.1:{two.port}", "off")
        assert finished(second) and first.read_bytes() == kept
        wait_for("status without GPS", lambda: d.status()["daemon"].get("gps") is None, 15)
        assert len(load_track(second)) == fixes_in(second)  # a whole GPX file, every fix read
        assert sorted(p.name for p in logs.iterdir()) == sorted([first.name, second.name])
        assert len(d.events("config_reloaded")) == 3 and not d.events("reload_failed")
        assert d.stop() == 0
