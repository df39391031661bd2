"""Daemon stories with the tracks a vehicle leaves: a gpxlogger log cut off by a power loss (and
growing again after it), with a bad fix and an infinite elevation in it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.core.geo import distance_m
from daemon.demo.drive import Drive, plan_drive, write_drive
from daemon.server.config import ServerConfig
from daemon.server.runner import ServerThread
from tests.daemon_proc import TOKEN, DaemonProc, logging_daemon, new_daemon, wait_for

pytestmark = pytest.mark.timeout(120)
START = datetime(2024, 6, 1, 7, 0, 0, tzinfo=UTC)


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(tokens=(TOKEN,))) as srv:
        yield srv


def dirty_lines(drive: Drive) -> list[str]:
    """The drive's log as gpsd's gpxlogger leaves it after a power cut: no closing tags; one
    fix with an impossible longitude, one with an infinite elevation."""
    lines = drive.gpx_text().splitlines(keepends=True)[:-1]  # no </trkseg></trk></gpx>
    first = next(i for i, line in enumerate(lines) if "<trkpt" in line)
    bad = lines[first + 5]
    lines[first + 5] = bad[: bad.index('lon="') + 5] + "180.0000001" + bad[bad.index('"><ele>') :]
    ele = lines[first + 9]
    lines[first + 9] = ele[: ele.index("<ele>") + 5] + "inf" + ele[ele.index("</ele>") :]
    return lines


def uploaded(server: ServerThread) -> dict[str, tuple[float, float]]:
    return {i.filename: (i.lat, i.lon) for i in server.server.store.images.values()}


def test_a_cut_off_log_with_a_bad_fix_places_the_photos_and_again_when_it_grows(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    d, inbox, logger = logging_daemon(daemons, tmp_path, server.environment())
    drive = plan_drive(START, seed=5, stop_s=10.0, break_s=0.0)
    paths = write_drive(drive, inbox, gpx_name=None)
    lines = dirty_lines(drive)
    half = len(lines) // 2
    log = logger / "gpxlogger.gpx"
    log.write_text("".join(lines[:half]) + lines[half][:30], encoding="utf-8")  # cut mid-point
    d.start()
    truth = {f"G{p.index:07d}.JPG": p for p in drive.photos}
    wait_for(
        "the photos of the first half uploaded, the rest waiting",
        lambda: (
            len(uploaded(server)) > 0.3 * len(paths)
            and d.images().get("waiting_for_position", 0) > 0.2 * len(paths)
        ),
        60,
    )
    before = uploaded(server)
    first = len(before)
    said = d.wait_event("gpx_points_left_out", 5)[0]
    # written just now: still being written as far as the daemon can tell, not cut off
    assert "1 bad coordinates" in said["reason"] and "still being written" in said["reason"]
    # Power back: the logger appends to the same file (still without closing tags).
    with log.open("a", encoding="utf-8") as fh:
        fh.write(lines[half][30:] + "".join(lines[half + 1 :]))
    wait_for(
        "the rest uploaded once the log grew",
        lambda: d.images().get("waiting_for_position", 0) == 0 and len(uploaded(server)) > first,
        60,
    )
    for name, (lat, lon) in uploaded(server).items():
        p = truth[name]
        # 3e-5 deg (2 m): beside the dropped fix the track interpolates over 2 s, not 1. A
        # photo up to 1 s past the cut waited for the log to grow (it was written just now)
        # instead of taking the last fix: it too is interpolated.
        assert abs(lat - p.gps_lat) < 3e-5 and abs(lon - p.gps_lon) < 3e-5, name
    assert d.stop() == 0


def nmea_text(drive: Drive) -> str:
    """The drive as a u-blox M8 logs it: $GNRMC and $GNGGA, CRLF, checksummed."""

    def sentence(body: str) -> str:
        check = 0
        for c in body:
            check ^= ord(c)
        return f"${body}*{check:02X}\r\n"

    def angle(value: float, digits: int, hemis: str) -> str:
        deg = int(abs(value))
        return f"{deg:0{digits}d}{(abs(value) - deg) * 60:09.6f},{hemis[value < 0]}"

    out = []
    for p in drive.track:
        t = p.time.astimezone(UTC)
        hms = t.strftime("%H%M%S.") + f"{t.microsecond // 10000:02d}"
        pos = f"{angle(p.lat, 2, 'NS')},{angle(p.lon, 3, 'EW')}"
        out.append(sentence(f"GNRMC,{hms},A,{pos},5.0,90.0,{t:%d%m%y},,,A"))
        out.append(sentence(f"GNGGA,{hms},{pos},1,12,0.8,{p.ele:.1f},M,40.0,M,,"))
    return "".join(out)


def test_photos_are_placed_from_an_nmea_log(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    d, inbox, logger = logging_daemon(daemons, tmp_path, server.environment())
    drive = plan_drive(START, seed=6, stop_s=10.0, break_s=0.0)
    paths = write_drive(drive, inbox, gpx_name=None)
    (logger / "gpsd.nmea").write_text(nmea_text(drive), encoding="ascii")
    d.start()

    def accounted() -> bool:  # every photo uploaded, or one of a stop's duplicates
        states = d.images()  # {} until the daemon has made its tables
        return bool(states) and len(uploaded(server)) + states.get("duplicate", 0) == len(paths)

    wait_for("the drive uploaded", accounted, 60)
    truth = {f"G{p.index:07d}.JPG": p for p in drive.photos}
    for name, (lat, lon) in uploaded(server).items():
        p = truth[name]
        # Within 2 m of the log at the photo's time: the smoothed track (issue 15) moves a
        # position by up to a metre or so from raw interpolation on this 1.5 m-noise log.
        assert abs(lat - p.gps_lat) < 2e-5 and abs(lon - p.gps_lon) < 2e-5, name
    assert d.stop() == 0


def test_the_zone_label_is_the_offset_of_the_photos_date_and_the_repeated_hour_is_hinted(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    inbox = tmp_path / "in"
    d = new_daemon(
        daemons,
        tmp_path / "work",
        server.environment(),
        *("--watch", str(inbox), "--tz", "Europe/Berlin"),
    )
    june = plan_drive(START, seed=7, stop_s=5.0, break_s=0.0)  # 09:00 in Berlin, +02:00
    write_drive(june, inbox / "june", camera_tz="Europe/Berlin", with_gps_in_exif=False)
    # 2024-10-27 00:30 UTC is 02:30 in Berlin, an hour that happens twice that night
    autumn = plan_drive(datetime(2024, 10, 27, 0, 30, tzinfo=UTC), seed=8, stop_s=5.0, break_s=0.0)
    write_drive(autumn, inbox / "autumn", camera_tz="Europe/Berlin", with_gps_in_exif=False)
    d.start()
    batch = d.wait_event("batch_processed", 60)[0]
    # June's own offset, not today's (+01:00 in winter); 02:30 on 27 October is read as the
    # first of its two occurrences, still summer time
    photos = len(june.photos) + len(autumn.photos)  # each counted once, though read in chunks
    assert batch["zone"] == f"Europe/Berlin (+02:00 for {photos} photos)", batch
    hint = d.wait_event("ambiguous_hour", 5)[0]
    assert hint["photos"] > 0 and "summer time" in hint["hint"]
    assert d.stop() == 0


def journal_made(d: DaemonProc) -> bool:
    """The journal there with its tables (the file exists a moment before they do)."""
    if not d.journal.exists():
        return False
    return bool(d.query("SELECT count(*) FROM sqlite_master WHERE name = 'files'")[0][0])


def state_of(d: DaemonProc, path: Path) -> tuple[str, str] | None:
    if not journal_made(d):
        return None
    rows = d.query(
        "SELECT f.state, f.reason FROM files f JOIN file_paths p ON p.hash = f.hash "
        "WHERE p.path = ?",
        str(path),
    )
    return (rows[0][0], rows[0][1] or "") if rows else None


def test_photos_just_past_the_end_of_a_growing_log_wait_for_its_next_fixes(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    d, inbox, logger = logging_daemon(daemons, tmp_path, server.environment(), "--no-smoothing")
    drive = plan_drive(START, seed=7, stop_s=10.0, break_s=0.0)
    times = [p.time for p in drive.track]
    # A moving photo half a second or more after a fix halfway: the log is cut after that fix.
    photo = next(
        p
        for p in drive.photos[len(drive.photos) // 2 :]
        if p.flag is None and any(0.5 <= (p.time - t).total_seconds() < 1.0 for t in times)
    )
    k = max(i for i, t in enumerate(times) if t < photo.time)
    lines = drive.gpx_text().splitlines(keepends=True)
    head = next(i for i, line in enumerate(lines) if "<trkpt" in line)
    paths = write_drive(drive, inbox, gpx_name=None)
    shot = next(p for p in paths if p.name == f"G{photo.index:07d}.JPG")
    log = logger / "gpxlogger.gpx"
    log.write_text("".join(lines[: head + k + 1]), encoding="utf-8")  # no closing tags yet
    d.start()
    wait_for(
        "the photo past the log's last fix waiting for a position",
        lambda: (state_of(d, shot) or ("",))[0] == "waiting_for_position",
        60,
    )
    state = state_of(d, shot)
    assert state is not None and "the GPS log is still being written" in state[1], state
    assert f"G{photo.index:07d}.JPG" not in uploaded(server)
    with log.open("a", encoding="utf-8") as fh:  # the logger writes on, and closes the file
        fh.write("".join(lines[head + k + 1 :]))
    wait_for("the photo uploaded", lambda: f"G{photo.index:07d}.JPG" in uploaded(server), 60)
    lat, lon = uploaded(server)[f"G{photo.index:07d}.JPG"]
    last = drive.track[k]
    assert distance_m(lat, lon, photo.gps_lat, photo.gps_lon) < 0.5
    assert distance_m(last.lat, last.lon, photo.gps_lat, photo.gps_lon) > 2.0  # not the last fix
    assert d.stop() == 0
