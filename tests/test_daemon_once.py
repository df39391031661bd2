"""`run --once` on broken input: each bad file is named once with its reason, and set aside."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.corpus import HEIC


def _run_once(tmp: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MAPILLARY_TOKEN="unused-token", XDG_CONFIG_HOME=str(tmp / "cfg"))
    return subprocess.run(
        [sys.executable, "-m", "daemon", "run", "--once", "--watch", str(tmp / "in"),
         "--journal", str(tmp / "j.sqlite3"), "--spool", str(tmp / "spool"),
         "--settle-seconds", "0.3", "--tz", "+02:00"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


def test_a_broken_file_is_set_aside_once_with_its_reason_and_left_in_place(tmp_path: Path):
    (tmp_path / "in").mkdir()
    fake = tmp_path / "in" / "notes.jpg"
    fake.write_text("not a photo at all\n")
    before = fake.read_bytes()
    first = _run_once(tmp_path)
    assert first.returncode == 1, first.stderr  # something was set aside
    lines = [ln for ln in first.stderr.splitlines() if "file_set_aside" in ln]
    assert len(lines) == 1 and "notes.jpg" in lines[0]
    assert "not a JPEG: no start-of-image marker" in lines[0]
    assert "1 set aside" in first.stdout
    assert "camera times without a zone read in +02:00" in first.stdout
    # The same unchanged file is not reported again, and it is never touched.
    second = _run_once(tmp_path)
    assert second.returncode == 0, second.stderr
    assert "file_set_aside" not in second.stderr
    assert fake.read_bytes() == before
    status = subprocess.run(
        [sys.executable, "-m", "daemon", "status", "--journal", str(tmp_path / "j.sqlite3")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert "notes.jpg: not a JPEG" in status.stdout


@pytest.mark.skipif(
    not HEIC.is_file(), reason=f"the iPhone HEIC of the corpus is not here ({HEIC})"
)
def test_an_iphone_heic_dropped_in_is_set_aside_saying_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    shutil.copy(HEIC, tmp_path / "in" / HEIC.name)
    done = _run_once(tmp_path)
    assert done.returncode == 1, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if "file_set_aside" in ln]
    assert len(lines) == 1 and HEIC.name in lines[0], done.stderr
    assert "HEIC photo, not a JPEG: convert it to JPEG first" in lines[0]


def test_a_cameras_text_files_are_passed_over_without_a_word(tmp_path: Path) -> None:
    """GoPro cards carry MISC/version.txt; .txt and .log are taken only when they hold NMEA."""
    misc = tmp_path / "in" / "MISC"
    misc.mkdir(parents=True)
    (misc / "version.txt").write_text('{"info version":"1.1","firmware version":"H19.03"}\n')
    (misc / "app.log").write_text("2024-06-01 07:00:00 started\n")
    done = _run_once(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "file_set_aside" not in done.stderr and "version.txt" not in done.stderr
    assert "0 set aside" in done.stdout
