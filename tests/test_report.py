"""Progress bar and summary: drawn on a real terminal (a pty), silent in pipes and files."""

from __future__ import annotations

import io
import os
import pty
import time
from pathlib import Path

from daemon.commands.report import Progress, Summary
from daemon.pipeline.records import DUPLICATE, NO_TIME, OUTSIDE_TRACK, ImageRecord


def read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode()


def test_progress_draws_on_a_terminal_with_throttled_redraws() -> None:
    master, slave = pty.openpty()
    os.set_blocking(master, False)
    with open(slave, "w", encoding="utf-8", closefd=True) as tty:
        progress = Progress(1000, "geotag", stream=tty, min_interval=10.0)
        assert progress.enabled
        for _ in range(1000):
            progress.advance()
        # First step and the last one only: the interval is far longer than this loop.
        assert progress.redraws == 2
        progress.line("a.jpg: outside the GPX track")
        progress.close()
        tty.flush()
        time.sleep(0.05)
        shown = read_all(master)
    os.close(master)
    assert "geotag [" in shown and "1000/1000" in shown and "1/1000" in shown
    assert "a.jpg: outside the GPX track" in shown
    assert shown.endswith("\r\x1b[K")  # the bar is cleared at the end


def test_progress_is_silent_when_not_a_terminal(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    with (
        open(log, "w", encoding="utf-8") as fh,
        Progress(10, "x", stream=fh, min_interval=0) as progress,
    ):
        assert list(progress.iter(range(10))) == list(range(10))
        assert progress.done == 10
    assert log.read_text() == ""
    buf = io.StringIO()
    progress = Progress(3, stream=buf, min_interval=0)
    progress.line("kept: lines still appear")
    progress.advance(3)
    assert buf.getvalue() == "kept: lines still appear\n"


def test_summary_counts_prints_and_exit_code() -> None:
    out, err = io.StringIO(), io.StringIO()
    summary = Summary("geotag", images=5, done=2, zone="+02:00", time_offset=30, out=out, err=err)
    summary.add_record(ImageRecord(Path("ok.jpg")))
    summary.add_record(ImageRecord(Path("d.jpg")).set_aside(DUPLICATE, "duplicate of c.jpg"))
    assert summary.exit_code() == 0  # duplicates are not errors
    summary.add_record(ImageRecord(Path("/p/a.jpg")).set_aside(OUTSIDE_TRACK, "no track at 9:00"))
    summary.aside("b.jpg", OUTSIDE_TRACK, "no track at 9:01")
    summary.aside("c.jpg", NO_TIME, "no capture time")
    summary.note("log: /p/errors.log")
    assert err.getvalue().splitlines() == [
        "/p/a.jpg: no track at 9:00",
        "b.jpg: no track at 9:01",
        "c.jpg: no capture time",
    ]
    summary.print()
    text = out.getvalue()
    assert text.splitlines()[0] == "geotag: 5 images, 2 written, 1 duplicate, 3 set aside"
    assert "set aside, outside the GPX track: 2" in text
    assert "set aside, no capture time: 1" in text
    assert "zone of camera times: +02:00; time offset: 30 s (camera ahead)" in text
    assert "log: /p/errors.log" in text
    assert summary.exit_code() == 1


def test_summary_without_zone_or_sequences_says_neither() -> None:
    out = io.StringIO()
    summary = Summary("add-tags", done_verb="tagged", images=3, done=3, sequences=1, out=out)
    summary.print()
    assert out.getvalue() == "add-tags: 3 images, 1 sequence, 3 tagged, 0 set aside\n"
    assert summary.exit_code() == 0
