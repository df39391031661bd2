"""The README's main command: `demo` runs the whole flow on this machine and tells the truth."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path


def test_demo_uploads_every_photo_once_and_reports_what_happened(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "demo", "--keep"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    written = int(re.search(r"camera\s+wrote (\d+) photos", out).group(1))
    duplicates = int(re.search(r"(\d+) duplicates skipped", out).group(1))
    on_server = re.search(
        r"server\s+(\d+) images in (\d+) sequences, (\d+) duplicate images, "
        r"(\d+) duplicate sequences",
        out,
    )
    images, sequences, dup_images, dup_sequences = map(int, on_server.groups())
    assert images + duplicates == written  # every photo either uploaded or skipped as standing
    assert 10 <= duplicates <= 40  # a minute at a light at one photo per 2 s, minus one kept
    assert sequences == 2  # split at the long break
    assert dup_images == dup_sequences == 0
    assert "set aside G_BROKEN.JPG: no capture time" in out
    assert "every photo arrived once" in out
    # The camera is an hour and 7 s off; the daemon, told neither, found both from the photos.
    found = re.search(
        r"clock\s+zone \+01:00, camera ([\d.]+) s behind \(found from the photos", out
    )
    assert found and abs(float(found[1]) - 7.0) <= 1.0, out
    # The round trip: what went up comes back down from the same box.
    assert int(re.search(r"download\s+(\d+) images", out).group(1)) == images
    listed = re.findall(r"^\s+[0-9a-f-]{36}\s+(\d+) images\s+cluster (\d+)$", out, re.M)
    assert sum(int(n) for n, _ in listed) == images and len(listed) == sequences
    # --keep leaves the workspace for a look: the camera's originals are untouched there.
    kept = Path(re.search(r"workspace kept: (\S+)", out).group(1))
    try:
        photos = list((kept / "camera" / "DCIM" / "100ACME").glob("G*.JPG"))
        assert len(photos) == written + 1  # and the broken one, left where it was
        assert (kept / "journal.sqlite3").is_file()
        assert len(list((kept / "downloaded").glob("*.jpg"))) == images
        assert (kept / "downloaded" / "images.geojson").is_file()
    finally:
        shutil.rmtree(kept, ignore_errors=True)
    assert "demo-access-token" not in out + done.stderr
