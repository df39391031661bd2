"""The commands as a user runs them (real subprocesses on the synthetic drive).

add-tags after geotag finds the capture time as process does (the GPS time geotag wrote,
whatever zone this machine is in) and honours the old script's MAPILLARY_USERNAME and
MAPILLARY_EMAIL; process and geotag on good photos mixed with the worst files name each bad
one once with its reason and leave it as it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from daemon.demo import drive as sample
from daemon.media import exif, jpeg

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


def bad_photos(folder: Path) -> dict[str, str]:
    """The worst files users meet, each with the start of the reason it must be set aside with."""
    good = (folder / "G0000001.JPG").read_bytes()
    head = jpeg.parse_head(good)
    assert head.exif_span is not None
    start = head.exif_span[0] + 10  # the TIFF block
    bad = {
        "heic.jpg": (
            b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64,
            "HEIC photo",
        ),
        "cut.jpg": (good[: len(good) // 2], "truncated JPEG"),
        "header_cut.jpg": (good[: start + 20], "truncated JPEG header"),
        "no_tiff.jpg": (good[:start] + b"JUNKJUNK" + good[start + 8 :], "corrupt EXIF"),
        "ifd0.jpg": (good[: start + 4] + b"\xff\xff\x00\x00" + good[start + 8 :], "corrupt EXIF"),
        "empty.jpg": (b"", "empty file"),
    }
    for name, (blob, _) in bad.items():
        (folder / name).write_bytes(blob)
    return {name: reason for name, (_, reason) in bad.items()}


def test_process_and_geotag_on_good_photos_mixed_with_the_worst_files(tmp_path: Path) -> None:
    drive = sample.plan_drive(START, seed=5, gps_noise_m=0.0)
    photos = tmp_path / "p"
    sample.write_drive(drive, photos, camera_tz="+02:00")
    track = photos / "track.gpx"
    moved = tmp_path / "track.gpx"
    track.rename(moved)
    reasons = bad_photos(photos)
    before = {name: (photos / name).read_bytes() for name in reasons}
    for command in ("process", "geotag"):
        done = mly(tmp_path, command, str(photos), "--gpx" if command == "process" else str(moved),
                   *([str(moved)] if command == "process" else []), "--tz", "+02:00")  # fmt: skip
        assert done.returncode == 1, done.stderr
        for name, reason in reasons.items():
            lines = [x for x in done.stderr.splitlines() if x.startswith(f"{photos / name}:")]
            assert len(lines) == 1 and reason in lines[0], (command, name, done.stderr)
            assert (photos / name).read_bytes() == before[name]
        assert "Traceback" not in done.stderr
    for photo in drive.photos:
        info = exif.read_exif(photos / f"G{photo.index:07d}.JPG")
        assert info.lat is not None and info.capture_time is not None
