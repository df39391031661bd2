"""The README's main command: `demo` runs the whole flow on this machine and tells the truth."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.request import urlopen

import pytest


class Output:
    """A process's stdout line by line, read in a thread: a line may sit in the pipe's reader,
    where select() cannot see it."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        import queue
        import threading

        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.reader.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def until(self, text: str, timeout: float) -> str:
        """All seen up to the first line holding ``text`` (within ``timeout`` s)."""
        import queue

        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break  # the process ended without saying it
            self.seen.append(line)
            if text in line:
                return "".join(self.seen)
        raise AssertionError(f"no {text!r} within {timeout} s:\n{''.join(self.seen)}")

    def rest(self) -> str:
        """Everything, once the process has ended."""
        self.reader.join(10)
        while (line := self.lines.get_nowait() if not self.lines.empty() else None) is not None:
            self.seen.append(line)
        return "".join(self.seen)


def test_demo_uploads_every_photo_once_and_keeps_its_page_up_until_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "demo", "--keep"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        output = Output(proc)
        out = output.until("stays up: Ctrl-C to stop", 120)
        # The page of the finished demo: what the journal says, the drive's map.
        url = re.search(r"^page\s+(http://127\.0\.0\.1:\d+/) stays up", out, re.M).group(1)
        with urlopen(url, timeout=10) as r:
            assert r.status == 200 and "<svg" in r.read().decode()
        with urlopen(url + "api/status", timeout=10) as r:
            page = json.loads(r.read())
        with urlopen(url + "api/map", timeout=10) as r:
            tracks = json.loads(r.read())
        asked = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(15)
        assert time.monotonic() - asked < 15
        out, err = output.rest(), proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:  # a failed check: Ctrl-C still ends it, else it is killed
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    assert proc.returncode == 0, out + err
    with pytest.raises(OSError):
        urlopen(url, timeout=2)  # gone with Ctrl-C
    assert page["daemon"]["running"] is True and page["daemon"]["web"] == url
    assert [s["state"] for s in tracks["sequences"]] == ["finished", "finished"]
    assert sum(len(s["points"]) for s in tracks["sequences"]) == page["images"]["finished"]
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
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
    assert page["images"]["finished"] == images
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
    assert found and abs(float(found[1]) - 7.0) <= 1.5, out  # one stop, a photo every 2 s
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
