"""Duplicates and impossible positions, on the synthetic drive with real GPS-like noise."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.core.geo import destination, distance_m
from daemon.demo import drive
from daemon.pipeline import duplicates
from daemon.pipeline.duplicates import mark_duplicates, mark_impossible_speeds
from daemon.pipeline.records import DUPLICATE, IMPOSSIBLE_SPEED, ImageRecord
from daemon.pipeline.sequences import cut_sequences


def test_doctests() -> None:
    assert doctest.testmod(duplicates).failed == 0


def drive_records(seed: int) -> list[ImageRecord]:
    fixes = drive.gps_track(seed)
    recs = []
    for i, t in enumerate(drive.photo_times()):
        lat, lon = drive.interpolate(fixes, t)
        recs.append(
            ImageRecord(
                Path(f"img_{i:03d}.jpg"),
                drive.at(t),
                lat=lat,
                lon=lon,
                position_source="gpx",
                extra={"t": t},
            )
        )
    return recs


def story(t: float) -> str:
    """What the truth says about the photo at t."""
    x, y, speed = drive.truth(t)
    light = abs(x - 620.0) if y == 0.0 else 1e9
    if light <= 6.0:
        return "at the light"
    if drive.phase(t) in ("walk", "corner"):
        return drive.phase(t)
    if speed >= 5.0 and light > drive.STOP_EDGE_M:
        return "driving"
    return "braking or pulling away"


def dedupe(recs: list[ImageRecord]) -> list[ImageRecord]:
    out: list[ImageRecord] = []
    for group in cut_sequences(recs, 100.0, 60.0):
        out += mark_duplicates(group)
    return out


@pytest.mark.parametrize("seed", range(40))
def test_a_minute_at_a_light_is_one_photo_and_walks_and_corners_keep_every_photo(
    seed: int,
) -> None:
    out = dedupe(drive_records(seed))
    kept: dict[str, int] = {}
    total: dict[str, int] = {}
    for r in out:
        part = story(r.extra["t"])  # type: ignore[arg-type]
        total[part] = total.get(part, 0) + 1
        kept[part] = kept.get(part, 0) + r.ok
    assert total["at the light"] >= 30
    assert kept["at the light"] == 1
    for part in ("driving", "corner", "walk"):
        assert kept[part] == total[part], part
    dups = [r for r in out if not r.ok]
    assert dups and all(r.error.type == DUPLICATE for r in dups)  # type: ignore[union-attr]
    assert all("standing still" in r.error.message for r in dups)  # type: ignore[union-attr]


def test_the_kept_stop_photo_is_where_the_car_stood() -> None:
    out = dedupe(drive_records(7))
    at_light = [r for r in out if r.ok and story(r.extra["t"]) == "at the light"]  # type: ignore[arg-type]
    x, y = drive.to_xy(at_light[0].lat, at_light[0].lon)  # type: ignore[arg-type]
    assert abs(x - 620.0) < 3 * drive.NOISE_SIGMA and abs(y) < 3 * drive.NOISE_SIGMA


def line(
    n: int, step_m: float, dt: float, bearing: float = 90.0, **kw: object
) -> list[ImageRecord]:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    out = []
    lat, lon = 48.0, 11.0
    for i in range(n):
        out.append(
            ImageRecord(Path(f"p{i}.jpg"), t0 + timedelta(seconds=i * dt), lat=lat, lon=lon, **kw)  # type: ignore[arg-type]
        )
        lat, lon = destination(lat, lon, bearing, step_m)
    return out


def test_classic_rule_for_sparse_photos_and_with_window_zero() -> None:
    # Photos every 20 s are too sparse to judge motion: distance and angle decide.
    recs = line(5, 1.5, 20.0, heading=10.0)
    out = mark_duplicates(recs, distance=4.0, angle=20.0)
    assert [r.ok for r in out] == [True, False, False, True, False]
    assert "3.0 m (limit 4 m)" in out[2].error.message  # type: ignore[union-attr]
    # The same with a turn of the camera beyond the angle keeps the photo.
    turned = [r.replace(heading=10.0 + 30.0 * i) for i, r in enumerate(recs)]
    assert all(r.ok for r in mark_duplicates(turned, distance=4.0, angle=20.0))
    # window 0: the classic rule even when photos are dense (the old remove_duplicates).
    dense = line(6, 1.0, 1.0)
    assert [r.ok for r in mark_duplicates(dense, window_s=0)] == [True, False, False, False] + [
        True,
        False,
    ]


def test_camera_compass_turns_are_kept_while_standing() -> None:
    # Standing at one spot, turning the camera 90° every 10 s, compass heading in EXIF.
    recs = line(40, 0.0, 2.0)
    recs = [
        r.replace(heading=90.0 * (i // 5 % 4), position_source="exif") for i, r in enumerate(recs)
    ]
    out = mark_duplicates(recs)
    kept_headings = [r.heading for r in out if r.ok]
    assert sorted(set(kept_headings)) == [0.0, 90.0, 180.0, 270.0]
    assert len(kept_headings) == 4


def test_a_gps_spike_is_an_impossible_speed_not_a_duplicate() -> None:
    recs = line(10, 10.0, 2.0)
    lat, lon = destination(recs[4].lat, recs[4].lon, 0.0, 900.0)  # type: ignore[arg-type]
    recs[4] = recs[4].replace(lat=lat, lon=lon)
    out = mark_duplicates(recs)
    assert [r.ok for r in out] == [True] * 4 + [False] + [True] * 5
    assert out[4].error.type == IMPOSSIBLE_SPEED  # type: ignore[union-attr]
    assert "km/h" in out[4].error.message and "p3.jpg" in out[4].error.message  # type: ignore[union-attr]


def test_a_bad_first_fix_is_set_aside_too() -> None:
    recs = line(6, 10.0, 2.0)
    lat, lon = destination(recs[0].lat, recs[0].lon, 180.0, 2000.0)  # type: ignore[arg-type]
    recs[0] = recs[0].replace(lat=lat, lon=lon)
    out = mark_impossible_speeds(recs, 200.0)
    assert [r.ok for r in out] == [False] + [True] * 5


def test_fast_but_possible_driving_is_kept() -> None:
    recs = line(20, 50.0, 1.0)  # 180 km/h
    assert all(r.ok for r in mark_impossible_speeds(recs, 200.0))
    assert sum(r.ok for r in mark_impossible_speeds(recs, 150.0)) < 20


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.floats(0.0, 30.0), st.floats(0.0, 360.0), st.floats(0.5, 20.0)),
        min_size=1,
        max_size=60,
    ),
    distance=st.floats(0.5, 10.0),
)
def test_invariants(steps: list[tuple[float, float, float]], distance: float) -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    lat, lon, t = 10.0, 20.0, 0.0
    recs = []
    for i, (step, bearing, dt) in enumerate(steps):
        lat, lon = destination(lat, lon, bearing, step)
        t += dt
        recs.append(ImageRecord(Path(f"{i}.jpg"), t0 + timedelta(seconds=t), lat=lat, lon=lon))
    out = mark_duplicates(recs, distance=distance)
    # Same records, same order, nothing changed but the verdict; something always stays.
    assert [r.path for r in out] == [r.path for r in recs]
    assert [(r.lat, r.lon, r.capture_time) for r in out] == [
        (r.lat, r.lon, r.capture_time) for r in recs
    ]
    assert any(r.ok for r in out)
    # Every duplicate names a kept photo, and that photo really is kept.
    kept = {r.filename for r in out if r.ok}
    for r in out:
        if r.error and r.error.type == DUPLICATE:
            assert r.error.message.split(":")[0].removeprefix("duplicate of ") in kept
    # The classic rule: consecutive kept photos (no headings here) are farther apart than the
    # distance, and running it again on its own result removes nothing more.
    classic = [r for r in mark_duplicates(recs, distance=distance, window_s=0) if r.ok]
    for a, b in zip(classic, classic[1:], strict=False):
        assert distance_m(a.lat, a.lon, b.lat, b.lon) > distance  # type: ignore[arg-type]
    assert all(r.ok for r in mark_duplicates(classic, distance=distance, window_s=0))


def test_stops_from_the_photos_own_gps_when_there_is_no_track() -> None:
    """No GPX, one noisy EXIF fix per photo: the smoother over the photos finds the stops."""
    from daemon.core.config import Settings
    from daemon.pipeline import PipelineOptions
    from tests.bench import bench_accuracy as bench

    d = bench.make_drive(2000, seed=22)
    m = bench.measure(d, None, PipelineOptions.from_settings(Settings()), exif_noise_m=1.0)
    assert m["stops"] >= 20 and m["stops_lost"] == 0
    assert m["dropped"] <= 0.002 * m["moving"]  # 6.6 % on the window rule
    assert m["extra"] <= 0.3  # 5.7 on the window rule


def test_a_handful_of_photos_with_their_own_gps_keep_the_classic_rule() -> None:
    """Too few photos for the smoother to see a stop begin: four along a street and three
    standing where the fourth was; the three are duplicates (classic rule)."""
    from daemon.core.config import Settings
    from daemon.pipeline import PipelineOptions, run_pipeline

    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    recs = []
    for i in range(7):
        lat, lon = destination(48.1, 11.5, 90.0, 11.0 * min(i, 3))
        when = t0 + timedelta(seconds=2 * i)
        recs.append(ImageRecord(Path(f"{i}.jpg"), when, lat=lat, lon=lon, position_source="exif"))
    result = run_pipeline(recs, None, PipelineOptions.from_settings(Settings()))
    assert sorted(r.filename for r in result.duplicates) == ["4.jpg", "5.jpg", "6.jpg"]


@pytest.mark.parametrize("exif_noise_m", [None, 1.0])  # from the GPX, from the photos' GPS
def test_a_walk_with_waits_keeps_one_photo_per_wait(exif_noise_m: float | None) -> None:
    """A walk at 1 m/s, a photo every 2 s, 20 s waits at crossings: one photo per wait, and
    the walking photos kept but for the last step or two before a wait (the smoother rounds
    the halt off over a couple of seconds; the window rule dropped 19 % of them)."""
    from daemon.core.config import Settings
    from daemon.pipeline import PipelineOptions
    from tests.bench import bench_accuracy as bench

    d = bench.make_drive(1500, seed=31, style=bench.WALK)
    track = bench.noisy_track(d, seed=32) if exif_noise_m is None else None
    options = PipelineOptions.from_settings(Settings())
    m = bench.measure(d, track, options, exif_noise_m=exif_noise_m, moving_speed=0.5)
    assert m["stops"] >= 15
    assert m["dropped"] <= 0.03 * m["moving"]
    assert m["extra"] <= 0.3
    assert m["stops_lost"] <= 0.1 * m["stops"]
