"""add-tags after geotag, as a user runs them: the capture time is found as process finds it
(the GPS time geotag wrote, whatever zone this machine is in), and the old script's
MAPILLARY_USERNAME and MAPILLARY_EMAIL are honoured. Real subprocesses on the synthetic drive.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from daemon.demo import drive as sample
from daemon.media import exif

ROOT = Path(__file__).resolve().parents[1]
START = datetime(2024, 6, 1, 9, 0, 0, tzinfo=UTC)


def mly(cwd: Path, *args: str, **env_extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CONFIG_HOME": str(cwd / ".config")}
    env = {k: v for k, v in env.items() if not k.startswith("MAPILLARY")}
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


def description(path: Path) -> dict[str, object]:
    text = exif.read_exif(path).description
    assert text is not None
    found: dict[str, object] = json.loads(text)
    return found


def test_add_tags_after_geotag_in_another_zone_writes_the_true_time(tmp_path: Path) -> None:
    """geotag --tz +02:00, then add-tags with no --tz on a machine in UTC-5: MAPCaptureTime is
    the true time (it was written 2 h wrong: the camera time read in the machine's zone)."""
    drive = sample.plan_drive(START, seed=3, gps_noise_m=0.0)
    photos = tmp_path / "p"
    sample.write_drive(drive, photos, camera_tz="+02:00", camera_offset_s=20.0)
    track = photos / "track.gpx"
    geotag = mly(
        tmp_path, "geotag", str(photos), str(track), "--tz", "+02:00", "--time-offset", "20"
    )
    assert geotag.returncode == 0, geotag.stderr
    track.unlink()
    tagged = mly(
        tmp_path,
        "add-tags",
        str(photos),
        "--time-offset",
        "20",  # given again, as the old scripts' users do: a GPS time takes no offset
        TZ="America/New_York",
        MAPILLARY_USERNAME="bob",
        MAPILLARY_EMAIL="bob@example.org",
    )
    assert tagged.returncode == 0, tagged.stderr
    for photo in drive.photos:
        desc = description(photos / f"G{photo.index:07d}.JPG")
        assert desc["MAPCaptureTime"] == photo.time.strftime("%Y_%m_%d_%H_%M_%S_%f")[:-3]
        assert desc["MAPSettingsUsername"] == "bob"
        assert desc["MAPSettingsEmail"] == "bob@example.org"


def test_the_username_flag_wins_over_the_environment(tmp_path: Path) -> None:
    drive = sample.plan_drive(START, seed=4, gps_noise_m=0.0)
    photos = tmp_path / "p"
    sample.write_drive(drive, photos, with_gps_in_exif=True, gpx_name=None)
    done = mly(tmp_path, "add-tags", str(photos), "--username", "alice", MAPILLARY_USERNAME="bob")
    assert done.returncode == 0, done.stderr
    first = description(photos / f"G{drive.photos[0].index:07d}.JPG")
    assert first["MAPSettingsUsername"] == "alice" and "MAPSettingsEmail" not in first
