"""The daemon's own GPS log: gpsd's fixes read over TCP (a fake gpsd on 127.0.0.1), written to
a GPX file in batches, rotated, surviving cuts; and the daemon story of issue 14, where gpsd
and the daemon are both killed mid-drive and the drive's photos are still placed from the log."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gpxpy
import pytest

from daemon.commands.status import gps_line
from daemon.core import config
from daemon.core.geo import distance_m
from daemon.demo.drive import plan_drive, write_drive
from daemon.intake.gpsd import (
    Connected,
    Fix,
    GpsdClient,
    GpsEvent,
    Lost,
    NoFix,
    Satellites,
    parse_report,
)
from daemon.intake.gpslog import BATCH_SECONDS, FOOTER, TrackWriter, finish_left_open
from daemon.journal import RUNTIME_META, AsyncJournal
from daemon.media.gpx import merge, parse_time
from daemon.media.nmea import load_track
from daemon.runtime.gps import GpsLogging
from daemon.runtime.process import GpxLibrary
from daemon.runtime.state import Runtime, StatusBoard, Wakeups
from daemon.server.config import ServerConfig
from daemon.server.runner import ServerThread
from tests.daemon_proc import REPO, TOKEN, DaemonProc, free_port, new_daemon, wait_for
from tests.fake_gpsd import FakeGpsdThread, drive_reports, tpv_fixes

pytestmark = pytest.mark.timeout(120)
START = datetime(2024, 6, 1, 7, 0, 0, tzinfo=UTC)
T0 = START.timestamp()


def fix_at(t: float, i: int = 0) -> Fix:
    return Fix(t, 52.52 + i * 1e-5, 13.40 + i * 2e-5, 34.0 + i * 0.1, 3)


def test_doctests_of_the_gps_modules() -> None:
    import doctest

    from daemon.commands import status
    from daemon.intake import gpsd, gpslog

    for module in (gpsd, gpslog, status):
        result = doctest.testmod(module)
        assert result.attempted and not result.failed, module.__name__


# -- the client ---------------------------------------------------------------------------------


async def collect(
    client: GpsdClient, want: int, timeout: float, stop_after: type | None = None
) -> list[GpsEvent]:
    """Run the client until ``want`` fixes came (or an event of type ``stop_after``)."""
    queue: asyncio.Queue[GpsEvent] = asyncio.Queue()
    task = asyncio.create_task(client.run(queue))
    got: list[GpsEvent] = []
    deadline = time.monotonic() + timeout
    try:
        while sum(isinstance(e, Fix) for e in got) < want:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; got {got[-5:]}"
            event = await asyncio.wait_for(queue.get(), left)  # a test: 3.11's quirk is moot
            got.append(event)
            if stop_after is not None and isinstance(event, stop_after):
                break
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return got


def test_tpv_and_sky_reports_become_fixes_and_satellites_and_junk_is_passed_over() -> None:
    drive = plan_drive(START, seed=3, stop_s=5.0, break_s=0.0)
    reports = drive_reports(drive)
    sent = tpv_fixes(reports)
    with FakeGpsdThread(reports, rate=2000.0, junk_every=7) as gpsd:
        client = GpsdClient("127.0.0.1", gpsd.port)
        events = asyncio.run(collect(client, len(sent), 30))
    assert isinstance(events[0], Connected) and events[0].release == "3.25"
    fixes = [e for e in events if isinstance(e, Fix)]
    assert len(fixes) == len(sent)  # junk between them cost none
    for got, report in zip(fixes, sent, strict=True):
        assert got.time == parse_time(report["time"])
        assert (got.lat, got.lon, got.ele, got.mode) == (
            report["lat"],
            report["lon"],
            report["altMSL"],
            3,
        )
    sats = {(e.used, e.seen) for e in events if isinstance(e, Satellites)}
    assert sats == {(9, 12)}


def test_reports_without_a_usable_position_are_no_fix() -> None:
    line = b'{"class":"TPV","mode":%d,"time":"2024-06-01T07:00:00Z","lat":%s,"lon":13.4}'
    assert parse_report(line % (1, b"52.5")) == NoFix(1)  # no fix yet
    assert parse_report(line % (3, b"NaN")) == NoFix(3)  # not JSON's, but Python's json reads it
    assert parse_report(line % (2, b"91.0")) == NoFix(2)
    assert parse_report(b'{"class":"TPV","mode":3,"lat":52.5,"lon":13.4}') == NoFix(3)  # no time
    two_d = parse_report(line % (2, b"52.5"))
    assert isinstance(two_d, Fix) and two_d.ele is None
    assert parse_report(b'{"class":"SKY","device":"x"}') is None  # gpsd's empty SKY
    assert parse_report(b'{"class":"SKY","uSat":7,"nSat":10}') == Satellites(7, 10)


def test_the_client_comes_back_when_gpsd_does_with_a_growing_capped_pause() -> None:
    port = free_port()
    drive = plan_drive(START, seed=4, stop_s=5.0, break_s=0.0)
    reports = drive_reports(drive)

    async def story() -> tuple[list[GpsEvent], float, list[GpsEvent]]:
        client = GpsdClient("127.0.0.1", port, min_backoff=0.05, max_backoff=0.4)
        queue: asyncio.Queue[GpsEvent] = asyncio.Queue()
        task = asyncio.create_task(client.run(queue))
        lost: list[GpsEvent] = []
        while len(lost) < 6:  # nobody listening: tries 0.05, 0.1, 0.2, 0.4, 0.4 s apart
            lost.append(await asyncio.wait_for(queue.get(), 10))
        fake = FakeGpsdThread(reports, port=port, rate=200.0).__enter__()
        back = time.monotonic()
        after: list[GpsEvent] = []
        try:
            while not any(isinstance(e, Fix) for e in after):
                after.append(await asyncio.wait_for(queue.get(), 10))
            took = time.monotonic() - back
            fake.__exit__()  # gpsd stopped under the client
            while not isinstance(after[-1], Lost):
                after.append(await asyncio.wait_for(queue.get(), 10))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return lost, took, after

    lost, took, after = asyncio.run(story())
    assert all(isinstance(e, Lost) for e in lost)
    assert [e.retry_in for e in lost if isinstance(e, Lost)] == [0.05, 0.1, 0.2, 0.4, 0.4, 0.4]
    assert "refused" in lost[0].reason.lower(), lost[0]
    assert took < 0.4 + 1.0  # within one (capped) pause of gpsd coming back, and a start
    assert isinstance(after[0], Connected)
    final = after[-1]
    # it was a gpsd that went away: the next pause starts short again
    assert isinstance(final, Lost) and final.retry_in == 0.05, final


def test_a_silent_gpsd_is_asked_and_a_dead_one_left_for_a_new_connection() -> None:
    """gpsd without a receiver says nothing after its greeting: asked with ?VERSION; a peer
    that does not answer either (a network gone without a FIN) is given up."""

    async def story(answers: bool) -> tuple[list[GpsEvent], int]:
        probes = 0

        async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal probes
            writer.write(b'{"class":"VERSION","release":"3.22"}\n')
            while line := await reader.readline():
                if line.startswith(b"?VERSION"):
                    probes += 1
                    if answers:
                        writer.write(b'{"class":"VERSION","release":"3.22"}\n')
            writer.close()

        server = await asyncio.start_server(peer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = GpsdClient("127.0.0.1", port, silence=0.2)
        queue: asyncio.Queue[GpsEvent] = asyncio.Queue()
        task = asyncio.create_task(client.run(queue))
        got: list[GpsEvent] = []
        getter = asyncio.ensure_future(queue.get())
        try:
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline and not any(isinstance(e, Lost) for e in got):
                done, _ = await asyncio.wait({getter}, timeout=0.1)
                if done:
                    got.append(getter.result())
                    getter = asyncio.ensure_future(queue.get())
        finally:
            getter.cancel()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            server.close()
        return got, probes

    alive, probes = asyncio.run(story(answers=True))
    assert [type(e) for e in alive] == [Connected] and probes >= 3  # 1.5 s: asked, answered
    dead, probes = asyncio.run(story(answers=False))
    assert [type(e) for e in dead] == [Connected, Lost] and probes == 1
    assert isinstance(dead[1], Lost) and "no answer from gpsd for 0.4 s" in dead[1].reason


def test_a_gpsd_that_greets_and_hangs_up_at_once_is_tried_ever_more_slowly() -> None:
    """A gpsd crashing right after its greeting (or refusing one more client) is an outage:
    the pause grows as if nobody listened, not a reconnect and a warning every second."""

    async def story() -> tuple[list[float], int]:
        greeted = 0

        async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal greeted
            greeted += 1
            writer.write(b'{"class":"VERSION","release":"3.22"}\n')
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(peer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = GpsdClient("127.0.0.1", port, min_backoff=0.05, max_backoff=0.4)
        queue: asyncio.Queue[GpsEvent] = asyncio.Queue()
        task = asyncio.create_task(client.run(queue))
        pauses: list[float] = []
        try:
            while len(pauses) < 5:
                event = await asyncio.wait_for(queue.get(), 10)
                if isinstance(event, Lost):
                    pauses.append(event.retry_in)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            server.close()
        return pauses, greeted

    pauses, greeted = asyncio.run(story())
    assert pauses == [0.05, 0.1, 0.2, 0.4, 0.4] and greeted >= 5, pauses


# -- the writer ----------------------------------------------------------------------------------


def feed(writer: TrackWriter, fixes: list[Fix], path_sizes: list[int] | None = None) -> None:
    """Fixes as the stage gives them: a flush whenever the writer says a batch is full."""
    for fix in fixes:
        if writer.add(fix, 9):
            writer.flush()
        if path_sizes is not None and writer.path is not None:
            path_sizes.append(writer.path.stat().st_size)


def test_an_hour_of_fixes_is_written_in_batches_and_read_back_whole(tmp_path: Path) -> None:
    writer = TrackWriter(tmp_path / "gps")
    fixes = [fix_at(T0 + i, i) for i in range(3600)]
    sizes: list[int] = []
    feed(writer, fixes, sizes)
    writer.close()
    grew = sum(1 for a, b in zip(sizes, sizes[1:], strict=False) if b != a)
    # the file grows once a batch (10 s of fixes), not once a fix
    assert 3600 / BATCH_SECONDS - 2 <= grew <= 3600 / BATCH_SECONDS + 1, grew
    assert writer.fsyncs <= 3600 / BATCH_SECONDS + 4  # + header, its folder, the closing tags
    (path,) = (tmp_path / "gps").iterdir()
    assert path.name == "gps-2024-06-01.gpx" and writer.written == 3600
    track = load_track(path)
    assert len(track) == 3600 and not track.truncated and not track.notes
    for i in (0, 1234, 3599):
        assert track.times[i] == fixes[i].time
        assert abs(track.lats[i] - fixes[i].lat) < 1e-7 and abs(track.lons[i] - fixes[i].lon) < 1e-7
    # a whole GPX 1.1 file for other programs too
    parsed = gpxpy.parse(path.read_text())
    assert parsed.get_track_points_no() == 3600


def test_a_new_file_for_each_utc_day_each_drive_and_each_start(tmp_path: Path) -> None:
    folder = tmp_path / "gps"
    midnight = datetime(2024, 6, 2, tzinfo=UTC).timestamp()
    first = [fix_at(midnight - 30 + i) for i in range(60)]  # across midnight
    later = [fix_at(midnight + 30 + 601 + i) for i in range(20)]  # after a 10 min pause
    writer = TrackWriter(folder)
    feed(writer, first + later)
    writer.flush()  # a power cut now: no closing tags on the last file
    again = TrackWriter(folder)  # the daemon started again, the same day
    feed(again, [fix_at(midnight + 2000 + i) for i in range(5)])
    again.flush()
    names = sorted(p.name for p in folder.iterdir())
    assert names == [
        "gps-2024-06-01.gpx",
        "gps-2024-06-02-2.gpx",
        "gps-2024-06-02-3.gpx",
        "gps-2024-06-02.gpx",
    ]
    counts = {n: len(load_track(folder / n)) for n in names}
    assert counts == {
        "gps-2024-06-01.gpx": 30,
        "gps-2024-06-02.gpx": 30,
        "gps-2024-06-02-2.gpx": 20,
        "gps-2024-06-02-3.gpx": 5,
    }
    # finished files end with their closing tags; the ones cut off do not
    ends = {n: (folder / n).read_text().endswith(FOOTER) for n in names}
    assert ends == {
        "gps-2024-06-01.gpx": True,
        "gps-2024-06-02.gpx": True,
        "gps-2024-06-02-2.gpx": False,
        "gps-2024-06-02-3.gpx": False,
    }


def test_a_power_cut_mid_line_loses_only_the_cut_fix(tmp_path: Path) -> None:
    writer = TrackWriter(tmp_path)
    feed(writer, [fix_at(T0 + i, i) for i in range(25)])
    writer.flush()
    assert writer.path is not None
    data = writer.path.read_bytes()
    writer.path.write_bytes(data[:-40])  # the last line half written
    track = load_track(writer.path)
    assert len(track) == 24 and track.truncated, track.notes
    assert track.times[-1] == T0 + 23
    # a file system that grew the file but never wrote the block: zeros after the cut
    writer.path.write_bytes(data[:-40] + b"\x00" * 300)
    track = load_track(writer.path)
    assert len(track) == 24 and track.times[-1] == T0 + 23
    assert "line 28" in track.notes[0], track.notes


def test_a_log_left_open_by_a_cut_is_finished_after_its_last_whole_line(tmp_path: Path) -> None:
    writer = TrackWriter(tmp_path)
    feed(writer, [fix_at(T0 + i, i) for i in range(25)])
    writer.flush()
    assert writer.path is not None
    data = writer.path.read_bytes()
    writer.path.write_bytes(data[:-40] + b"\x00" * 300)
    assert finish_left_open(writer.path)
    assert gpxpy.parse(writer.path.read_text()).get_track_points_no() == 24  # others read it too
    assert len(load_track(writer.path)) == 24 and not load_track(writer.path).notes
    assert not finish_left_open(writer.path)  # once
    # another program's file with one of our names is never changed
    theirs = tmp_path / "gps-2024-06-02.gpx"
    theirs.write_bytes(b'<?xml version="1.0"?><gpx creator="someone"><trk><trkseg><trkpt')
    assert not finish_left_open(theirs)
    assert theirs.read_bytes().endswith(b"<trkpt")
    # a link with one of our names, to a copy of a log of ours kept elsewhere: left as it is
    kept = tmp_path / "archive.gpx"
    kept.write_bytes(data[:-40])
    link = tmp_path / "gps-2024-06-03.gpx"
    link.symlink_to(kept)
    assert not finish_left_open(link)
    assert kept.read_bytes() == data[:-40]
    fifo = tmp_path / "gps-2024-06-04.gpx"
    os.mkfifo(fifo)
    assert not finish_left_open(fifo)  # and at once: no writer is waited for


def test_a_log_ending_in_a_long_run_of_zeros_is_finished_after_its_last_fix(
    tmp_path: Path,
) -> None:
    # A batch of 600 fixes at 10 Hz left as zeros by a cut: longer than one read window.
    writer = TrackWriter(tmp_path)
    feed(writer, [fix_at(T0 + i, i) for i in range(25)])
    writer.flush()
    assert writer.path is not None
    with writer.path.open("ab") as fh:
        fh.write(b"\x00" * 200_000)
    assert finish_left_open(writer.path)
    assert writer.path.read_bytes().endswith(b"</trkpt>\n" + FOOTER.encode())
    assert gpxpy.parse(writer.path.read_text()).get_track_points_no() == 25


def test_fixes_wait_in_memory_while_the_folder_cannot_be_written(tmp_path: Path) -> None:
    blocked = tmp_path / "gps"
    blocked.write_text("a file where the folder should be")
    writer = TrackWriter(blocked)
    for i in range(12):
        writer.add(fix_at(T0 + i, i))
    with pytest.raises(OSError):
        writer.flush()
    assert writer.pending == 12
    blocked.unlink()
    writer.flush()
    assert writer.pending == 0 and len(load_track(blocked / "gps-2024-06-01.gpx")) == 12


def test_repeated_reports_of_one_cycle_are_written_once(tmp_path: Path) -> None:
    writer = TrackWriter(tmp_path)
    for fix in [fix_at(T0), fix_at(T0), fix_at(T0 + 1), fix_at(T0 + 0.5)]:
        writer.add(fix)
    assert writer.flush().fixes == 2


def test_a_clock_set_back_starts_a_new_file_and_loses_no_later_fix(tmp_path: Path) -> None:
    # A receiver's first fixes a day ahead (a stale almanac), then the right time: the right
    # fixes are all kept (not passed over as repeats until the wrong time comes round again),
    # in a file of their own, so that no file's times go back.
    folder = tmp_path / "gps"
    writer = TrackWriter(folder)
    wrong = [fix_at(T0 + 86400 + i, i) for i in range(5)]
    right = [fix_at(T0 + i, i) for i in range(30)]
    feed(writer, wrong + right)
    writer.close()
    tracks = {p.name: load_track(p) for p in sorted(folder.iterdir())}
    assert {n: len(t) for n, t in tracks.items()} == {
        "gps-2024-06-01.gpx": 30,
        "gps-2024-06-02.gpx": 5,
    }
    kept = tracks["gps-2024-06-01.gpx"]
    assert list(kept.times) == [f.time for f in right]
    # the same day set back by more than a minute: a second file of that day
    again = TrackWriter(tmp_path / "again")
    feed(again, [fix_at(T0 + 600 + i) for i in range(5)] + [fix_at(T0 + i) for i in range(5)])
    again.close()
    names = sorted(p.name for p in (tmp_path / "again").iterdir())
    assert names == ["gps-2024-06-01-2.gpx", "gps-2024-06-01.gpx"]
    assert load_track(tmp_path / "again" / "gps-2024-06-01-2.gpx").times[0] == T0


# -- the stage ------------------------------------------------------------------------------------


def test_the_stage_shows_no_gpsd_no_fix_and_fix_and_hands_the_log_to_the_library(
    tmp_path: Path,
) -> None:
    """The runtime stage over a real journal and GPX library, gpsd starting late."""
    port = free_port()
    drive = plan_drive(START, seed=5, stop_s=5.0, break_s=0.0)
    reports = drive_reports(drive)[:150]  # 125 fixes, then the receiver reports no fix
    settings = config.load(None, {"gpsd": f"127.0.0.1:{port}"}, env={})

    async def story() -> tuple[list[str], GpsLogging, GpxLibrary, bool]:
        journal = await AsyncJournal.open(tmp_path / "journal.sqlite3")
        runtime, wake, gpx = Runtime(), Wakeups(), GpxLibrary()
        board = StatusBoard(runtime, journal, dict)
        stage = GpsLogging(
            settings=settings,
            journal=journal,
            gpx=gpx,
            wake=wake,
            runtime=runtime,
            board=board,
            folder=tmp_path / "gps",
        )
        seen = [gps_line(runtime.gps or {}, True)]
        task = asyncio.create_task(stage.run())
        fake = None
        try:
            await asyncio.sleep(0.3)
            seen.append(gps_line(runtime.gps or {}, True))
            fake = FakeGpsdThread(reports, port=port, rate=400.0).__enter__()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # every state, in order, each once
                line = gps_line(runtime.gps or {}, True)
                if line.split(",")[0] != seen[-1].split(",")[0]:
                    seen.append(line)
                if fake.fake.done and "no fix" in line and (runtime.gps or {})["fixes"]:
                    break
                await asyncio.sleep(0.02)
            woken = wake.process.is_set()
            wake.stopping.set()
            await asyncio.wait_for(task, 10)
            await stage.close()
            saved = await journal.get_meta(RUNTIME_META)
            assert saved["gps"]["server"] == f"127.0.0.1:{port}"
        finally:
            task.cancel()
            if fake is not None:
                fake.__exit__()
            await journal.aclose()
        return seen, stage, gpx, woken

    seen, stage, gpx, woken = asyncio.run(story())
    states = [line.split(",")[0] for line in seen]
    assert states[:2] == [f"GPS: no gpsd at 127.0.0.1:{port}"] * 2, seen
    # (the "no fix" between the greeting and the first fix lasts milliseconds: maybe unseen)
    assert states[2:] in (["GPS: no fix", "GPS: fix", "GPS: no fix"], ["GPS: fix", "GPS: no fix"])
    assert "9 satellites" in seen[-2] and "own log gps-2024-06-01.gpx" in seen[-1], seen
    path = str(tmp_path / "gps" / "gps-2024-06-01.gpx")
    assert path in gpx.known.values() and woken
    version, paths = gpx.snapshot()
    track = gpx.build(version, paths)
    assert track is not None and len(track) == 125 == stage.writer.written


# -- the daemon story ------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(tokens=(TOKEN,))) as srv:
        yield srv


class GpsdProc:
    """The fake gpsd as a process on a fixed port, to kill and start again."""

    def __init__(self, work: Path, reports: list[dict[str, Any]], rate: float) -> None:
        self.port = free_port()
        self.reports_file = work / "reports.json"
        self.reports_file.write_text(json.dumps(reports))
        self.progress = work / "progress"
        self.rate = rate
        self.total = len(reports)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "tests.fake_gpsd", "--port", str(self.port)]
        cmd += ["--reports", str(self.reports_file), "--progress", str(self.progress)]
        cmd += ["--rate", str(self.rate), "--junk-every", "50"]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        assert b"fake gpsd on" in self.proc.stdout.readline()  # listening

    def sent(self) -> int:
        try:
            return int(self.progress.read_text() or 0)
        except (OSError, ValueError):
            return 0

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


def own_log(folder: Path) -> list[tuple[float, float, float]]:
    """Every fix of the daemon's own log files, in time order."""
    tracks = [load_track(p) for p in sorted(folder.glob("gps-*.gpx"))]
    track = merge(tracks)
    return list(zip(track.times, track.lats, track.lons, strict=True))


