"""The camera clock found from the photos: on synthetic drives with a known truth (braking,
stops, turns, breaks, GPS drift), through `clock`, `geotag --tz auto`, `process --tz auto`, and
the daemon that checks the values it was given."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import piexif
import pytest

from daemon.core.geo import distance_m
from daemon.demo.camera import scene, write_drive
from daemon.demo.route import Drive, Phase, plan_drive
from daemon.media.gpx import Track
from daemon.media.tiny import tiny_picture
from daemon.pipeline.clock import CONFIDENT, FinderInput, find_clock
from daemon.pipeline.standing import PhotoClue, picture_difference
from daemon.server.config import ServerConfig
from daemon.server.runner import ServerThread
from tests.corpus import CORPUS
from tests.daemon_proc import TOKEN, DaemonProc, new_daemon, wait_for

START = datetime(2024, 6, 1, 7, 30, tzinfo=UTC)
NO_STOP = [  # pulls away once and never stands still again: turns, slow and fast stretches
    Phase(6, 0, 12),
    Phase(60, 12, 12),
    Phase(3, 12, 5),
    Phase(8, 5, 5, turn=90),
    Phase(4, 5, 11),
    Phase(90, 11, 11, turn=-30),
    Phase(4, 11, 4),
    Phase(40, 4, 4),
    Phase(5, 4, 13),
    Phase(120, 13, 13),
]


def drive(laps: int, seed: int, **more: object) -> Drive:
    return plan_drive(START, seed=seed, laps=laps, stop_spread_s=25.0, **more)  # type: ignore[arg-type]


def track_of(d: Drive) -> Track:
    return Track.from_points((p.time, p.lat, p.lon, p.ele) for p in d.track)


def clues(d: Drive, zone_h: float, offset_s: float) -> list[PhotoClue]:
    """What a camera in zone ``zone_h`` with its clock ``offset_s`` ahead shows for each photo."""
    shift = timedelta(hours=zone_h, seconds=offset_s)
    return [PhotoClue((p.time + shift).timestamp(), scene(p)) for p in d.photos]


@pytest.mark.parametrize(
    ("laps", "seed", "zone_h", "offset_s"),
    [
        (2, 1, 2.0, -3.0),  # Berlin in summer, the camera 3 s behind
        (2, 2, 1.0, 7.0),  # winter time in summer, 7 s ahead
        (3, 3, -5.0, 0.0),
        (3, 4, 5.5, -40.0),  # a half-hour zone and a clock 40 s behind
        (4, 5, 9.0, 125.0),  # two minutes ahead
        (2, 6, 2.0, 0.0),
    ],
)
def test_the_clock_is_found_within_a_second_and_the_zone_right_on_drives_with_stops(
    laps: int, seed: int, zone_h: float, offset_s: float
) -> None:
    d = drive(laps, seed)
    answer = find_clock(FinderInput(clues(d, zone_h, offset_s)), track_of(d))
    zone = f"{'-' if zone_h < 0 else '+'}{int(abs(zone_h)):02d}:{int(abs(zone_h) % 1 * 60):02d}"
    assert answer.found, answer.reason
    assert answer.tz == zone, answer
    assert answer.time_offset is not None and abs(answer.time_offset - offset_s) <= 1.0, answer
    assert answer.confidence >= CONFIDENT
    assert answer.stops_matched >= 2, answer.evidence


def test_a_truck_passing_in_front_of_a_standing_camera_does_not_split_the_stop() -> None:
    d = drive(2, 17)
    seen = clues(d, 2.0, -3.0)
    standing = [i for i, p in enumerate(d.photos) if p.speed == 0 and p.flag == "at_light"]
    for i in standing[3::6]:  # every sixth photo at a light shows a truck instead
        seen[i] = PhotoClue(seen[i].seconds, bytes(255 - v for v in seen[i].picture or b""))
    answer = find_clock(FinderInput(seen), track_of(d))
    assert answer.found and answer.tz == "+02:00", answer
    assert answer.time_offset is not None and abs(answer.time_offset + 3.0) <= 1.0, answer


def test_with_the_zone_given_only_the_clock_is_found_even_an_hour_off() -> None:
    d = drive(2, 7)
    # The camera says +01:00 but the user knows the place is +02:00: the clock is then 1 h
    # behind, in the flags' words time_offset -3600 with tz +02:00.
    answer = find_clock(FinderInput(clues(d, 1.0, 0.0), zone_s=7200), track_of(d))
    assert answer.found and answer.tz == "+02:00", answer
    assert answer.time_offset is not None and abs(answer.time_offset + 3600) <= 1.0


WALK = [  # 1 m/s with a photo every 2 s, three pauses of 20-45 s, two corners
    Phase(2, 0, 1),
    Phase(120, 1, 1),
    Phase(1, 1, 0),
    Phase(30, 0, 0),
    Phase(1, 0, 1),
    Phase(200, 1, 1, turn=90),
    Phase(1, 1, 0),
    Phase(45, 0, 0),
    Phase(1, 0, 1),
    Phase(100, 1, 1, turn=-60),
    Phase(1, 1, 0),
    Phase(20, 0, 0),
    Phase(1, 0, 1),
    Phase(60, 1, 1),
]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_on_a_walk_with_pauses_the_clock_is_found_within_a_second(seed: int) -> None:
    d = plan_drive(START, seed=seed, lap=WALK, gps_noise_m=1.0)
    answer = find_clock(FinderInput(clues(d, 2.0, -4.0)), track_of(d))
    assert answer.found and answer.tz == "+02:00", answer
    assert answer.time_offset is not None and abs(answer.time_offset + 4.0) <= 1.0, answer


def test_a_drive_that_never_stops_cannot_tell_and_says_why() -> None:
    d = plan_drive(START, seed=3, lap=NO_STOP)
    answer = find_clock(FinderInput(clues(d, 2.0, -3.0)), track_of(d))
    assert not answer.found
    assert answer.tz is None and answer.time_offset is None
    assert "no stop in the photos" in answer.reason, answer.reason


def test_identical_laps_seen_for_one_stop_only_are_two_equal_fits_not_a_guess() -> None:
    d = plan_drive(START, seed=2, laps=3)  # three laps alike to the second
    lap = d.duration / 3
    middle = [p for p in d.photos if lap <= p.t < lap + 400]
    shift = timedelta(hours=2)
    seen = [PhotoClue((p.time + shift).timestamp(), scene(p)) for p in middle]
    answer = find_clock(FinderInput(seen), track_of(d))
    assert not answer.found
    assert answer.reason.startswith("two candidates fit equally well"), answer.reason


def test_photos_from_another_day_cannot_tell() -> None:
    d = drive(2, 8)
    answer = find_clock(FinderInput(clues(d, 2.0, 86400.0 * 3)), track_of(d))
    assert not answer.found
    assert "line up with none" in answer.reason or "outside the track" in answer.reason


def test_standing_photos_look_alike_and_moving_ones_do_not(tmp_path: Path) -> None:
    d = drive(1, 9)
    paths = write_drive(d, tmp_path / "small", jpeg_size=(320, 240), gpx_name=None)
    big = write_drive(d, tmp_path / "big", jpeg_size=(1600, 1200), gpx_name=None)
    for folder in (paths, big):
        pictures = [tiny_picture(p) for p in folder]
        standing, moving = [], []
        for a, b, pa, pb in zip(d.photos, d.photos[1:], pictures, pictures[1:], strict=False):
            assert pa is not None and pb is not None
            if a.speed == b.speed == 0:
                standing.append(picture_difference(pa, pb))
            elif min(a.speed, b.speed) > 5:
                moving.append(picture_difference(pa, pb))
        assert standing and moving
        assert max(standing) < 3.0 < 10.0 < min(moving), (max(standing), min(moving))
    # A big photo's EXIF thumbnail is what its camera saw.
    assert piexif.load(str(big[0]))["thumbnail"]


def test_tiny_pictures_of_real_cameras_photos_or_none_never_an_error() -> None:
    folder = CORPUS / "exif"
    if not folder.is_dir():
        pytest.skip(f"no corpus at {folder}")
    photos = sorted(folder.glob("*.jp*g")) + sorted(folder.glob("*.JPG"))
    pictures = {p.name: tiny_picture(p) for p in photos}
    read = [v for v in pictures.values() if v is not None]
    assert len(read) >= len(photos) - 3, [k for k, v in pictures.items() if v is None]
    assert all(len(v) == 16 * 16 for v in read)
    assert tiny_picture(CORPUS / "exif" / "heic_IMG_5195.HEIC") is None  # not a JPEG: none
    assert tiny_picture(CORPUS / "exif" / "no-such-photo.jpg") is None
    # A camera's own thumbnail and its full picture show the same scene.
    canon = CORPUS / "exif" / "Canon_40D.jpg"
    if piexif.load(str(canon)).get("thumbnail"):
        from PIL import Image

        with Image.open(canon) as whole:
            full = whole.convert("L").resize((16, 16)).tobytes()
        assert picture_difference(pictures[canon.name] or b"", full) < 25.0


def _nmea(d: Drive, path: Path) -> None:
    """The drive's GPS log as NMEA RMC sentences, as a receiver logs them."""

    def ddmm(value: float, width: int) -> str:
        deg = int(abs(value))
        return f"{deg:0{width}d}{(abs(value) - deg) * 60:07.4f}"

    lines = []
    for p in d.track:
        t = p.time.astimezone(UTC)
        body = (
            f"GPRMC,{t:%H%M%S}.{t.microsecond // 10000:02d},A,{ddmm(p.lat, 2)},N,"
            f"{ddmm(p.lon, 3)},E,0.0,0.0,{t:%d%m%y},,,A"
        )
        check = 0
        for ch in body:
            check ^= ord(ch)
        lines.append(f"${body}*{check:02X}\r\n")
    path.write_text("".join(lines), encoding="ascii")


