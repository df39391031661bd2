"""Splitting a capture into sequences: by time gap, by distance jump, and by size.

A new sequence starts where the time to the previous image is more than ``cutoff_time`` seconds
or the distance is more than ``cutoff_distance`` metres; a sequence holds at most ``max_images``
images, and that count starts again at every split (mapillary_tools once kept counting across a
time split and cut sequences short).
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Callable, Sequence

from daemon.core.geo import distance_m
from daemon.pipeline.records import ImageRecord

MIN_CUTOFF_TIME_S = 1.0  # EXIF times often have whole-second resolution


def new_sequence_id() -> str:
    return str(uuid.uuid4())


def default_cutoff_time(records: Sequence[ImageRecord]) -> float | None:
    """1.5 times the median gap between consecutive images (the old sequence_split's rule),
    at least one second; None when there are fewer than two timed images.

    >>> from datetime import UTC, datetime, timedelta
    >>> from pathlib import Path
    >>> t0 = datetime(2024, 1, 1, tzinfo=UTC)
    >>> recs = [ImageRecord(Path(f"{i}.jpg"), t0 + timedelta(seconds=s))
    ...         for i, s in enumerate([0, 2, 4, 6, 100])]
    >>> default_cutoff_time(recs)
    3.0
    """
    times = [r.capture_time for r in records if r.capture_time is not None]
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    if not gaps:
        return None
    return max(1.5 * statistics.median(gaps), MIN_CUTOFF_TIME_S)


def _breaks(
    prev: ImageRecord, cur: ImageRecord, cutoff_distance: float, cutoff_time: float | None
) -> bool:
    if (
        cutoff_time is not None
        and prev.capture_time
        and cur.capture_time
        and (cur.capture_time - prev.capture_time).total_seconds() > cutoff_time
    ):
        return True
    if prev.has_position and cur.has_position:
        return distance_m(*prev.position, *cur.position) > cutoff_distance
    return False


def cut_sequences(
    records: Sequence[ImageRecord], cutoff_distance: float = 100.0, cutoff_time: float | None = None
) -> list[list[ImageRecord]]:
    """Group the usable records (in the given capture order) at time gaps and distance jumps.

    Set-aside records are left out. ``cutoff_time`` None means :func:`default_cutoff_time`.
    No size limit and no ids here: see :func:`cap_sequences`.
    """
    usable = [r for r in records if r.ok]
    if cutoff_time is None:
        cutoff_time = default_cutoff_time(usable)
    groups: list[list[ImageRecord]] = []
    for record in usable:
        if groups and not _breaks(groups[-1][-1], record, cutoff_distance, cutoff_time):
            groups[-1].append(record)
        else:
            groups.append([record])
    return groups


def cap_sequences(
    groups: Sequence[Sequence[ImageRecord]],
    max_images: int = 1000,
    uuid_factory: Callable[[], str] = new_sequence_id,
) -> list[list[ImageRecord]]:
    """Cut every group into pieces of at most ``max_images`` and give each piece a fresh id.

    The count starts again in every group, so a split never leaves a short tail behind.

    >>> from pathlib import Path
    >>> ids = iter("abcdef")
    >>> seqs = cap_sequences([[ImageRecord(Path(f"{i}")) for i in range(5)],
    ...                       [ImageRecord(Path("x"))]], 2, lambda: next(ids))
    >>> [[r.sequence for r in s] for s in seqs]
    [['a', 'a'], ['b', 'b'], ['c'], ['d']]
    """
    if max_images < 1:
        raise ValueError("max_images must be at least 1")
    out: list[list[ImageRecord]] = []
    for group in groups:
        for start in range(0, len(group), max_images):
            seq_id = uuid_factory()
            out.append([r.replace(sequence=seq_id) for r in group[start : start + max_images]])
    return out


def split_sequences(
    records: Sequence[ImageRecord],
    cutoff_distance: float = 100.0,
    cutoff_time: float | None = None,
    max_images: int = 1000,
    uuid_factory: Callable[[], str] = new_sequence_id,
) -> list[list[ImageRecord]]:
    """Sequences of the usable records, in capture order, each with its own ``sequence`` id.

    >>> from datetime import UTC, datetime, timedelta
    >>> from pathlib import Path
    >>> t0 = datetime(2024, 1, 1, tzinfo=UTC)
    >>> recs = [ImageRecord(Path(f"{i}.jpg"), t0 + timedelta(seconds=s), lat=0.0, lon=0.0)
    ...         for i, s in enumerate([0, 2, 4, 300, 302])]
    >>> [len(s) for s in split_sequences(recs, cutoff_time=60)]
    [3, 2]
    """
    groups = cut_sequences(records, cutoff_distance, cutoff_time)
    return cap_sequences(groups, max_images, uuid_factory)
