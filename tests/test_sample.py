"""The synthetic drive: its truth is a believable drive, and the files say what the truth says.

Files are read back with piexif, Pillow and gpxpy directly (not our own readers), so a fault in
daemon.media cannot hide a fault here.
"""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import gpxpy
import piexif
import pytest
from PIL import Image

from daemon.core.geo import angle_diff_deg, bearing_deg, distance_m
from daemon.demo import drive as sample

START = datetime(2024, 6, 1, 9, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def drive() -> sample.Drive:
    return sample.plan_drive(START, seed=3)


def rational(value: tuple[int, int]) -> float:
    return value[0] / value[1]


def dms(value: tuple[tuple[int, int], ...]) -> float:
    d, m, s = (rational(v) for v in value)
    return d + m / 60 + s / 3600


def test_photos_come_every_interval_except_during_the_break(drive: sample.Drive) -> None:
    gaps = [b.t - a.t for a, b in zip(drive.photos, drive.photos[1:], strict=False)]
    long_gaps = [g for g in gaps if g > 2.0 + 1e-6]
    assert len(long_gaps) == 1 and long_gaps[0] >= 600  # one break of 10+ minutes
    assert all(abs(g - 2.0) < 1e-6 for g in gaps if g <= 2.0 + 1e-6)
    assert [p.index for p in drive.photos] == list(range(1, len(drive.photos) + 1))
    assert all(p.time == START + timedelta(seconds=p.t) for p in drive.photos)
    assert 150 <= len(drive.photos) <= 250


def test_truth_moves_at_its_stated_speed(drive: sample.Drive) -> None:
    """Between two photos the camera covers about speed × 2 s: geometry and speed agree."""
    for a, b in zip(drive.photos, drive.photos[1:], strict=False):
        if b.t - a.t > 2.1:
            continue
        moved = distance_m(a.lat, a.lon, b.lat, b.lon)
        expected = (a.speed + b.speed) / 2 * (b.t - a.t)
        # Straight stretches are exact; arcs (chord shorter) and acceleration changes are close.
        assert abs(moved - expected) < 0.15 * expected + 1.0, (a.index, moved, expected)
    cruising = [p.speed for p in drive.photos if p.speed >= 9.5]
    assert max(cruising) <= 14.0 and len(cruising) > 60
    slow = [p for p in drive.photos if 5.5 <= p.speed <= 6.5]
    assert len(slow) >= 15  # the slower stretch


def test_heading_is_the_direction_of_travel_and_turns_as_planned(drive: sample.Drive) -> None:
    moving = [p for p in drive.photos if p.speed > 8]
    for a, b in zip(moving, moving[1:], strict=False):
        if b.t - a.t < 2.1 and abs(a.heading - b.heading) < 1e-9:
            assert angle_diff_deg(bearing_deg(a.lat, a.lon, b.lat, b.lon), a.heading) < 0.5
    # Heading changes across each turn of the lap: +90, -120, then the bend and -90.
    changes = []
    for a, b in zip(drive.photos, drive.photos[1:], strict=False):
        step = (b.heading - a.heading + 180) % 360 - 180
        if abs(step) > 10:
            changes.append(step)
    assert any(s > 30 for s in changes) and sum(1 for s in changes if s < -30) >= 2
    headings = {round(p.heading) % 360 for p in drive.photos if p.speed >= 9.5}
    assert {90, 180, 60, 0} <= headings


def test_a_minute_at_the_red_light_then_parked(drive: sample.Drive) -> None:
    at_light = [p for p in drive.photos if p.flag == sample.AT_LIGHT]
    assert len(at_light) == 30  # 60 s at one photo per 2 s
    assert all(p.speed == 0 for p in at_light)
    first = at_light[0]
    assert all(distance_m(first.lat, first.lon, p.lat, p.lon) < 1e-6 for p in at_light)
    # The GPS wanders a few metres there while the truth stands still.
    spread = max(distance_m(first.gps_lat, first.gps_lon, p.gps_lat, p.gps_lon) for p in at_light)
    assert 0.5 < spread < 15
    parked = [p for p in drive.photos if p.flag == sample.PARKED]
    assert parked and all(p.speed == 0 for p in parked)
    break_at = next(
        i
        for i, (a, b) in enumerate(zip(drive.photos, drive.photos[1:], strict=False))
        if b.t - a.t > 600
    )
    assert drive.photos[break_at].flag == sample.PARKED == drive.photos[break_at + 1].flag


def test_gps_log_every_second_noisy_but_close_and_off_during_the_break(drive: sample.Drive) -> None:
    times = [(p.time - START).total_seconds() for p in drive.track]
    steps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert sum(1 for s in steps if s > 1) == 1 and max(steps) > 600
    assert all(s == 1 for s in steps if s <= 1)
    errors = [distance_m(p.lat, p.lon, p.gps_lat, p.gps_lon) for p in drive.photos]
    assert max(errors) < 10 and 0.3 < sum(errors) / len(errors) < 4
    assert all(25 < p.ele < 45 for p in drive.track)


def test_same_seed_same_drive_other_seed_other_noise() -> None:
    a, b = sample.plan_drive(START, seed=5), sample.plan_drive(START, seed=5)
    c = sample.plan_drive(START, seed=6)
    assert a.photos == b.photos and a.track == b.track
    assert [p.lat for p in a.photos] == [p.lat for p in c.photos]  # same truth
    assert [p.gps_lat for p in a.photos] != [p.gps_lat for p in c.photos]


def test_without_noise_the_log_is_the_truth() -> None:
    d = sample.plan_drive(START, gps_noise_m=0.0)
    worst = max(distance_m(p.lat, p.lon, p.gps_lat, p.gps_lon) for p in d.photos)
    assert worst < 0.5  # only the chord of the tightest corner between two fixes


def test_laps_and_interval_scale_the_drive() -> None:
    d = sample.plan_drive(START, laps=3, interval_s=1.0, break_s=600)
    one = sample.plan_drive(START, interval_s=1.0, break_s=600)
    assert abs(len(d.photos) - 3 * len(one.photos)) <= 3
    assert abs(d.duration - 3 * one.duration) < 1e-6
    with pytest.raises(ValueError):
        sample.plan_drive(datetime(2024, 6, 1, 9))  # naive start


def test_write_drive_writes_camera_time_with_clock_error(
    tmp_path: Path, drive: sample.Drive
) -> None:
    paths = sample.write_drive(drive, tmp_path, camera_tz="+02:00", camera_offset_s=30.0)
    assert [p.name for p in paths[:2]] == ["G0000001.JPG", "G0000002.JPG"]
    assert len(paths) == len(drive.photos)
    for path, photo in zip(paths, drive.photos, strict=True):
        data = piexif.load(str(path))
        stamp = data["Exif"][piexif.ExifIFD.DateTimeOriginal].decode()
        subsec = data["Exif"][piexif.ExifIFD.SubSecTimeOriginal].decode()
        local = datetime.strptime(f"{stamp}.{subsec}", "%Y:%m:%d %H:%M:%S.%f")
        expected = (photo.time + timedelta(hours=2, seconds=30)).replace(tzinfo=None)
        assert abs((local - expected).total_seconds()) < 0.001
        assert piexif.ExifIFD.OffsetTimeOriginal not in data["Exif"]
        assert data["0th"][piexif.ImageIFD.Make] == b"Acme"
        assert not data["GPS"]
    with Image.open(paths[0]) as image:
        image.load()
        assert image.size == (64, 48)


def test_named_camera_zone_follows_daylight_saving(tmp_path: Path, drive: sample.Drive) -> None:
    summer = sample.camera_local_time(drive.photos[0], "Europe/Berlin")
    winter_drive = sample.plan_drive(datetime(2024, 1, 10, 9, tzinfo=UTC))
    winter = sample.camera_local_time(winter_drive.photos[0], "Europe/Berlin")
    assert summer.hour == 11 and winter.hour == 10


def test_gps_in_exif_is_the_log_at_the_true_time(tmp_path: Path, drive: sample.Drive) -> None:
    paths = sample.write_drive(drive, tmp_path, with_gps_in_exif=True, camera_offset_s=-5)
    for path, photo in list(zip(paths, drive.photos, strict=True))[::7]:
        gps = piexif.load(str(path))["GPS"]
        lat = dms(gps[piexif.GPSIFD.GPSLatitude])
        lon = dms(gps[piexif.GPSIFD.GPSLongitude])
        assert distance_m(lat, lon, photo.gps_lat, photo.gps_lon) < 0.01
        assert abs(rational(gps[piexif.GPSIFD.GPSImgDirection]) - photo.heading) < 0.01
        h, m, s = (rational(v) for v in gps[piexif.GPSIFD.GPSTimeStamp])
        assert math.isclose(
            h * 3600 + m * 60 + s,
            photo.time.hour * 3600
            + photo.time.minute * 60
            + photo.time.second
            + photo.time.microsecond / 1e6,
            abs_tol=0.001,
        )


def test_gpx_file_holds_the_log(tmp_path: Path, drive: sample.Drive) -> None:
    sample.write_drive(drive, tmp_path, gpx_name="ride.gpx", name_pattern="IMG_%d.jpg")
    assert (tmp_path / "IMG_1.jpg").is_file()
    with open(tmp_path / "ride.gpx", encoding="utf-8") as fh:
        doc = gpxpy.parse(fh)
    points = [p for t in doc.tracks for s in t.segments for p in s.points]
    assert len(points) == len(drive.track)
    for got, want in list(zip(points, drive.track, strict=True))[::50]:
        assert got.time == want.time
        assert abs(got.latitude - want.lat) < 1e-7 and abs(got.longitude - want.lon) < 1e-7
        assert abs(got.elevation - want.ele) < 0.01


def test_big_files_and_bytes_for_slow_writers(tmp_path: Path, drive: sample.Drive) -> None:
    photo = drive.photos[10]
    blob = sample.write_jpeg_bytes(photo, jpeg_size=(2400, 1800), quality=85)
    assert 2_500_000 < len(blob) < 5_000_000
    with Image.open(io.BytesIO(blob)) as image:
        image.load()
        assert image.size == (2400, 1800)
    other = sample.write_jpeg_bytes(drive.photos[11], jpeg_size=(2400, 1800), quality=85)
    assert other != blob  # every photo differs (its EXIF time), so content hashes differ
    path = sample.write_drive(drive, tmp_path, camera_offset_s=0)[10]
    assert path.read_bytes() == sample.write_jpeg_bytes(photo)
