"""The one progress bar of every command: counts (``geotag [####....] 42/100 42%``) or bytes
(``upload [####....] 12.0 MB/40.0 MB 30% 2.1 MB/s ETA 13 s``), redrawn in place.

Drawn only when its stream (standard error by default) is a terminal: a cron job, a pipe or a
log file gets no bar, and the command prints its one-line summary (:meth:`Progress.summary`)
instead. Redraws are throttled to one per ``min_interval`` seconds, so a caller may advance it
for every block it sends; an advance between redraws costs a clock read and two additions
(tests/bench/bench_progress.py measures it against tqdm and rich, see PERFORMANCE.md).
"""

from __future__ import annotations

import shutil
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Literal, TextIO, TypeVar

T = TypeVar("T")

Unit = Literal["items", "bytes"]
RATE_WINDOW = 5.0  # seconds of recent progress the rate (and so the ETA) is taken over


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a file at all
        return False


def size_text(n: float) -> str:
    """A byte count as people read it.

    >>> size_text(512), size_text(1536), size_text(3 * 2**30)
    ('512 B', '1.5 KB', '3.0 GB')
    """
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def duration_text(seconds: float) -> str:
    """A duration, as precise as a person needs it.

    >>> duration_text(42), duration_text(600), duration_text(7300)
    ('42 s', '10 min', '2 h 1 min')
    """
    s = int(seconds)
    if s < 90:
        return f"{s} s"
    if s < 5400:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


class Progress:
    """A one-line progress bar of ``total`` items or bytes (``unit``).

    ``advance(n)`` adds to what is done, ``update(done)`` sets it; ``total`` may be corrected
    while it runs (an estimate made exact). ``line(text)`` prints above the bar. Does nothing on
    screen unless ``stream`` is a terminal; the figures (``done``, ``rate``, ``summary()``) are
    kept either way.
    """

    def __init__(
        self,
        total: int,
        label: str = "",
        *,
        unit: Unit = "items",
        stream: TextIO | None = None,
        min_interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = max(total, 0)
        self.label = label
        self.unit = unit
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = is_terminal(self.stream)
        self.min_interval = min_interval
        self.redraws = 0
        self._clock = clock
        self.started = clock()
        self._last = -1e9
        self._shown = False
        self._samples: deque[tuple[float, int]] = deque([(self.started, 0)])

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def update(self, done: int) -> None:
        """Set how much is done; redrawn if the interval has passed or it is complete."""
        self.done = done
        now = self._clock()
        if now - self._last >= self.min_interval or done >= self.total:
            self._last = now
            self._sample(now)
            if self.enabled:
                self._draw()

    def iter(self, items: Iterable[T]) -> Iterator[T]:
        """Yield each item, counting it done when the caller asks for the next one."""
        for item in items:
            yield item
            self.advance()

    def line(self, text: str, stream: TextIO | None = None) -> None:
        """Print a line above the bar (the bar is redrawn under it), on ``stream`` (default
        the bar's own: a receipt may belong on standard output, which may be a file)."""
        out = stream if stream is not None else self.stream
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
        out.write(text + "\n")
        out.flush()
        if self._shown:
            self._draw()

    def close(self) -> None:
        """Take the bar off the screen, leaving the lines printed above it."""
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False

    @property
    def elapsed(self) -> float:
        return self._clock() - self.started

    @property
    def rate(self) -> float:
        """Units per second over the last RATE_WINDOW seconds (0 before there is a span)."""
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the recent rate; None while nothing moves or nothing is left."""
        left = self.total - self.done
        rate = self.rate
        return left / rate if left > 0 and rate > 0 else None

    def summary(self) -> str:
        """One line for the end (and for a cron job's mail): how much, how long, how fast."""
        elapsed = max(self.elapsed, 1e-9)
        if self.unit == "bytes":
            speed = size_text(self.done / elapsed) + "/s"
            return f"{self.label}: {size_text(self.done)} in {elapsed:.1f} s ({speed})"
        return f"{self.label}: {self.done} of {self.total} in {elapsed:.1f} s"

    def _sample(self, now: float) -> None:
        samples = self._samples
        samples.append((now, self.done))
        while len(samples) > 2 and now - samples[1][0] >= RATE_WINDOW:
            samples.popleft()

    def text(self, columns: int = 80) -> str:
        """The bar as it is drawn now, fitted to ``columns``."""
        percent = 100 * min(self.done, self.total) // self.total if self.total else 100
        if self.unit == "bytes":
            figures = f" {size_text(self.done)}/{size_text(self.total)} {percent}%"
            rate = self.rate
            if rate > 0:
                figures += f" {size_text(rate)}/s"
            eta = self.eta
            if eta is not None:
                figures += f" ETA {duration_text(eta)}"
        else:
            figures = f" {self.done}/{self.total} {percent}%"
        width = max(10, min(40, columns - len(self.label) - len(figures) - 4))
        filled = width * min(self.done, self.total) // self.total if self.total else width
        bar = f"{self.label} [{'#' * filled}{'.' * (width - filled)}]{figures}"
        return bar[: columns - 1]

    def _draw(self) -> None:
        columns = shutil.get_terminal_size((80, 24)).columns
        self.stream.write("\r" + self.text(columns) + "\x1b[K")
        self.stream.flush()
        self._shown = True
        self.redraws += 1