def test_clock_reads_an_nmea_log_as_well(tmp_path: Path) -> None:
    d = drive(2, 16)
    photos = tmp_path / "photos"
    write_drive(d, photos, camera_tz="+02:00", camera_offset_s=5.0, gpx_name=None)
    log = tmp_path / "gps.nmea"
    _nmea(d, log)
    done = _cli("clock", str(photos), "--gpx", str(log), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    answer = json.loads(done.stdout)
    assert answer["tz"] == "+02:00" and abs(answer["time_offset"] - 5.0) <= 1.0, answer


def _camera(tmp_path: Path, d: Drive, zone: str, offset: float) -> tuple[Path, Path]:
    photos = tmp_path / "photos"
    write_drive(d, photos, camera_tz=zone, camera_offset_s=offset, gpx_name=None)
    gpx = tmp_path / "track.gpx"
    gpx.write_text(d.gpx_text(), encoding="utf-8")
    return photos, gpx


def _said_offset(text: str, zone: str) -> float:
    """The offset a summary line says was found: ``zone +01:00, camera 7.5 s behind``."""
    m = re.search(
        rf"found from the photos: zone {re.escape(zone)}, camera ([\d.]+) s (ahead|behind)", text
    )
    assert m, text
    return float(m[1]) * (1 if m[2] == "ahead" else -1)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args], capture_output=True, text=True, timeout=120
    )


