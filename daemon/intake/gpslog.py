"""The daemon's own GPS log: gpsd's fixes appended to a GPX file, in batches, durably.

One file per UTC day and drive (``gps-2024-06-01.gpx``, then ``gps-2024-06-01-2.gpx`` after a
pause of more than DRIVE_GAP_SECONDS, a restart of the daemon, or a write error). A file starts
with its GPX header, made durable with its name; fixes are appended one line each,
BATCH_SECONDS of them at a time with one write and one fsync, not one per fix (an SD card wears
out by its writes). The closing tags are written when a file is finished (next day, next drive,
a clean stop). A power cut leaves a file without them, maybe with the last line cut short: our
GPX reader uses such a log for every point before the cut, as gpsd's gpxlogger leaves it too.
So a power cut loses at most the batch not yet written.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from daemon.core.durable import fsync_dir, write_all
from daemon.intake.gpsd import Fix

PREFIX = "gps-"
SUFFIX = ".gpx"
BATCH_SECONDS = 10.0  # fixes (GPS time) per write: what a power cut may lose
BATCH_FIXES = 600  # ... or this many, for a receiver reporting at 10 Hz or more
DRIVE_GAP_SECONDS = 600.0  # a longer pause between fixes starts a new file
MAX_PENDING = 3600  # fixes kept while the disk refuses them (an hour at 1 Hz); then the oldest go
# A fix this far behind the last one is not a repeat but a clock set back (a receiver's first
# fixes from a stale almanac or a week rollover, then the right time): a new timeline, taken.
SET_BACK_SECONDS = 60.0
HEADER = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<gpx version="1.1" creator="mapillary-daemon (gpsd)" '
    'xmlns="http://www.topografix.com/GPX/1/1">\n'
    "<trk><name>{name}</name><trkseg>\n"
)
FOOTER = "</trkseg></trk></gpx>\n"
LINE_END = b"</trkpt>\n"
_OURS = HEADER.split("{name}")[0].encode("ascii")  # how every file of ours begins
TAIL_BYTES = 1 << 16  # read at a time, from the end back, for the last whole line of a log cut off


_NAME = re.compile(rf"{PREFIX}\d{{4}}-\d\d-\d\d(-\d+)?{re.escape(SUFFIX)}")


def own_log_name(path: str | os.PathLike[str]) -> bool:
    """Is this a file name the writer gives its logs?

    >>> [own_log_name(n) for n in ("gps-2024-06-01.gpx", "gps-2024-06-01-2.gpx", "gps-x.gpx")]
    [True, True, False]
    """
    return _NAME.fullmatch(os.path.basename(path)) is not None


def stamp(t: float) -> str:
    """POSIX seconds as a GPX time, to the millisecond.

    >>> stamp(1717225200.25)
    '2024-06-01T07:00:00.250Z'
    """
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def trkpt(fix: Fix, satellites: int | None = None) -> str:
    """One fix as one line of GPX (7 decimals: 1 cm).

    >>> trkpt(Fix(1717225200.0, 52.52, 13.4, 34.5, 3), 9)
    '<trkpt lat="52.5200000" lon="13.4000000"><ele>34.5</ele><time>2024-06-01T07:00:00.000Z</time><fix>3d</fix><sat>9</sat></trkpt>\\n'
    """
    ele = f"<ele>{fix.ele:.1f}</ele>" if fix.ele is not None and math.isfinite(fix.ele) else ""
    sat = f"<sat>{satellites}</sat>" if satellites is not None else ""
    kind = "3d" if fix.mode >= 3 else "2d"
    return (
        f'<trkpt lat="{fix.lat:.7f}" lon="{fix.lon:.7f}">{ele}<time>{stamp(fix.time)}</time>'
        f"<fix>{kind}</fix>{sat}</trkpt>\n"
    )


def finish_left_open(path: Path) -> bool:
    """Give a log left open by a power cut (or SIGKILL) its closing tags, after its last whole
    line (a line cut short, or zeros a file system left, are cut off first); True if it was
    open. Our reader does not need it; other programs do. Only the writer's own files."""
    footer = FOOTER.encode("ascii")
    # Not through a link (its target is no log of ours to cut), and without blocking on a
    # FIFO given the name; what was opened is looked at, not what the name was before.
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
            return False
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return False
    os.set_blocking(fd, True)
    with open(fd, "r+b") as fh:
        if fh.read(len(_OURS)) != _OURS:
            return False  # another program's file of that name: never ours to change
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - len(footer)))
        if fh.read() == footer:
            return False  # finished (every start looks at every log: a few bytes each)
        keep = _after_last_line(fh, size)
        if keep is None:  # no fix made it: keep the header only
            fh.seek(0)
            head = fh.read(TAIL_BYTES).find(b"<trkseg>\n")
            if head < 0:
                return False  # not a file as we write them: leave it alone
            keep = head + len(b"<trkseg>\n")
        fh.truncate(keep)
        fh.seek(keep)
        fh.write(footer)
        fh.flush()
        os.fsync(fh.fileno())
    return True


