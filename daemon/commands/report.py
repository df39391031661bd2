"""What the one-shot commands tell the user: a progress bar while they work, a summary at the end.

The progress bar (``daemon.core.progress``, the one bar of every command) is drawn on standard
error only when it is a terminal (a log file or a pipe gets nothing). Lines about single files (``path: reason``)
are printed as they happen, above the bar. The summary counts images, sequences, duplicates and
photos set aside by reason, says which zone naive camera times were read in and which time
offset was applied, and gives the exit code: 1 when any photo was set aside, duplicates aside.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import TextIO

from daemon.core.errors import EXIT_OK, EXIT_SET_ASIDE
from daemon.core.progress import Progress
from daemon.core.words import counted
from daemon.pipeline.records import (
    BAD_FILE,
    BAD_METADATA,
    DUPLICATE,
    IMPOSSIBLE_SPEED,
    NO_POSITION,
    NO_TIME,
    OUTSIDE_TRACK,
    ImageRecord,
)

__all__ = ["Progress", "Summary", "REASONS", "NO_DESCRIPTION", "clock_offset_text"]

NO_DESCRIPTION = "MapillaryNoDescriptionError"  # add-project: the photo was never tagged

# Summaries name reasons in the user's words; the machine names stay in logs and JSON.
REASONS = {
    BAD_FILE: "unreadable or incomplete file",
    BAD_METADATA: "bad EXIF",
    NO_TIME: "no capture time",
    NO_POSITION: "no position",
    OUTSIDE_TRACK: "outside the GPX track",
    IMPOSSIBLE_SPEED: "impossible speed",
    DUPLICATE: "duplicate",
    NO_DESCRIPTION: "no Mapillary description",
}


@dataclass
class Summary:
    """Counts of one command's run, its per-file lines, and its exit code.

    ``done`` counts photos the command changed or moved, named by ``done_verb`` ("written",
    "moved", ...); ``sequences`` and ``zone``/``time_offset`` are shown only when set.
    """

    command: str
    done_verb: str = "written"
    images: int = 0
    done: int = 0
    duplicates: int = 0
    sequences: int | None = None
    zone: str | None = None
    time_offset: float | None = None
    set_aside: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    out: TextIO | None = None  # the summary (default standard output)
    err: TextIO | None = None  # per-file lines (default standard error)
    progress: Progress | None = None

    def file_line(self, text: str) -> None:
        """One line about one file, printed now (above the progress bar when there is one)."""
        if self.progress is not None and self.progress.stream is self._err:
            self.progress.line(text)
        else:
            print(text, file=self._err, flush=True)

    def aside(self, path: os.PathLike[str] | str, type_: str, message: str) -> None:
        """A photo set aside: counted by reason and printed as ``path: message``."""
        self.set_aside[type_] += 1
        self.file_line(f"{path}: {message}")

    def add_record(self, record: ImageRecord) -> None:
        """Count a pipeline record: a duplicate, a set-aside photo (printed), or a usable one."""
        if record.error is None:
            return
        if record.error.type == DUPLICATE:
            self.duplicates += 1
        else:
            self.aside(record.path, record.error.type, record.error.message)

    def note(self, text: str) -> None:
        """An extra line for the end of the summary (where files went, a log file, ...)."""
        self.notes.append(text)

    @property
    def set_aside_total(self) -> int:
        return sum(self.set_aside.values())

    def exit_code(self) -> int:
        """0 when every photo went through (duplicates are not errors), 1 when any was set aside."""
        return EXIT_SET_ASIDE if self.set_aside_total else EXIT_OK

    def lines(self) -> list[str]:
        head = [counted(self.images, "image")]
        if self.sequences is not None:
            head.append(counted(self.sequences, "sequence"))
        head.append(f"{self.done} {self.done_verb}")
        if self.duplicates:
            head.append(counted(self.duplicates, "duplicate"))
        head.append(f"{self.set_aside_total} set aside")
        out = [f"{self.command}: " + ", ".join(head)]
        for type_, n in sorted(self.set_aside.items()):
            out.append(f"  set aside, {REASONS.get(type_, type_)}: {n}")
        if self.zone is not None:
            zone = f"  zone of camera times: {self.zone}"
            if self.time_offset is not None:
                zone += f"; time offset: {clock_offset_text(self.time_offset)}"
            out.append(zone)
        elif self.time_offset is not None:
            out.append(f"  time offset: {clock_offset_text(self.time_offset)}")
        out += [f"  {note}" for note in self.notes]
        return out

    def print(self) -> None:
        if self.progress is not None:
            self.progress.close()
        print("\n".join(self.lines()), file=self.out or sys.stdout, flush=True)

    def finish(self) -> int:
        """Print the summary; the command's exit code."""
        self.print()
        return self.exit_code()

    @property
    def _err(self) -> TextIO:
        return self.err or sys.stderr


def clock_offset_text(seconds: float) -> str:
    """How summaries tell the camera clock's offset from true (GPS) time.

    >>> clock_offset_text(30), clock_offset_text(-2.5), clock_offset_text(0)
    ('30 s (camera ahead)', '-2.5 s (camera behind)', '0 s')
    """
    side = " (camera ahead)" if seconds > 0 else " (camera behind)" if seconds < 0 else ""
    return f"{seconds:g} s{side}"