def test_clock_json_gives_values_that_geotag_places_the_photos_with(tmp_path: Path) -> None:
    d = drive(2, 10)
    photos, gpx = _camera(tmp_path, d, "+01:00", -7.0)
    done = _cli("clock", str(photos), "--gpx", str(gpx), "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["tz"] == "+01:00" and abs(answer["time_offset"] + 7.0) <= 1.0, answer
    assert answer["confidence"] >= CONFIDENT
    text = _cli("clock", str(photos), "--gpx", str(gpx))
    assert re.search(r"clock: zone \+01:00, camera (6\.|7|8 )[\d.]* ?s behind", text.stdout), (
        text.stdout
    )
    # Passed back, the two values place the photos where they were taken.
    tagged = _cli(
        "geotag",
        str(photos),
        str(gpx),
        "--tz",
        answer["tz"],
        "--time-offset",
        str(answer["time_offset"]),
    )
    assert tagged.returncode == 0, tagged.stdout + tagged.stderr
    _assert_placed(d, photos)


def _exif_position(path: Path) -> tuple[float, float]:
    gps = piexif.load(str(path))["GPS"]

    def deg(v: tuple) -> float:
        return v[0][0] / v[0][1] + v[1][0] / v[1][1] / 60 + v[2][0] / v[2][1] / 3600

    lat = deg(gps[piexif.GPSIFD.GPSLatitude])
    lon = deg(gps[piexif.GPSIFD.GPSLongitude])
    return lat, lon


def _assert_placed(d: Drive, photos: Path) -> None:
    """Every photo within a few metres of the GPS log at its true time (a 7 s error would put
    moving photos up to 90 m off)."""
    errors = []
    for p in d.photos:
        lat, lon = _exif_position(photos / f"G{p.index:07d}.JPG")
        errors.append(distance_m(lat, lon, p.gps_lat, p.gps_lon))
    errors.sort()
    assert errors[int(len(errors) * 0.95)] < 12.0, errors[-5:]


def test_geotag_tz_auto_finds_the_clock_says_so_and_places_the_photos(tmp_path: Path) -> None:
    d = drive(2, 11)
    photos, gpx = _camera(tmp_path, d, "+01:00", -7.0)
    done = _cli("geotag", str(photos), str(gpx), "--tz", "auto", "--time-offset", "auto")
    assert done.returncode == 0, done.stdout + done.stderr
    assert abs(_said_offset(done.stdout, "+01:00") + 7.0) <= 1.0
    assert "zone of camera times: +01:00" in done.stdout
    _assert_placed(d, photos)


def test_geotag_tz_auto_that_cannot_tell_writes_nothing_and_says_why(tmp_path: Path) -> None:
    d = plan_drive(START, seed=12, lap=NO_STOP)
    photos, gpx = _camera(tmp_path, d, "+02:00", 0.0)
    before = {p: p.read_bytes() for p in photos.iterdir()}
    done = _cli("geotag", str(photos), str(gpx), "--tz", "auto")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "cannot tell the camera clock from the photos: no stop in the photos" in done.stderr
    assert {p: p.read_bytes() for p in photos.iterdir()} == before


def test_process_tz_auto_describes_the_photos_at_their_true_times(tmp_path: Path) -> None:
    d = drive(3, 13)
    photos, gpx = _camera(tmp_path, d, "+02:00", 12.0)
    desc = tmp_path / "desc.json"
    done = _cli(
        "process",
        str(photos),
        "--gpx",
        str(gpx),
        "--tz",
        "auto",
        "--time-offset",
        "auto",
        "--desc-path",
        str(desc),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert abs(_said_offset(done.stdout, "+02:00") - 12.0) <= 1.0
    truth = {f"G{p.index:07d}.JPG": p for p in d.photos}
    entries = [e for e in json.loads(desc.read_text()) if "MAPLatitude" in e]
    assert len(entries) > 0.7 * len(truth)
    for e in entries:
        p = truth[Path(e["filename"]).name]
        taken = datetime.strptime(e["MAPCaptureTime"], "%Y_%m_%d_%H_%M_%S_%f").replace(tzinfo=UTC)
        assert abs((taken - p.time).total_seconds()) <= 1.0, (e["filename"], taken, p.time)


@pytest.fixture
def server() -> ServerThread:
    with ServerThread(ServerConfig(tokens=(TOKEN,))) as srv:
        yield srv


@pytest.mark.timeout(120)
def test_the_daemon_with_wrong_values_says_which_would_place_the_photos(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    d = drive(2, 14)
    inbox = tmp_path / "in"
    write_drive(d, inbox, camera_tz="+01:00", camera_offset_s=-7.0)  # GPX beside the photos
    daemon = new_daemon(
        daemons, tmp_path / "work", server.environment(), "--watch", str(inbox)
    )  # told +02:00 and 0 s (tests/daemon_proc.py FAST)
    daemon.start()
    said = daemon.wait_event("camera_clock_disagrees", 60)[0]
    assert said["tz"] == "+01:00" and abs(said["time_offset"] + 7.0) <= 1.0, said
    clock = wait_for(
        "the suggestion in status",
        lambda: (c := daemon.status()["daemon"].get("clock") or {}).get("suggestion") and c,
        30,
    )
    assert clock["tz"] == "+02:00" and clock["time_offset"] == 0.0 and clock["source"] == "config"
    hint = clock["suggestion"]
    assert hint["tz"] == "+01:00" and abs(hint["time_offset"] + 7.0) <= 1.0, hint
    assert hint["confidence"] >= CONFIDENT and hint["photos"] == len(d.photos)
    text = _cli("status", "--journal", str(daemon.journal)).stdout
    assert "clock: zone +02:00, camera clock right (as configured); the photos" in text, text
    assert len(daemon.events("camera_clock_disagrees")) == 1


@pytest.mark.timeout(120)
def test_the_daemon_with_tz_auto_places_the_photos_and_shows_the_clock_found(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    d = drive(2, 15)
    inbox = tmp_path / "in"
    write_drive(d, inbox, camera_tz="+01:00", camera_offset_s=-7.0)
    daemon = new_daemon(
        daemons,
        tmp_path / "work",
        server.environment(),
        *("--watch", str(inbox), "--tz", "auto", "--time-offset", "auto"),
    )
    daemon.start()
    found = daemon.wait_event("camera_clock_found", 60)[0]
    assert found["tz"] == "+01:00" and abs(found["time_offset"] + 7.0) <= 1.0, found
    wait_for("every photo uploaded or skipped", lambda: not daemon.images().get("imported"), 60)
    clock = wait_for(
        "the clock found in status",
        lambda: (c := daemon.status()["daemon"].get("clock") or {}).get("tz") and c,
        30,
    )
    assert clock["source"] == "auto" and clock["tz"] == "+01:00" and not clock["suggestion"]
    assert abs(clock["time_offset"] + 7.0) <= 1.0 and clock["confidence"] >= CONFIDENT
    truth = {f"G{p.index:07d}.JPG": p for p in d.photos}
    placed = wait_for(
        "photos uploaded",
        lambda: [i for i in server.server.store.images.values()] or None,
        60,
    )
    for image in placed:
        p = truth[image.filename]
        assert distance_m(image.lat, image.lon, p.gps_lat, p.gps_lon) < 15.0, image.filename


@pytest.mark.timeout(120)
def test_run_once_with_tz_auto_says_the_clock_it_found(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    d = drive(2, 18)
    inbox = tmp_path / "in"
    write_drive(d, inbox, camera_tz="+03:00", camera_offset_s=20.0)
    daemon = new_daemon(
        daemons,
        tmp_path / "work",
        server.environment(),
        *("--watch", str(inbox), "--tz", "auto", "--time-offset", "auto"),
    )
    done = daemon.once()
    assert done.returncode == 0, done.stdout + done.stderr
    assert abs(_said_offset(done.stdout, "+03:00") - 20.0) <= 1.0, done.stdout
    assert "camera clock found from the photos" in done.stdout


async def test_a_card_planned_in_pieces_uses_the_clock_its_first_piece_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from daemon.journal import Journal
    from tests.test_daemon_chunks import planned_once

    d = drive(2, 19)
    folder = tmp_path / "in"
    write_drive(d, folder, camera_tz="+01:00", camera_offset_s=-7.0)
    # The last piece: the photos after the last red light, no stop of their own to go on.
    daemon = await planned_once(
        folder, tmp_path, len(d.photos) - 30, monkeypatch, tz="auto", time_offset="auto"
    )
    with Journal.open_readonly(daemon.settings.journal_path) as j:
        counts = j.count_by_state()
    assert not counts.get("waiting_for_position"), counts
    assert daemon.stats.images + daemon.stats.duplicates == len(d.photos), daemon.stats
    clock = daemon.runtime.clock or {}
    assert clock.get("tz") == "+01:00" and abs(clock["time_offset"] + 7.0) <= 1.0, clock


@pytest.mark.timeout(120)
def test_the_daemon_in_this_machines_zone_still_reads_the_photos_in_it(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    # The clock's check of given values must not swap the machine's zone for UTC: the photos
    # taken in the hour repeated at the end of summer time are still noticed in that zone.
    inbox = tmp_path / "in"
    autumn = plan_drive(datetime(2024, 10, 27, 0, 30, tzinfo=UTC), seed=8, stop_s=5.0, break_s=0.0)
    write_drive(autumn, inbox, camera_tz="Europe/Berlin", with_gps_in_exif=False)
    daemon = new_daemon(daemons, tmp_path / "work", server.environment(), "--watch", str(inbox))
    daemon.args += ["--tz", ""]  # no zone given: this machine's
    daemon.env["TZ"] = "Europe/Berlin"
    daemon.start()
    batch = daemon.wait_event("batch_processed", 60)[0]
    photos = len(autumn.photos)
    assert batch["zone"] == f"Europe/Berlin (+02:00 for {photos} photos)", batch
    hint = daemon.wait_event("ambiguous_hour", 5)[0]
    assert hint["photos"] > 0 and hint["zone"].startswith("Europe/Berlin"), hint
    assert daemon.stop() == 0


def test_with_a_named_zone_given_a_camera_following_summer_time_is_found_across_the_change(
    tmp_path: Path,
) -> None:
    # 31 March 2024: at 01:00 UTC Berlin goes from +01:00 to +02:00 and so does this camera's
    # clock, in the middle of the drive. With --tz Europe/Berlin the photos are read as geotag
    # reads them, each at its own date, and the answer keeps the zone as given.
    d = plan_drive(datetime(2024, 3, 31, 0, 40, tzinfo=UTC), seed=25, laps=2, stop_spread_s=25.0)
    assert d.photos[0].time.hour == 0 and d.photos[-1].time.hour == 1
    photos, gpx = _camera(tmp_path, d, "Europe/Berlin", -3.0)
    done = _cli("clock", str(photos), "--gpx", str(gpx), "--tz", "Europe/Berlin", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    answer = json.loads(done.stdout)
    assert answer["tz"] == "Europe/Berlin" and abs(answer["time_offset"] + 3.0) <= 1.0, answer
    tagged = _cli(
        "geotag", str(photos), str(gpx), "--tz", answer["tz"], "--time-offset",
        str(answer["time_offset"]),
    )  # fmt: skip
    assert tagged.returncode == 0, tagged.stdout + tagged.stderr
    _assert_placed(d, photos)
    again, gpx = _camera(tmp_path / "again", d, "Europe/Berlin", -3.0)  # untagged photos
    auto = _cli("geotag", str(again), str(gpx), "--tz", "Europe/Berlin", "--time-offset", "auto")
    assert auto.returncode == 0 and "camera clock found from the photos" in auto.stdout, auto
    _assert_placed(d, again)


def test_tz_auto_on_photos_timed_by_their_gps_needs_no_clock_and_no_track(tmp_path: Path) -> None:
    d = drive(1, 12)
    photos = tmp_path / "photos"
    write_drive(d, photos, camera_tz="+02:00", with_gps_in_exif=True, gpx_name="track.gpx")
    for extra in ([], ["--gpx", str(photos / "track.gpx")]):
        done = _cli("process", str(photos), "--tz", "auto", "--time-offset", "auto", *extra)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "camera clock not needed" in done.stdout, done.stdout
        descs = json.loads((photos / "mapillary_image_description.json").read_text())
        assert len([e for e in descs if "MAPLatitude" in e]) >= len(d.photos) // 2, descs[:2]


def _bytes_read() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_given_values_are_checked_without_reading_a_picture_when_the_track_is_days_away(
    tmp_path: Path,
) -> None:
    from daemon.media.load import load_records
    from daemon.runtime.clock import settle_batch

    d = drive(2, 14)
    paths = write_drive(d, tmp_path, camera_tz="+01:00", camera_offset_s=-7.0, gpx_name=None)
    records = load_records(paths, "+02:00")
    near = track_of(d)
    far = Track.from_points((p.time + timedelta(days=3), p.lat, p.lon, p.ele) for p in d.track)
    before = _bytes_read()
    checked = settle_batch(records, "+02:00", 0.0, far, 120.0)
    assert _bytes_read() - before < 4096  # no photo opened: no setting puts them on that track
    assert checked.event is None and checked.state["suggestion"] is None
    before = _bytes_read()
    checked = settle_batch(records, "+02:00", 0.0, near, 120.0)
    assert _bytes_read() - before > 100 * len(paths)  # the pictures were read for the check
    assert checked.event is not None and checked.event[0] == "camera_clock_disagrees"
