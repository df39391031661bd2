"""`process` end to end: a folder of real JPEGs and a real GPX track, run as a subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from datetime import timedelta, timezone
from pathlib import Path

import pytest

from daemon.core.geo import angle_diff_deg, distance_m
from daemon.demo import drive
from daemon.pipeline.describe import parse_capture_time, validate_description
from tests.corpus import HEIC

ROOT = Path(__file__).resolve().parents[1]
CAMERA_ZONE = timezone(timedelta(hours=2))
CAMERA_AHEAD_S = 3.0  # the camera clock runs 3 s ahead of the GPS
SEED = 11


def run_process(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),  # no user configuration leaks in
        "PYTHONPATH": str(ROOT),
    }
    env = {k: v for k, v in env.items() if not k.startswith("MAPILLARY_DAEMON_")}
    return subprocess.run(
        [sys.executable, "-m", "daemon", "process", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, float]]:
    """The drive as photos (camera local time, clock ahead) plus three photos that must fail."""
    base = tmp_path_factory.mktemp("capture")
    photos = base / "photos"
    (photos / "nested").mkdir(parents=True)
    (photos / "duplicates").mkdir()
    fixes = drive.gps_track(SEED)
    gpx = base / "track.gpx"
    drive.write_gpx(gpx, fixes)
    truth_t: dict[str, float] = {}
    for i, t in enumerate(drive.photo_times()):
        camera = drive.at(t + CAMERA_AHEAD_S).astimezone(CAMERA_ZONE).replace(tzinfo=None)
        folder = photos / "nested" if t > drive.WALK[0] else photos
        name = f"G{i:04d}.JPG"
        drive.write_jpeg(folder / name, camera)
        truth_t[name] = t
    # Before the track starts, no time at all, and a file cut off mid-way.
    early = drive.at(-3600 + CAMERA_AHEAD_S).astimezone(CAMERA_ZONE).replace(tzinfo=None)
    drive.write_jpeg(photos / "early.jpg", early)
    drive.write_jpeg(photos / "notime.jpg", None)
    drive.write_jpeg(photos / "cut.jpg", early)
    data = (photos / "cut.jpg").read_bytes()
    (photos / "cut.jpg").write_bytes(data[: len(data) // 2])
    # Ignored: dotfiles and the old scripts' duplicates folder.
    drive.write_jpeg(photos / ".hidden.jpg", early)
    drive.write_jpeg(photos / "duplicates" / "old.jpg", early)
    return photos, gpx, truth_t


@pytest.fixture(scope="module")
def processed(capture, tmp_path_factory):
    photos, gpx, truth_t = capture
    work = tmp_path_factory.mktemp("run")
    before = digest(photos)
    proc = run_process(
        work,
        str(photos),
        "--gpx",
        str(gpx),
        "--tz",
        "+02:00",
        "--time-offset",
        str(CAMERA_AHEAD_S),
    )
    entries = json.loads((photos / "mapillary_image_description.json").read_text())
    after = digest(photos)
    after.pop("mapillary_image_description.json")
    return proc, entries, before, after, truth_t


def test_exit_code_summary_and_originals_untouched(processed) -> None:
    proc, entries, before, after, truth_t = processed
    assert proc.returncode == 1, proc.stderr
    assert after == before
    kept = [e for e in entries if "error" not in e]
    dups = [e for e in entries if e.get("error", {}).get("type") == "MapillaryDuplicationError"]
    assert f"process: {len(kept)} images in 2 sequences, {len(dups)} duplicates, 3 set aside" in (
        proc.stdout
    )
    assert "zone of camera times: +02:00; time offset: 3 s (camera ahead)" in proc.stdout
    for name in ("early.jpg", "notime.jpg", "cut.jpg"):
        assert name in proc.stderr
    assert ".hidden" not in proc.stdout + json.dumps(entries)
    assert "old.jpg" not in json.dumps(entries)
    assert len(entries) == len(truth_t) + 3


def test_set_aside_photos_say_why(processed) -> None:
    _, entries, *_ = processed
    errors = {Path(e["filename"]).name: e["error"] for e in entries if "error" in e}
    assert errors["early.jpg"]["type"] == "MapillaryOutsideGPXTrackError"
    # The message names the time used (true time) and the span of the track.
    assert "2024-06-01 08:00:00 UTC" in errors["early.jpg"]["message"]
    assert "2024-06-01 09:00:00 UTC to 2024-06-01 09:15:08 UTC" in errors["early.jpg"]["message"]
    assert errors["notime.jpg"]["type"] == "MapillaryGeoTaggingError"
    assert errors["cut.jpg"]["type"] in (
        "MapillaryInvalidFileError",
        "MapillaryMetadataValidationError",
    )


def test_positions_times_and_headings_match_the_truth(processed) -> None:
    _, entries, _, _, truth_t = processed
    fixes = drive.gps_track(SEED)
    usable = [e for e in entries if "error" not in e]
    assert usable
    for e in usable:
        assert validate_description(e) is None
        assert e["filename"] == str(Path(e["filename"]).absolute())
        assert e["filetype"] == "image"
        t = truth_t[e["MAPFilename"]]
        # The true time (camera time minus the offset), to the millisecond.
        assert parse_capture_time(e["MAPCaptureTime"]) == drive.at(t)
        lat, lon = drive.interpolate(fixes, t)
        # Positions come from the smoothed track (issue 15): within the GPS noise of the raw
        # interpolation, and close to the truth where the track is clean (the demo's corner
        # turns 90° and halves the speed in no time, which costs the smoother up to 0.4 m).
        assert distance_m(e["MAPLatitude"], e["MAPLongitude"], lat, lon) < 1.5
        x, y, speed = drive.truth(t)
        if not (drive.noisy(t - 1) or drive.noisy(t + 1)):
            tlat, tlon = drive.to_latlon(x, y)
            assert distance_m(e["MAPLatitude"], e["MAPLongitude"], tlat, tlon) < 0.5
            assert abs(e["MAPAltitude"] - (30.0 + 0.01 * t)) < 0.01
            if speed > 0 and abs(t - drive.CORNER_T) > 1.5:
                heading = 90.0 if t < drive.CORNER_T else 0.0
                assert angle_diff_deg(e["MAPCompassHeading"]["TrueHeading"], heading) < 1.0


def test_split_at_the_long_break_and_duplicates_at_the_light(processed) -> None:
    _, entries, _, _, truth_t = processed
    usable = [e for e in entries if "error" not in e]
    seqs: dict[str, list[float]] = {}
    for e in usable:
        seqs.setdefault(e["MAPSequenceUUID"], []).append(truth_t[e["MAPFilename"]])
    parts = sorted(seqs.values())
    assert len(parts) == 2
    assert max(parts[0]) < drive.BREAK[0] < drive.WALK[0] <= min(parts[1])

    def story(t: float) -> str:
        x, y, speed = drive.truth(t)
        if y == 0.0 and abs(x - 620.0) <= 6.0:
            # Braking in and pulling away at more than 1 m/s is moving: kept (issue 15), but for
            # a photo within the smoothed speed's error at the corner of a stop (a few tenths
            # of a m/s on this 1.5 m-noise log), which may go with the stop.
            if speed <= 1.0:
                return "light"
            return "edge" if speed < 1.3 else "at the light, moving"
        if drive.phase(t) in ("walk", "corner"):
            return drive.phase(t)
        if speed >= 5.0 and (y != 0.0 or abs(x - 620.0) > drive.STOP_EDGE_M):
            return "drive"
        return "edge"

    kept = [story(truth_t[e["MAPFilename"]]) for e in usable]
    every = [story(t) for t in truth_t.values()]
    assert kept.count("light") == 1
    for part in ("walk", "corner", "drive", "at the light, moving"):
        assert kept.count(part) == every.count(part), part


def test_description_to_stdout_and_usage_errors(capture, tmp_path: Path) -> None:
    photos, gpx, _ = capture
    one = tmp_path / "one"
    one.mkdir()
    for name in ("G0001.JPG", "G0002.JPG"):
        shutil.copy(photos / name, one / name)
    proc = run_process(
        tmp_path,
        str(one),
        "--gpx",
        str(gpx),
        "--tz",
        "+02:00",
        "--time-offset",
        "3",
        "--desc-path",
        "-",
    )
    assert proc.returncode == 0, proc.stderr
    entries = json.loads(proc.stdout)
    assert [e["MAPFilename"] for e in entries] == ["G0001.JPG", "G0002.JPG"]
    assert "process: 2 images in 1 sequence," in proc.stderr
    assert not (one / "mapillary_image_description.json").exists()
    bad = run_process(tmp_path, str(one), "--tz", "Nowhere/Land")
    assert bad.returncode == 2 and "Nowhere/Land" in bad.stderr
    missing = run_process(tmp_path, str(tmp_path / "absent"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    bad_gpx = tmp_path / "bad.gpx"
    bad_gpx.write_text("<gpx><trk>")
    broken = run_process(tmp_path, str(one), "--gpx", str(bad_gpx))
    assert broken.returncode == 2 and "bad.gpx" in broken.stderr


def test_without_gpx_photos_without_gps_are_set_aside(capture, tmp_path: Path) -> None:
    photos, _, _ = capture
    folder = tmp_path / "p"
    folder.mkdir()
    shutil.copy(photos / "G0001.JPG", folder / "a.jpg")
    drive.write_jpeg(folder / "b.jpg", drive.at(10).replace(tzinfo=None), gps=(52.5, 13.4))
    proc = run_process(tmp_path, str(folder), "--tz", "UTC")
    assert proc.returncode == 1
    entries = {
        Path(e["filename"]).name: e
        for e in json.loads((folder / "mapillary_image_description.json").read_text())
    }
    assert entries["a.jpg"]["error"]["type"] == "MapillaryGPXEmptyError"
    assert abs(entries["b.jpg"]["MAPLatitude"] - 52.5) < 1e-6
    assert entries["b.jpg"]["MAPCaptureTime"] == "2024_06_01_09_00_10_000"
    assert "zone of camera times: UTC" in proc.stdout


@pytest.mark.skipif(
    not HEIC.is_file(), reason=f"the iPhone HEIC of the corpus is not here ({HEIC})"
)
def test_an_iphone_heic_in_the_folder_is_named_with_what_to_do(capture, tmp_path: Path) -> None:
    photos, gpx, _ = capture
    folder = tmp_path / "phone"
    folder.mkdir()
    shutil.copy(photos / "G0001.JPG", folder / "G0001.JPG")
    shutil.copy(HEIC, folder / HEIC.name)
    proc = run_process(tmp_path, str(folder), "--gpx", str(gpx), "--tz", "+02:00")
    out = proc.stdout + proc.stderr
    assert HEIC.name in out, out
    assert "HEIC photo, not a JPEG: convert it to JPEG first" in out, out
    assert proc.returncode == 1  # a photo was set aside; the JPEG beside it was processed


def test_infinite_elevations_and_a_bad_fix_give_strict_json(
    capture: tuple[Path, Path, dict[str, float]], tmp_path: Path
) -> None:
    photos, gpx, _ = capture
    one = tmp_path / "one"
    one.mkdir()
    for name in ("G0001.JPG", "G0002.JPG", "G0003.JPG"):
        shutil.copy(photos / name, one / name)
    text = gpx.read_text()
    lines = text.splitlines(keepends=True)
    eles = [i for i, line in enumerate(lines) if "<ele>" in line]
    for n, i in enumerate(eles[:40]):  # every fix near the photos: infinite elevations
        start, end = lines[i].index("<ele>") + 5, lines[i].index("</ele>")
        lines[i] = lines[i][:start] + ("inf" if n % 2 else "1e999") + lines[i][end:]
    dirty = tmp_path / "dirty.gpx"
    dirty.write_text("".join(lines)[: -len("</trkseg></trk></gpx>\n")])  # and cut off
    proc = run_process(
        tmp_path,
        str(one),
        "--gpx",
        str(dirty),
        "--tz",
        "+02:00",
        "--time-offset",
        "3",
        "--desc-path",
        "-",
    )
    assert proc.returncode == 0, proc.stderr
    entries = json.loads(proc.stdout, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))
    assert len(entries) == 3 and all("MAPLatitude" in e for e in entries)
    assert "ends mid-write" in proc.stderr
