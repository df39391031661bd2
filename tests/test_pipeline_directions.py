"""Headings from movement: towards the next photo, steady while standing."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

from daemon.core.geo import angle_diff_deg, destination
from daemon.pipeline import directions
from daemon.pipeline.directions import interpolate_directions
from daemon.pipeline.records import DUPLICATE, ImageRecord


def test_doctests() -> None:
    assert doctest.testmod(directions).failed == 0


def walk(legs: list[tuple[float, float, int]]) -> list[ImageRecord]:
    """Photos along legs of (bearing, step metres, photos)."""
    lat, lon = 60.0, 25.0
    out = [ImageRecord(Path("d_0.jpg"), lat=lat, lon=lon, heading=None)]
    for bearing, step, n in legs:
        for _ in range(n):
            lat, lon = destination(lat, lon, bearing, step)
            out.append(ImageRecord(Path(f"d_{len(out)}.jpg"), lat=lat, lon=lon))
    return out


@pytest.mark.parametrize("offset", [0.0, 90.0, -45.0])
def test_headings_follow_the_path_around_a_corner(offset: float) -> None:
    recs = walk([(45.0, 10.0, 4), (135.0, 10.0, 3)])
    out = interpolate_directions(recs, offset_angle=offset)
    want = [45.0] * 4 + [135.0] * 3 + [135.0]
    for r, w in zip(out, want, strict=True):
        assert angle_diff_deg(r.heading, w + offset) < 0.01  # type: ignore[arg-type]


def test_standing_keeps_the_heading_of_the_last_movement() -> None:
    # 3 photos east, 4 photos wandering within 1 m, then north.
    recs = walk([(90.0, 10.0, 3), (300.0, 0.5, 2), (120.0, 0.7, 2), (0.0, 10.0, 3)])
    out = interpolate_directions(recs, noise_m=2.0)
    headings = [round(r.heading) % 360 for r in out]  # type: ignore[arg-type]
    assert headings[:7] == [90] * 7
    assert headings[7:] == [0] * 4


def test_standing_at_the_start_looks_where_it_will_go_and_set_aside_is_skipped() -> None:
    recs = walk([(10.0, 0.3, 3), (200.0, 20.0, 2)])
    recs[4] = recs[4].set_aside(DUPLICATE, "dup")
    out = interpolate_directions(recs)
    assert out[4] is recs[4] and out[4].heading is None
    assert [round(r.heading) for r in out if r.ok] == [200] * 5  # type: ignore[arg-type]
    still = walk([(10.0, 0.3, 3)])
    assert [r.heading for r in interpolate_directions(still)] == [None] * 4


def test_headings_from_the_photos_own_gps_when_there_is_no_track() -> None:
    """No GPX: headings from the smoothed photo positions, not from two noisy neighbours; the
    photo kept at a stop looks the way the car was going."""
    from daemon.core.config import Settings
    from daemon.pipeline import PipelineOptions, run_pipeline
    from tests.bench import bench_accuracy as bench

    d = bench.make_drive(1500, seed=21)
    options = PipelineOptions.from_settings(Settings(), interpolate_directions=True)
    m = bench.measure(d, None, options, exif_noise_m=1.0)
    assert m["heading_p95"] <= 5.0  # 9.4° from the next photo's position
    recs = bench.records(d, exif_noise_m=1.0)
    result = run_pipeline(recs, None, options)
    when = {r.filename: d.at(t) for r, t in zip(recs, d.photo_times, strict=True)}
    standing = [r for s in result.sequences for r in s if d.phase[when[r.filename]] == "red"]
    assert len(standing) >= 10
    for r in standing:
        assert r.heading is not None
        assert angle_diff_deg(r.heading, d.headings[when[r.filename]]) < 10.0