def _after_last_line(fh: BinaryIO, size: int) -> int | None:
    """Where the last whole fix line ends, looked for from the end back: the batch a cut
    left as zeros may be longer than one window (600 fixes at 10 Hz are ~80 kB)."""
    end = size
    while end > 0:
        start = max(0, end - TAIL_BYTES)
        fh.seek(start)
        found = fh.read(end - start).rfind(LINE_END)
        if found >= 0:
            return start + found + len(LINE_END)
        end = start + len(LINE_END) - 1 if start else 0  # a line end across two windows
    return None


@dataclass
class Written:
    """What one flush did: fixes written, the files begun (to be announced), the file now."""

    fixes: int
    started: list[Path]
    path: Path | None


def _day(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")


def _follows(last: float, t: float) -> bool:
    """Does a fix at ``t`` go on the file whose last fix is at ``last``? Not after a long
    pause (a new drive), nor when the time went back (a file's times only grow)."""
    return 0 <= t - last <= DRIVE_GAP_SECONDS


class TrackWriter:
    """Appends fixes to the daemon's own track files in ``folder`` (blocking: call ``flush``
    and ``close`` from a worker thread; ``add`` is cheap and in memory)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path: Path | None = None  # the file being written
        self.fixes = 0  # fixes written to it
        self.written = 0  # fixes written by this writer, all files
        self.dropped = 0  # fixes given up after the disk refused them for long
        self.fsyncs = 0
        self.bytes = 0
        self._fd: int | None = None
        self._day = ""
        self._last: float | None = None  # time of the last fix taken
        self._file_last: float | None = None  # time of the last fix in the file being written
        self._pending: list[tuple[Fix, int | None]] = []

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, fix: Fix, satellites: int | None = None) -> bool:
        """Take a fix (one not newer than the last is passed over: gpsd repeats a cycle's
        report, unless the clock was set back: the later fixes must not all be lost to one
        wrong time); True when a batch is full and ``flush`` is due."""
        if self._last is not None and self._last - SET_BACK_SECONDS < fix.time <= self._last:
            return False
        self._last = fix.time
        self._pending.append((fix, satellites))
        if len(self._pending) > MAX_PENDING:
            del self._pending[0]
            self.dropped += 1
        if len(self._pending) < 2:
            return False
        # Full when the next fix (one interval on) would make it longer than BATCH_SECONDS:
        # ten fixes a batch at 1 Hz, a hundred at 10 Hz.
        step = fix.time - self._pending[-2][0].time
        span = fix.time - self._pending[0][0].time
        return span + step >= BATCH_SECONDS or step < 0 or len(self._pending) >= BATCH_FIXES

    def flush(self) -> Written:
        """Write the pending fixes (one write and one fsync per file they go to). On an
        OSError the fixes stay pending and the next flush starts a new file."""
        started: list[Path] = []
        done = 0
        try:
            for chunk in self._chunks(started):
                data = "".join(trkpt(f, s) for f, s in chunk).encode("ascii")
                assert self._fd is not None
                write_all(self._fd, data)
                os.fsync(self._fd)
                self.fsyncs += 1
                self.bytes += len(data)
                self.fixes += len(chunk)
                self.written += len(chunk)
                done += len(chunk)
                del self._pending[: len(chunk)]
        except OSError:
            self._abandon()
            raise
        return Written(done, started, self.path)

    def _chunks(self, started: list[Path]) -> Iterable[list[tuple[Fix, int | None]]]:
        """The pending fixes in runs that go to one file, opening (and finishing) files as
        the day changes or a drive ends."""
        while self._pending:
            first = self._pending[0][0]
            if self._fd is None or self._new_file(first):
                self._finish()
                started.append(self._open(first.time))
            day = self._day
            run = []
            prev = first.time
            for item in self._pending:
                t = item[0].time
                if _day(t) != day or not _follows(prev, t):
                    break
                run.append(item)
                prev = t
            self._file_last = prev
            yield run

    def _new_file(self, fix: Fix) -> bool:
        last = self._file_last
        return _day(fix.time) != self._day or (last is not None and not _follows(last, fix.time))

    def _open(self, t: float) -> Path:
        """A new file for the day of ``t``: the first free name, its header and name durable."""
        self.folder.mkdir(parents=True, exist_ok=True)
        day = _day(t)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        n = 1
        while True:
            path = self.folder / f"{PREFIX}{day}{'' if n == 1 else f'-{n}'}{SUFFIX}"
            try:
                fd = os.open(path, flags, 0o644)
                break
            except FileExistsError:
                n += 1
        try:
            head = HEADER.format(name=path.stem).encode("ascii")
            write_all(fd, head)
            os.fsync(fd)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)  # a full disk must not leave an empty file a try
            raise
        self.fsyncs += 1
        self.bytes += len(head)
        fsync_dir(self.folder)
        self.fsyncs += 1
        self._fd, self.path, self._day, self.fixes = fd, path, day, 0
        self._file_last = None
        return path

    def _finish(self) -> None:
        """Close the file being written with its closing tags (a whole GPX file again)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            footer = FOOTER.encode("ascii")
            write_all(fd, footer)
            os.fsync(fd)
            self.fsyncs += 1
            self.bytes += len(footer)
        finally:
            os.close(fd)

    def _abandon(self) -> None:
        """After a write error: leave the file as it is (its points up to the error are
        readable) and start a new one next time."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = None

    def close(self) -> Written:
        """Flush and finish the file (a clean stop)."""
        written = self.flush()
        try:
            self._finish()
        except OSError:
            self._abandon()
            raise
        return written
