"""Synthetic drives with a known truth, for `demo`, the tests and the benchmarks: one name for
the three modules that make them (``from daemon.demo import drive``; ``drive.plan_drive``...).

- :mod:`daemon.demo.timeline`: the short fixed timeline of the pipeline tests.
- :mod:`daemon.demo.route`: a planned drive (:func:`plan_drive`) with per-photo ground truth.
- :mod:`daemon.demo.camera`: the JPEGs and GPX files of either, as a camera would write them.
"""

from __future__ import annotations

from daemon.demo.camera import (
    Camera,
    Zone,
    camera_local_time,
    jpeg_bytes,
    write_drive,
    write_gpx,
    write_jpeg,
    write_jpeg_bytes,
)
from daemon.demo.route import (
    AT_LIGHT,
    BERLIN,
    PARKED,
    Drive,
    Phase,
    Photo,
    Pose,
    TrackPoint,
    plan_drive,
    route,
)
from daemon.demo.timeline import (
    BREAK,
    CORNER_T,
    END,
    JITTER,
    NOISE_SIGMA,
    NOISE_TAU,
    ORIGIN,
    START,
    STOP,
    STOP_EDGE_M,
    WALK,
    Fix,
    at,
    camera_time,
    gps_track,
    interpolate,
    noisy,
    phase,
    photo_times,
    to_latlon,
    to_xy,
    truth,
)

__all__ = [
    "AT_LIGHT",
    "BERLIN",
    "BREAK",
    "CORNER_T",
    "END",
    "JITTER",
    "NOISE_SIGMA",
    "NOISE_TAU",
    "ORIGIN",
    "PARKED",
    "START",
    "STOP",
    "STOP_EDGE_M",
    "WALK",
    "Camera",
    "Drive",
    "Fix",
    "Phase",
    "Photo",
    "Pose",
    "TrackPoint",
    "Zone",
    "at",
    "camera_local_time",
    "camera_time",
    "gps_track",
    "interpolate",
    "jpeg_bytes",
    "noisy",
    "phase",
    "photo_times",
    "plan_drive",
    "route",
    "to_latlon",
    "to_xy",
    "truth",
    "write_drive",
    "write_gpx",
    "write_jpeg",
    "write_jpeg_bytes",
]
