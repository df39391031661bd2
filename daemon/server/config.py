"""Settings of the embedded server: where it listens, what it stores, which faults it injects."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

LIMITS = (
    "max_image_bytes",
    "max_zip_bytes",
    "max_manifest_bytes",
    "max_unzipped_bytes",
    "max_zip_ratio",
    "read_timeout",
)


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server needs to start. All fault knobs default to off.

    ``bandwidth`` (``--max-rate``) caps the upload body bytes read per second over all
    connections; ``outage`` is ``(start_s, duration_s)`` measured from the server's start;
    ``rate_limit`` is requests per second before answering 429. ``data_dir`` None means a
    temporary folder that lives as long as the running server.

    Limits against hostile or broken clients: an uploaded object may grow to ``max_image_bytes``
    (JPEG keys), ``max_zip_bytes`` (zip keys) or ``max_manifest_bytes`` (anything else); a zip
    is unpacked only while its images stay within ``max_unzipped_bytes`` in all, each within
    ``max_image_bytes`` and at most ``max_zip_ratio`` times its compressed size. A request's
    headers must arrive within ``read_timeout`` s (an idle keep-alive connection is closed after
    it), and a body must bring at least ``min_body_rate`` bytes/s over each stretch of
    ``read_timeout`` s spent waiting for it. A finished sequence is processed (its cluster
    gets a sequence id, its images ids to look up) ``processing_seconds`` after its finish.
    """

    host: str = "127.0.0.1"
    port: int = 0
    data_dir: Path | None = None
    tokens: tuple[str, ...] = field(default=(), repr=False)
    fail_rate: float = 0.0
    drop_rate: float = 0.0
    latency_ms: float = 0.0
    bandwidth: float = 0.0
    outage: tuple[float, float] | None = None
    rate_limit: float = 0.0
    seed: int | None = None
    max_image_bytes: int = 512 * 2**20
    max_zip_bytes: int = 2 * 2**30  # a zip holds a whole sequence
    max_manifest_bytes: int = 16 * 2**20
    max_unzipped_bytes: int = 4 * 2**30
    max_zip_ratio: float = 100.0
    read_timeout: float = 30.0
    min_body_rate: float = 1024.0
    # How long the service takes to process a finished sequence: until then the cluster has
    # no sequence id and its images are not found (the real service takes minutes to hours).
    processing_seconds: float = 0.0

    def __post_init__(self) -> None:
        for name in ("fail_rate", "drop_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within 0..1, not {value}")
        for name in ("latency_ms", "bandwidth", "rate_limit"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in LIMITS:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")
        if self.min_body_rate < 0:
            raise ValueError("min_body_rate must not be negative")
        if self.outage is not None and (self.outage[0] < 0 or self.outage[1] <= 0):
            raise ValueError(f"outage needs start >= 0 and duration > 0, not {self.outage}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is not within 0..65535")


def parse_outage(text: str) -> tuple[float, float]:
    """``START:DURATION`` in seconds.

    >>> parse_outage("5:2.5")
    (5.0, 2.5)
    >>> parse_outage("5")
    Traceback (most recent call last):
    ...
    ValueError: outage '5' is not START_S:DURATION_S (e.g. 10:5)
    """
    start, sep, duration = text.partition(":")
    try:
        if not sep:
            raise ValueError
        window = (float(start), float(duration))
    except ValueError:
        raise ValueError(f"outage {text!r} is not START_S:DURATION_S (e.g. 10:5)") from None
    if window[0] < 0 or window[1] <= 0:
        raise ValueError(f"outage {text!r} needs START >= 0 and DURATION > 0")
    return window
