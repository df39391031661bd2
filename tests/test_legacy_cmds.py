"""The old scripts' jobs as subcommands, run as real subprocesses on real JPEGs and GPX files.

Photos come from the synthetic drive (daemon.demo.drive) whose ground truth is known; EXIF is read
back with piexif directly, not through our own reader.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import piexif
import pytest

from daemon.core.geo import angle_diff_deg, distance_m
from daemon.demo import drive as sample
from tests import jpegs

ROOT = Path(__file__).resolve().parents[1]
START = datetime(2024, 6, 1, 9, 0, 0, tzinfo=UTC)
CAMERA_AHEAD_S = 30.0


def mly(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CONFIG_HOME": str(cwd / ".config")}
    env = {k: v for k, v in env.items() if not k.startswith("MAPILLARY_DAEMON_")}
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def ratio(v: tuple[int, int]) -> float:
    return v[0] / v[1]


def gps_of(path: Path) -> dict[int, Any]:
    return piexif.load(str(path))["GPS"]


def latlon(gps: dict[int, Any]) -> tuple[float, float]:
    def deg(v: tuple[tuple[int, int], ...], ref: bytes, neg: bytes) -> float:
        d, m, s = (ratio(x) for x in v)
        value = d + m / 60 + s / 3600
        return -value if ref == neg else value

    g = piexif.GPSIFD
    return (
        deg(gps[g.GPSLatitude], gps[g.GPSLatitudeRef], b"S"),
        deg(gps[g.GPSLongitude], gps[g.GPSLongitudeRef], b"W"),
    )


def description(path: Path) -> dict[str, Any]:
    return json.loads(piexif.load(str(path))["0th"][piexif.ImageIFD.ImageDescription])


def by_name(drive: sample.Drive) -> dict[str, sample.Photo]:
    return {f"G{p.index:07d}.JPG": p for p in drive.photos}


@pytest.fixture(scope="module")
def noisy_drive() -> sample.Drive:
    return sample.plan_drive(START, seed=7)


# -- fix-dates ------------------------------------------------------------------------------------


def test_fix_dates_numbers_frames_in_natural_order(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for n in (10, 2, 1, 11, 3):  # created out of order on purpose
        jpegs.make_jpeg(frames / f"frame_{n}.jpg")
    jpegs.make_jpeg(frames / "Frame_4.JPG", capture_time=datetime(2020, 1, 1, 0, 0))
    (frames / "frame_5.jpg").write_text("not a photo")
    before_bad = (frames / "frame_5.jpg").read_bytes()
    proc = mly(
        tmp_path, "fix-dates", str(frames), "2024-06-01 09:00:00.250", "1.5", "--tz", "+02:00"
    )
    assert proc.returncode == 1, proc.stderr
    assert f"{frames / 'frame_5.jpg'}:" in proc.stderr
    assert (frames / "frame_5.jpg").read_bytes() == before_bad
    assert "zone of camera times: +02:00" in proc.stdout
    order = [1, 2, 3, 4, 5, 10, 11]  # frame_5 keeps its slot though it cannot be written
    for slot, n in enumerate(order):
        if n == 5:
            continue
        name = f"Frame_{n}.JPG" if n == 4 else f"frame_{n}.jpg"
        ifd = piexif.load(str(frames / name))["Exif"]
        want = datetime(2024, 6, 1, 9, 0, 0, 250000) + timedelta(seconds=1.5 * slot)
        assert ifd[piexif.ExifIFD.DateTimeOriginal] == want.strftime("%Y:%m:%d %H:%M:%S").encode()
        assert ifd[piexif.ExifIFD.SubSecTimeOriginal] == f"{want.microsecond // 1000:03d}".encode()
        assert ifd[piexif.ExifIFD.OffsetTimeOriginal] == b"+02:00"


def test_fix_dates_without_zone_writes_local_time_only(tmp_path: Path) -> None:
    jpegs.make_jpeg(tmp_path / "a_1.jpg", capture_time=datetime(2020, 1, 1), offset="+05:00")
    proc = mly(tmp_path, "fix-dates", str(tmp_path / "a_1.jpg"), "2024-12-24 18:30:00", "2")
    assert proc.returncode == 0, proc.stderr
    ifd = piexif.load(str(tmp_path / "a_1.jpg"))["Exif"]
    assert ifd[piexif.ExifIFD.DateTimeOriginal] == b"2024:12:24 18:30:00"
    assert ifd[piexif.ExifIFD.SubSecTimeOriginal] == b"000"
    assert piexif.ExifIFD.OffsetTimeOriginal not in ifd  # the stale offset is gone too


# -- geotag ---------------------------------------------------------------------------------------


def test_geotag_puts_photos_where_the_car_was(tmp_path: Path) -> None:
    """A noise-free log: positions land on the truth; the camera runs 30 s ahead."""
    drive = sample.plan_drive(START, seed=1, gps_noise_m=0.0)
    photos = tmp_path / "p"
    sample.write_drive(drive, photos, camera_tz="Europe/Berlin", camera_offset_s=CAMERA_AHEAD_S)
    gpx = photos / "track.gpx"
    args = [str(photos), str(gpx), "--tz", "Europe/Berlin", "--time-offset", str(CAMERA_AHEAD_S)]
    proc = mly(tmp_path, "geotag", *args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no progress bar when standard error is not a terminal
    assert f"geotag: {len(drive.photos)} images, {len(drive.photos)} tagged" in proc.stdout
    n = len(drive.photos)
    assert (
        f"zone of camera times: Europe/Berlin (+02:00 for {n} photos); "
        "time offset: 30 s (camera ahead)"
    ) in proc.stdout
    assert (
        f"capture time: DateTimeOriginal in the camera zone {n}; position: GPX track {n}; "
        f"heading: GPX track {n}"
    ) in proc.stdout
    g = piexif.GPSIFD
    for name, photo in by_name(drive).items():
        gps = gps_of(photos / name)
        lat, lon = latlon(gps)
        assert distance_m(lat, lon, photo.lat, photo.lon) < 1.0, name
        assert abs(ratio(gps[g.GPSAltitude]) - photo.ele) < 0.5
        assert gps[g.GPSImgDirectionRef] == b"T" and gps[g.GPSVersionID] == (2, 2, 0, 0)
        if photo.speed > 3:
            assert angle_diff_deg(ratio(gps[g.GPSImgDirection]), photo.heading) < 8, name
        h, m, s = (ratio(x) for x in gps[g.GPSTimeStamp])
        assert gps[g.GPSDateStamp] == photo.time.strftime("%Y:%m:%d").encode()
        true_s = photo.time.hour * 3600 + photo.time.minute * 60 + photo.time.second
        assert abs(h * 3600 + m * 60 + s - true_s - photo.time.microsecond / 1e6) < 0.01


def test_geotag_rewrites_more_photos_than_one_batch_and_leaves_no_temp_files(
    tmp_path: Path,
) -> None:
    """Photos are flushed and renamed in batches of 256; two laps need two batches."""
    drive = sample.plan_drive(START, seed=2, laps=2, gps_noise_m=0.0)
    assert len(drive.photos) > 256
    photos = tmp_path / "p"
    sample.write_drive(drive, photos, camera_tz="+02:00")
    proc = mly(tmp_path, "geotag", str(photos), str(photos / "track.gpx"), "--tz", "+02:00")
    assert proc.returncode == 0, proc.stderr
    assert f"{len(drive.photos)} tagged" in proc.stdout
    assert sorted(p.name for p in photos.iterdir()) == sorted(
        [*by_name(drive), "track.gpx"]
    )  # no .mly- temp file left anywhere
    for name, photo in by_name(drive).items():
        data = piexif.load(str(photos / name))
        assert distance_m(*latlon(data["GPS"]), photo.lat, photo.lon) < 1.0, name
        assert data["0th"][piexif.ImageIFD.Make] == b"Acme"  # other tags kept


def test_geotag_time_offset_and_bearing_offset_matter(tmp_path: Path, noisy_drive) -> None:
    photos = tmp_path / "p"
    sample.write_drive(noisy_drive, photos, camera_offset_s=CAMERA_AHEAD_S)
    wrong = tmp_path / "wrong"
    shutil.copytree(photos, wrong)
    gpx = str(photos / "track.gpx")
    right = mly(tmp_path, "geotag", str(photos), gpx, "--tz", "+02:00", "--time-offset", "30",
                "--bearing-offset", "90")  # fmt: skip
    assert right.returncode == 0, right.stderr
    # The sign that says "camera 30 s behind" puts moving photos a minute's drive off.
    mly(tmp_path, "geotag", str(wrong), gpx, "--tz", "+02:00", "--time-offset", "-30")
    far = 0
    for name, photo in by_name(noisy_drive).items():
        gps = gps_of(photos / name)
        lat, lon = latlon(gps)
        # The log's own noise is up to a few metres; the geotagger adds nothing to it.
        assert distance_m(lat, lon, photo.gps_lat, photo.gps_lon) < 0.05, name
        assert distance_m(lat, lon, photo.lat, photo.lon) < 8, name
        if photo.speed > 8:
            direction = ratio(gps[piexif.GPSIFD.GPSImgDirection])
            assert angle_diff_deg(direction, photo.heading + 90) < 15, name
            wrong_gps = gps_of(wrong / name)
            if wrong_gps and distance_m(*latlon(wrong_gps), photo.lat, photo.lon) > 100:
                far += 1
    assert far > 50


def test_geotag_leaves_photos_outside_the_track_untouched(tmp_path: Path, noisy_drive) -> None:
    photos = tmp_path / "p"
    sample.write_drive(noisy_drive, photos, gpx_name=None)
    points = [(p.time, p.lat, p.lon, p.ele) for p in noisy_drive.track]
    gap_from = 20  # the logger lost its fix for 40 s, seconds 20-60
    jpegs.write_gpx(
        tmp_path / "a.gpx", [p for p in points if not gap_from < (p[0] - START).seconds < 60]
    )
    early = photos / "early.jpg"
    jpegs.make_jpeg(early, capture_time=datetime(2024, 6, 1, 10, 0, 0))  # 09:00 UTC - 1 h
    before = digest(photos)
    proc = mly(tmp_path, "geotag", str(photos), str(tmp_path / "a.gpx"), "--tz", "+02:00",
               "--max-gap", "30")  # fmt: skip
    assert proc.returncode == 1
    in_gap = {name for name, p in by_name(noisy_drive).items() if gap_from < p.t < 60}
    assert in_gap
    after = digest(photos)
    for name in in_gap:
        assert after[name] == before[name]
        assert f"{photos / name}: no track position" in proc.stderr
    assert f"{early}: no track position at 2024-06-01 08:00:00 UTC" in proc.stderr
    assert after["early.jpg"] == before["early.jpg"]
    assert f"set aside, outside the GPX track: {len(in_gap) + 1}" in proc.stdout
    assert gps_of(photos / "G0000001.JPG") != {}


# -- interpolate-direction ------------------------------------------------------------------------


def test_interpolate_direction_points_along_the_road(tmp_path: Path) -> None:
    drive = sample.plan_drive(START, gps_noise_m=0.0)
    photos = tmp_path / "p"
    sample.write_drive(drive, photos, with_gps_in_exif=True, gpx_name=None)
    for p in photos.iterdir():  # the camera wrote no direction
        data = piexif.load(str(p))
        del data["GPS"][piexif.GPSIFD.GPSImgDirection]
        piexif.insert(piexif.dump(data), str(p))
    jpegs.make_jpeg(photos / "nogps.jpg", capture_time=datetime(2024, 6, 1, 11, 0, 1))
    proc = mly(tmp_path, "interpolate-direction", str(photos), "--offset-angle", "-90")
    assert proc.returncode == 1, proc.stderr
    assert f"{photos / 'nogps.jpg'}: no GPS position in EXIF" in proc.stderr
    names = by_name(drive)
    checked = 0
    for name, photo in names.items():
        gps = gps_of(photos / name)
        before = latlon(gps)
        assert distance_m(*before, photo.gps_lat, photo.gps_lon) < 0.01  # position untouched
        nxt = names.get(f"G{photo.index + 1:07d}.JPG")
        if photo.speed > 8 and nxt is not None and nxt.speed > 8 and nxt.t - photo.t < 3:
            direction = ratio(gps[piexif.GPSIFD.GPSImgDirection])
            assert angle_diff_deg(direction, photo.heading - 90) < 5, name
            checked += 1
    assert checked > 80


# -- remove-duplicates ----------------------------------------------------------------------------


def test_remove_duplicates_keeps_one_photo_of_the_red_light(tmp_path: Path, noisy_drive) -> None:
    photos = tmp_path / "p"
    sample.write_drive(noisy_drive, photos, with_gps_in_exif=True, gpx_name=None)
    jpegs.make_jpeg(photos / "nogps.jpg", capture_time=datetime(2024, 6, 1, 11, 0, 1))
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    before = digest(photos)

    dry = mly(tmp_path, "remove-duplicates", str(photos), "--dry-run")
    assert dry.returncode == 1
    assert digest(photos) == before  # nothing moved, no log written
    assert "dry run, nothing moved" in dry.stdout and "would move" in dry.stderr

    proc = mly(tmp_path, "remove-duplicates", str(photos))
    assert proc.returncode == 1  # two photos could not be judged
    names = by_name(noisy_drive)
    left = {p.name for p in photos.glob("*.JPG")}
    light = {n for n, p in names.items() if p.flag == sample.AT_LIGHT}
    assert len(light & left) == 1
    stop = next(p for p in names.values() if p.flag == sample.AT_LIGHT)
    # Braking and pulling away may go with the stop; every other moving photo stays.
    moving = {
        n
        for n, p in names.items()
        if p.speed > 3 and distance_m(p.lat, p.lon, stop.lat, stop.lon) > 25
    }
    assert len(moving) > 100 and moving <= left
    dups = sorted(p.name for p in (photos / "duplicates").glob("*.JPG"))
    assert len(dups) >= len(light) - 1 and not set(dups) & left
    log = (photos / "duplicates" / "duplicates.log").read_text().splitlines()
    assert sorted(line.split(":")[0] for line in log) == dups
    assert all("standing still" in line or "duplicate of" in line for line in log)
    errors = (photos / "errors" / "errors.log").read_text()
    assert "nogps.jpg: no GPS position in EXIF" in errors
    assert "broken.jpg:" in errors
    assert {p.name for p in (photos / "errors").glob("*.jpg")} == {"nogps.jpg", "broken.jpg"}
    # Moved, never changed or deleted.
    after = {**digest(photos / "duplicates"), **digest(photos / "errors")}
    for name in dups + ["nogps.jpg", "broken.jpg"]:
        assert after[name] == before[name]
    assert f"{len(dups)} duplicates" in proc.stdout and "2 set aside" in proc.stdout


def test_remove_duplicates_only_duplicates_exits_0(tmp_path: Path, noisy_drive) -> None:
    photos = tmp_path / "p"
    sample.write_drive(noisy_drive, photos, with_gps_in_exif=True, gpx_name=None)
    dup_dir = tmp_path / "dups"
    proc = mly(tmp_path, "remove-duplicates", str(photos), str(dup_dir), "--window", "0", "-d", "3")
    assert proc.returncode == 0, proc.stderr
    assert len(list(dup_dir.glob("*.JPG"))) >= 10
    assert not (photos / "errors").exists()


# -- sequence-split -------------------------------------------------------------------------------


def test_sequence_split_moves_runs_into_numbered_folders(tmp_path: Path, noisy_drive) -> None:
    photos = tmp_path / "p"
    sample.write_drive(noisy_drive, photos, with_gps_in_exif=True, gpx_name=None)
    before = digest(photos)
    dry = mly(tmp_path, "sequence-split", str(photos), "--dry-run")
    assert dry.returncode == 0 and digest(photos) == before
    proc = mly(tmp_path, "sequence-split", str(photos), "--tz", "+02:00")
    assert proc.returncode == 0, proc.stderr
    names = by_name(noisy_drive)
    break_t = next(
        a.t for a, b in zip(noisy_drive.photos, noisy_drive.photos[1:], strict=False)
        if b.t - a.t > 600
    )  # fmt: skip
    first = {p.name for p in (photos / "0").iterdir()}
    second = {p.name for p in (photos / "1").iterdir()}
    assert first == {n for n, p in names.items() if p.t <= break_t}
    assert second == {n for n, p in names.items() if p.t > break_t}
    assert not list(photos.glob("*.JPG"))
    assert "2 sequences" in proc.stdout

    more = tmp_path / "q"
    sample.write_drive(noisy_drive, more, with_gps_in_exif=True, gpx_name=None)
    (more / "0").mkdir()  # numbering goes on after folders already there
    proc = mly(tmp_path, "sequence-split", str(more), "100", "60", "--max-images", "50")
    assert proc.returncode == 0, proc.stderr
    sizes = [len(list((more / str(i)).iterdir())) for i in range(1, 6)]
    assert not (more / "6").exists()
    assert sizes[0] == 50 and max(sizes) <= 50 and sum(sizes) == len(names)


# -- add-tags / add-project -----------------------------------------------------------------------


def test_add_tags_and_add_project_write_the_description(tmp_path: Path, noisy_drive) -> None:
    photos = tmp_path / "p"
    sample.write_drive(
        noisy_drive, photos, with_gps_in_exif=True, camera_offset_s=30, gpx_name=None
    )
    for name in list(by_name(noisy_drive))[:100]:
        (photos / "a").mkdir(exist_ok=True)
        (photos / name).rename(photos / "a" / name)
    jpegs.make_jpeg(photos / "nogps.jpg", capture_time=datetime(2024, 6, 1, 11, 0, 1))
    nogps_before = (photos / "nogps.jpg").read_bytes()
    secret = "key-" + uuid.uuid4().hex
    proc = mly(tmp_path, "add-tags", str(photos), "--username", "alice", "--user-key", secret,
               "--tz", "+02:00", "--time-offset", "30")  # fmt: skip
    assert proc.returncode == 1
    assert secret not in proc.stdout + proc.stderr
    assert f"{photos / 'nogps.jpg'}: no GPS position" in proc.stderr
    assert (photos / "nogps.jpg").read_bytes() == nogps_before
    sequences: dict[str, set[str]] = {}
    photo_ids = set()
    for name, photo in by_name(noisy_drive).items():
        path = photos / "a" / name if (photos / "a" / name).exists() else photos / name
        desc = description(path)
        sequences.setdefault(path.parent.name, set()).add(desc["MAPSequenceUUID"])
        photo_ids.add(desc["MAPPhotoUUID"])
        assert desc["MAPSettingsUsername"] == "alice" and desc["MAPSettingsUserKey"] == secret
        assert abs(desc["MAPLatitude"] - photo.gps_lat) < 1e-6
        assert abs(desc["MAPLongitude"] - photo.gps_lon) < 1e-6
        assert desc["MAPCaptureTime"] == photo.time.strftime("%Y_%m_%d_%H_%M_%S_%f")[:-3]
        assert desc["MAPFilename"] == name and desc["MAPDeviceMake"] == "Acme"
    assert len(photo_ids) == len(noisy_drive.photos)
    assert all(len(ids) == 1 for ids in sequences.values())
    assert len(set.union(*sequences.values())) == 2  # one per folder

    # A given sequence UUID goes into every photo.
    given = str(uuid.uuid4())
    proc = mly(tmp_path, "add-tags", str(photos / "a"), given, "--tz", "+02:00")
    assert proc.returncode == 0, proc.stderr
    assert {description(p)["MAPSequenceUUID"] for p in (photos / "a").iterdir()} == {given}

    proc = mly(tmp_path, "add-project", str(photos), "Bike lanes")
    assert proc.returncode == 1
    assert f"{photos / 'nogps.jpg'}: no Mapillary description" in proc.stderr
    assert (photos / "nogps.jpg").read_bytes() == nogps_before
    first = photos / "a" / "G0000001.JPG"
    assert description(first)["MAPSettingsProject"] == "Bike lanes"
    proc = mly(tmp_path, "add-project", str(photos / "a"), "Other")
    assert proc.returncode == 0 and "kept the project they had" in proc.stdout
    assert description(first)["MAPSettingsProject"] == "Bike lanes"
    proc = mly(tmp_path, "add-project", str(photos / "a"), "Other", "--overwrite")
    assert proc.returncode == 0
    desc = description(first)
    assert desc["MAPSettingsProject"] == "Other" and desc["MAPSequenceUUID"] == given
    # add-tags again keeps the project it did not write.
    mly(tmp_path, "add-tags", str(first), "--tz", "+02:00")
    assert description(first)["MAPSettingsProject"] == "Other"


# -- help and usage errors ------------------------------------------------------------------------

COMMANDS = [
    "fix-dates",
    "geotag",
    "interpolate-direction",
    "remove-duplicates",
    "sequence-split",
    "add-tags",
    "add-project",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_an_example(tmp_path: Path, command: str) -> None:
    proc = mly(tmp_path, command, "--help")
    assert proc.returncode == 0
    assert "example:" in proc.stdout and f"mapillary-daemon {command} " in proc.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["fix-dates", "{d}", "2024-06-01 09:00:00", "2", "--tz", "Mars/Olympus"],
        ["fix-dates", "{d}", "yesterday", "2"],
        ["fix-dates", "{d}", "2024-06-01 09:00:00", "two"],
        ["geotag", "{d}", "{d}/missing.gpx"],
        ["geotag", "{d}", "{d}/bad.gpx"],
        ["geotag", "{d}/nowhere", "{d}/ok.gpx"],
        ["geotag", "{d}", "{d}/ok.gpx", "--tz", "+25:00"],
        ["interpolate-direction", "{d}", "--tz", "nowhere"],
        ["remove-duplicates", "{d}", "-d", "-1"],
        ["sequence-split", "{d}", "0"],
        ["add-tags", "{d}", "not-a-uuid"],
        ["add-project", "{d}/nowhere", "P"],
    ],
)
def test_bad_arguments_exit_2_and_touch_nothing(tmp_path: Path, args: list[str]) -> None:
    d = tmp_path / "d"
    d.mkdir()
    jpegs.make_jpeg(d / "a.jpg", capture_time=datetime(2024, 6, 1, 9), lat=52.5, lon=13.4)
    (d / "bad.gpx").write_text("<html>not gpx</html>")
    jpegs.write_gpx(
        d / "ok.gpx", [(START, 52.5, 13.4, None), (START + timedelta(1), 52.5, 13.4, 1.0)]
    )
    before = digest(d)
    proc = mly(tmp_path, *[a.format(d=d) for a in args])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip() and "Traceback" not in proc.stderr
    assert digest(d) == before
