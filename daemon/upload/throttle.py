"""A bandwidth cap shared by every upload worker: an async token bucket without polling.

Each ``acquire(n)`` books ``n`` bytes on a virtual timeline that advances at ``rate`` bytes/s
(the generic cell rate algorithm) and sleeps exactly until its booking is due, so waiting
workers cost nothing and the long-run rate never exceeds the cap by more than one burst.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class Throttle:
    """Caps the bytes per second of everyone who calls ``acquire``; ``rate <= 0`` means no cap.

    ``burst`` is how many seconds' worth of bytes may go at once after an idle spell.
    """

    def __init__(
        self,
        rate: float,
        burst: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = float(rate)
        self.burst = burst
        self._clock = clock
        self._booked_until = 0.0

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def reserve(self, nbytes: int) -> float:
        """Book ``nbytes`` and return how many seconds to wait before sending them.

        >>> t = Throttle(1000.0, burst=0.0, clock=lambda: 100.0)
        >>> t.reserve(500), t.reserve(500), t.reserve(1000)
        (0.0, 0.5, 1.0)
        >>> b = Throttle(1000.0, burst=0.25, clock=lambda: 100.0)
        >>> [b.reserve(250) for _ in range(4)]
        [0.0, 0.0, 0.25, 0.5]
        >>> Throttle(0).reserve(10**9)
        0.0
        """
        if not self.enabled or nbytes <= 0:
            return 0.0
        now = self._clock()
        # An idle link banks no more than one burst of credit: bookings start no earlier than now.
        start = max(self._booked_until, now)
        self._booked_until = start + nbytes / self.rate
        return max(start - now - self.burst, 0.0)

    async def acquire(self, nbytes: int) -> None:
        """Wait until ``nbytes`` may be sent under the cap."""
        wait = self.reserve(nbytes)
        if wait > 0:
            await asyncio.sleep(wait)


def parse_hours(spec: str) -> tuple[int, int] | None:
    """``"22:00-07:00"`` as minutes of the day (start, end); None for "" (always).
    ValueError names what is wrong.

    >>> parse_hours("22:00-07:00"), parse_hours(""), parse_hours("9-17")
    ((1320, 420), None, (540, 1020))
    """
    if not spec.strip():
        return None
    try:
        start, end = (_minutes(part) for part in spec.split("-"))
    except ValueError:
        raise ValueError(f"{spec!r} is not a window like 22:00-07:00") from None
    return start, end


def _minutes(text: str) -> int:
    hours, _, minutes = text.strip().partition(":")
    h, m = int(hours), int(minutes or 0)
    if not (0 <= h <= 24 and 0 <= m < 60 and h * 60 + m <= 1440):
        raise ValueError(text)
    return h * 60 + m


def within_hours(spec: str, minute_of_day: int) -> bool:
    """Whether uploads may run at this minute of the (local) day; a window may wrap midnight.

    >>> [within_hours("22:00-07:00", m) for m in (23 * 60, 3 * 60, 12 * 60)]
    [True, True, False]
    >>> within_hours("", 0), within_hours("09:00-17:00", 9 * 60), within_hours("09:00-17:00", 17 * 60)
    (True, True, False)
    """
    window = parse_hours(spec)
    if window is None:
        return True
    start, end = window
    if start <= end:
        return start <= minute_of_day < end
    return minute_of_day >= start or minute_of_day < end