def test_photos_of_a_drive_are_placed_from_the_own_log_across_a_gpsd_restart_and_a_sigkill(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    drive = plan_drive(START, seed=11, stop_s=10.0, break_s=0.0)
    reports = drive_reports(drive)
    replayed = tpv_fixes(reports)
    gpsd = GpsdProc(tmp_path, reports, rate=60.0)
    inbox, logs = tmp_path / "in", tmp_path / "data" / "mapillary-daemon" / "gps"
    inbox.mkdir()
    d = new_daemon(
        daemons,
        tmp_path / "work",
        server.environment(),
        *("--watch", str(inbox), "--gpsd", f"127.0.0.1:{gpsd.port}"),  # no other GPS logger
        *("--position-wait", "7200", "--no-smoothing", "--web-listen", "off"),
    )
    d.env["XDG_DATA_HOME"] = str(tmp_path / "data")  # the log goes into <data dir>/gps
    try:
        gpsd.start()
        d.start()
        d.wait_event("gps_connected", 20)
        wait_for("a third of the drive", lambda: gpsd.sent() > gpsd.total / 3, 30)
        gpsd.kill()  # gpsd gone mid-drive
        d.wait_event("gps_lost", 10)
        gpsd.start()
        back = time.monotonic()
        d.wait_event("gps_connected", 10, count=2)
        reconnect = time.monotonic() - back
        # within the pause in effect: 1 s after a gpsd, 2 s (then 4) if a try came before the
        # fake was listening again (its start takes a while on a loaded machine)
        assert reconnect < 4.0 + 0.5, reconnect
        wait_for("two thirds of the drive", lambda: gpsd.sent() > gpsd.total * 2 / 3, 30)
        d.kill()  # SIGKILL mid-log: the batch not yet written is lost, nothing else
        d.start()
        d.wait_event("gps_connected", 20)
        wait_for("the whole drive replayed", lambda: gpsd.sent() >= gpsd.total, 30)
        end = parse_time(replayed[-1]["time"])
        wait_for("the drive's last fix in the log", lambda: own_log(logs)[-1][0] == end, 30)
        # Parked: the card's photos (no GPS in their EXIF: the log must place them)
        photos = write_drive(drive, tmp_path / "card", gpx_name=None)
        for path in photos:
            os.replace(path, inbox / path.name)

        def accounted() -> bool:  # every photo uploaded, or one of a stop's duplicates
            dup = d.query("SELECT count(*) FROM files WHERE state = 'duplicate'")[0][0]
            return len(server.server.store.images) + dup == len(photos)

        wait_for("every photo uploaded (or a duplicate)", accounted, 60)
        status = d.status()["daemon"]["gps"]
        text = subprocess.run(
            [sys.executable, "-m", "daemon", "status", "--journal", str(d.journal)],
            env=d.env,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
    finally:
        gpsd.kill()
    assert d.images().get("waiting_for_position", 0) == 0 and not d.images().get("rejected")
    # The log holds every replayed fix but the batch the SIGKILL took (and what was in flight)
    logged = own_log(logs)
    times = {t for t, _, _ in logged}
    missing = [r for r in replayed if parse_time(r["time"]) not in times]
    assert len(missing) <= BATCH_SECONDS + 6, len(missing)
    by_time = {parse_time(r["time"]): r for r in replayed}
    for t, lat, lon in logged:
        r = by_time[t]
        assert distance_m(lat, lon, r["lat"], r["lon"]) < 0.02
    names = sorted(p.name for p in logs.iterdir())
    assert names == ["gps-2024-06-01-2.gpx", "gps-2024-06-01.gpx"], names
    # Each photo where the own log puts it: within 0.5 m of the replayed fixes interpolated at
    # its time (those beside the lost batch are interpolated over the gap it left)
    lost = (parse_time(missing[0]["time"]), parse_time(missing[-1]["time"])) if missing else None
    truth = {f"G{p.index:07d}.JPG": p for p in drive.photos}
    log_track = merge([load_track(p) for p in sorted(logs.glob("gps-*.gpx"))])
    beside = 0
    for image in server.server.store.images.values():
        p = truth[image.filename]
        t = p.time.timestamp()
        if lost and lost[0] - 1 <= t <= lost[1] + 1:
            beside += 1
            at = log_track.position_at(t)
            assert at is not None
            assert distance_m(image.lat, image.lon, at.lat, at.lon) < 0.5, image.filename
        else:
            assert distance_m(image.lat, image.lon, p.gps_lat, p.gps_lon) < 0.5, image.filename
    assert beside <= (BATCH_SECONDS + 8) / 2
    # status: the receiver's state and the own log (after the drive: no fix, as in a garage)
    assert status["state"] in ("fix", "no fix") and status["server"] == f"127.0.0.1:{gpsd.port}"
    assert status["track"] == "gps-2024-06-01-2.gpx" and status["fixes"] > 50
    assert "GPS: " in text and "own log gps-2024-06-01-2.gpx" in text, text
    assert d.stop() == 0
    # a clean stop closes its file; the one the SIGKILL left open was closed at the restart
    for name in names:
        assert (logs / name).read_text().endswith(FOOTER), name
        assert gpxpy.parse((logs / name).read_text()).get_track_points_no() > 50
    assert d.events("gps_log_finished", run=2)[0]["file"] == str(logs / "gps-2024-06-01.gpx")
