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
