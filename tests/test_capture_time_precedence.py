"""Which capture time wins: the GPS stamp over DateTimeOriginal (as the official uploader
reads them), and the times fix-dates writes over a GPS stamp already in the photo (often one
geotag wrote from the old, wrong time): fix-dates removes that stamp and keeps the position."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import piexif
import pytest

from daemon.media.exif import read_exif
from tests import jpegs
from tests.daemon_proc import run_cli

WRONG_CAMERA_TIME = datetime(2020, 1, 1, 0, 0, 0)
STALE_STAMP = datetime(2019, 12, 31, 23, 0, 0, tzinfo=UTC)  # what geotag --tz +01:00 wrote


def _geotagged(folder: Path, n: int) -> list[Path]:
    folder.mkdir()
    return [
        jpegs.make_jpeg(
            folder / f"frame_{i}.jpg",
            capture_time=WRONG_CAMERA_TIME + timedelta(seconds=i),
            gps_time=STALE_STAMP + timedelta(seconds=i),
            lat=52.5 + i * 1e-4,
            lon=13.4,
            altitude=40.0,
        )
        for i in range(1, n + 1)
    ]


def test_the_gps_stamp_wins_over_the_cameras_clock(tmp_path: Path) -> None:
    [photo] = _geotagged(tmp_path / "p", 1)
    info = read_exif(photo)
    assert info.time_source == "gps"
    assert info.capture_time == STALE_STAMP + timedelta(seconds=1)


def test_fix_dates_wins_over_a_stale_gps_stamp_and_keeps_the_position(tmp_path: Path) -> None:
    photos = _geotagged(tmp_path / "p", 3)
    before = {p: piexif.load(str(p))["GPS"] for p in photos}
    fixed = run_cli(
        tmp_path, "fix-dates", str(tmp_path / "p"), "2024-06-01 09:00:00", "2", "--tz", "+02:00"
    )
    assert fixed.returncode == 0, fixed.stderr
    assert "3 had a GPS time stamp, now removed" in fixed.stdout
    zone = timezone(timedelta(hours=2))
    for i, photo in enumerate(photos):
        info = read_exif(photo)
        assert info.time_source == "exif"
        assert info.capture_time == datetime(2024, 6, 1, 9, 0, 2 * i, tzinfo=zone)
        gps = piexif.load(str(photo))["GPS"]
        g = piexif.GPSIFD
        assert g.GPSTimeStamp not in gps and g.GPSDateStamp not in gps
        kept = {t: v for t, v in before[photo].items() if t not in (g.GPSTimeStamp, g.GPSDateStamp)}
        assert gps == kept  # position, altitude, version as they were
    # and every later step reads the new times: process describes them in UTC
    done = run_cli(tmp_path, "process", str(tmp_path / "p"), "--desc-path", "-")
    assert done.returncode == 0, done.stderr
    times = sorted(entry["MAPCaptureTime"] for entry in json.loads(done.stdout))
    assert times == [
        "2024_06_01_07_00_00_000",
        "2024_06_01_07_00_02_000",
        "2024_06_01_07_00_04_000",
    ]
    assert "capture time: DateTimeOriginal+OffsetTimeOriginal 3" in done.stderr


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed")
def test_exiftool_reads_the_time_fix_dates_wrote(tmp_path: Path) -> None:
    [photo] = _geotagged(tmp_path / "p", 1)
    assert run_cli(tmp_path, "fix-dates", str(photo), "2024-06-01 09:00:00", "2").returncode == 0
    out = subprocess.run(
        ["exiftool", "-j", "-GPSDateTime", "-DateTimeOriginal", "-GPSLatitude#", str(photo)],
        capture_output=True,
        text=True,
        check=True,
    )
    [tags] = json.loads(out.stdout)
    assert "GPSDateTime" not in tags
    assert tags["DateTimeOriginal"] == "2024:06:01 09:00:00"
    assert tags["GPSLatitude"] == pytest.approx(52.5001, abs=1e-6)
