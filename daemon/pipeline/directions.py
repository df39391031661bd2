"""Headings from the movement between consecutive images, for cameras without a compass."""

from __future__ import annotations

import math
from collections.abc import Sequence

from daemon.core.geo import bearing_deg, distance_m, normalize_deg
from daemon.pipeline.records import ImageRecord


def interpolate_directions(
    records: Sequence[ImageRecord], offset_angle: float = 0.0, noise_m: float = 2.0
) -> list[ImageRecord]:
    """Point every image towards the next one (plus ``offset_angle``, e.g. 90 for a camera
    looking right); the last image takes its predecessor's heading.

    A step shorter than ``noise_m`` says nothing about direction (GPS noise while standing), so
    such an image keeps the heading of the last real movement (or the first one to come, at the
    start). Set-aside records and records without a position pass through unchanged; a run in
    which nothing moves keeps its headings.

    >>> from pathlib import Path
    >>> pts = [(0.0, 0.0), (0.001, 0.0), (0.001, 0.00000001), (0.001, 0.001)]
    >>> recs = [ImageRecord(Path(f"{i}"), lat=a, lon=b) for i, (a, b) in enumerate(pts)]
    >>> [round(r.heading) for r in interpolate_directions(recs)]
    [0, 0, 90, 90]
    >>> [round(r.heading) for r in interpolate_directions(recs, offset_angle=90)]
    [90, 90, 180, 180]
    """
    idx = [i for i, r in enumerate(records) if r.ok and r.has_position]
    raw: list[float | None] = []
    for a, b in zip(idx, idx[1:], strict=False):
        p, q = records[a], records[b]
        moved = distance_m(*p.position, *q.position) >= noise_m
        raw.append(bearing_deg(*p.position, *q.position) if moved else None)
    if not any(h is not None for h in raw):
        return list(records)
    # Each image's heading: its own step if it moved, else the last movement (or the first ahead).
    first = next(h for h in raw if h is not None)
    headings: list[float] = []
    last = first
    for h in raw:
        last = h if h is not None else last
        headings.append(last)
    headings.append(headings[-1])  # the last image looks the way its predecessor went
    out = list(records)
    for i, heading in zip(idx, headings, strict=True):
        out[i] = out[i].replace(heading=normalize_deg(heading + offset_angle))
    return out


STEADY_SHARE = 3.0  # a photo this many times faster than moving_speed has a steady heading
STEADY_S = 10.0  # seconds from the last steady photo to the last moving one: the same approach


def directions_from_motion(
    records: Sequence[ImageRecord],
    headings: Sequence[float | None],
    speeds: Sequence[float],
    offset_angle: float = 0.0,
    moving_speed: float = 1.0,
    own_speed: float = 0.5,
) -> list[ImageRecord]:
    """Headings from the smoothed track's velocity (see :mod:`daemon.pipeline.smooth`), one
    per record. A photo at ``own_speed`` or faster has its own (a walker at 1 m/s reads
    0.7-1.2 m/s); a slower one (standing) takes the heading of the movement that brought it
    there: of the last photo STEADY_SHARE times faster than ``moving_speed`` when that was on
    the same approach (a car's velocity points anywhere in its last metres of braking), else of
    the last photo faster than ``moving_speed``, or of the first one to come at the start. A run
    in which nothing moves keeps its headings."""
    moving = [
        h for h, v in zip(headings, speeds, strict=True) if h is not None and v >= moving_speed
    ]
    if not moving:
        return list(records)
    last = steady = moving[0]
    last_t = steady_t = -math.inf
    out = list(records)
    for i, (h, v) in enumerate(zip(headings, speeds, strict=True)):
        t = records[i].time.timestamp() if records[i].capture_time else last_t
        if h is not None and v >= moving_speed:
            last, last_t = h, t
            if v >= STEADY_SHARE * moving_speed:
                steady, steady_t = h, t
        if h is not None and v >= own_speed:
            heading = h
        else:
            heading = steady if last_t - steady_t <= STEADY_S else last
        out[i] = out[i].replace(heading=normalize_deg(heading + offset_angle))
    return out
