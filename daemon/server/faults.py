"""Fault injection: decides, from a seeded RNG and the clock, which requests fail and how.

Kept free of aiohttp so the decisions can be read (and tested) on their own; the application
turns a :class:`Fault` into a reply or a cut connection.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from daemon.server.config import ServerConfig
from daemon.server.store import Counters

RESET = 0  # Fault.status for "cut the connection instead of answering"
ERROR_STATUSES = (500, 502, 503)
UNKNOWN_LENGTH_DROP = 256 * 1024  # cut a body of unknown length within its first this-many bytes


@dataclass(frozen=True)
class Fault:
    status: int  # RESET, or the HTTP status to answer with
    reason: str
    retry_after: int | None = None


class RateLimiter:
    """A token bucket of ``rate`` requests per second with a burst of one second's worth.

    >>> now = [0.0]
    >>> limiter = RateLimiter(2, clock=lambda: now[0])
    >>> [limiter.wait() for _ in range(3)]
    [0.0, 0.0, 0.5]
    >>> now[0] = 0.5
    >>> limiter.wait()
    0.0
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.clock = clock
        self.last = clock()

    def wait(self) -> float:
        """0 when a request may go now (and takes its token), else seconds until one may."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class Pacer:
    """Caps bytes per second over every connection: each read books its share of the line."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.clock = clock
        self.booked = clock()

    def delay(self, nbytes: int) -> float:
        """Seconds the caller must wait after taking ``nbytes``.

        >>> pacer = Pacer(1000, clock=lambda: 10.0)
        >>> pacer.delay(500), pacer.delay(500)
        (0.5, 1.0)
        """
        now = self.clock()
        self.booked = max(self.booked, now) + nbytes / self.rate
        return self.booked - now

    async def pace(self, nbytes: int) -> None:
        wait = self.delay(nbytes)
        if wait > 0:
            await asyncio.sleep(wait)


class Faults:
    """All fault decisions of one running server; every injected fault is counted."""

    def __init__(
        self,
        config: ServerConfig,
        counters: Counters,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.counters = counters
        self.clock = clock
        self.started = clock()
        self.rng = random.Random(config.seed)
        self.limiter = RateLimiter(config.rate_limit, clock) if config.rate_limit > 0 else None
        self.pacer = Pacer(config.bandwidth, clock) if config.bandwidth > 0 else None
        self.latency = config.latency_ms / 1000.0

    def in_outage(self) -> bool:
        if self.config.outage is None:
            return False
        start, duration = self.config.outage
        elapsed = self.clock() - self.started
        return start <= elapsed < start + duration

    def before_request(self) -> Fault | None:
        """The fault to answer this request with instead of serving it, if any."""
        fault = self._choose()
        if fault is not None:
            self.counters.faults_injected += 1
        return fault

    def _choose(self) -> Fault | None:
        if self.in_outage():
            if self.rng.random() < 0.5:
                return Fault(RESET, "outage")
            return Fault(503, "service unavailable (outage)")
        if self.limiter is not None:
            wait = self.limiter.wait()
            if wait > 0:
                return Fault(429, "request rate limited", retry_after=max(1, math.ceil(wait)))
        if self.config.fail_rate and self.rng.random() < self.config.fail_rate:
            if self.limiter is not None and self.rng.random() < 0.2:
                return Fault(429, "request rate limited", retry_after=1)
            status = self.rng.choice(ERROR_STATUSES)
            return Fault(status, f"injected server error {status}")
        return None

    def drop_point(self, remaining: int | None) -> int | None:
        """After how many body bytes to cut this upload's connection, or None to keep it.

        ``remaining`` is the body length when known; the cut then falls strictly inside it.
        """
        if not self.config.drop_rate or self.rng.random() >= self.config.drop_rate:
            return None
        if remaining is None:
            return self.rng.randint(1, UNKNOWN_LENGTH_DROP)
        if remaining < 2:
            return None
        return self.rng.randint(1, remaining - 1)

    def dropped(self) -> None:
        self.counters.faults_injected += 1
