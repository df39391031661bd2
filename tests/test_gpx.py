"""GPX loading and interpolation on real GPX files (tests/jpegs.py writes them)."""

from __future__ import annotations

import math
import os
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from daemon.core.geo import angle_diff_deg, destination, distance_m
from daemon.media.gpx import GpxError, Track, load_gpx, load_gpx_files
from tests.jpegs import gpx_text, write_gpx

T0 = datetime(2024, 6, 1, 8, 0, 0, tzinfo=UTC)
LAT0, LON0 = 52.5200, 13.4050
ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def straight(n: int, step_s: float = 1.0, speed: float = 10.0, bearing: float = 90.0) -> list:
    """Fixes along a great circle at constant speed: the truth at time t is known exactly."""
    out = []
    for i in range(n):
        lat, lon = destination(LAT0, LON0, bearing, speed * step_s * i)
        out.append((at(i * step_s), lat, lon, 100.0 + i * step_s))
    return out


# -- loading ---------------------------------------------------------------------------------------


def test_tracks_and_segments_merge_into_one_sorted_track(tmp_path: Path) -> None:
    points = straight(30)
    shuffled = points[20:] + points[:10] + points[10:20]  # three tracks, out of time order
    p = write_gpx(tmp_path / "a.gpx", shuffled, segment_breaks=[5, 25], track_breaks=[10, 20])
    track = load_gpx(p)
    assert len(track) == 30
    assert list(track.times) == [t.timestamp() for t, *_ in points]
    assert list(track.lats) == pytest.approx([lat for _, lat, _, _ in points], abs=1e-9)
    assert track.start == T0.timestamp() and track.end == at(29).timestamp()
    assert not track.truncated


def test_several_files_merge_and_equal_times_keep_the_first_file(tmp_path: Path) -> None:
    points = straight(40)
    a = write_gpx(tmp_path / "a.gpx", points[:25])
    moved = [(t, lat + 0.001, lon, ele) for t, lat, lon, ele in points[20:]]
    b = write_gpx(tmp_path / "b.gpx", moved)
    track = load_gpx_files([a, b])
    assert len(track) == 40
    i = list(track.times).index(at(22).timestamp())
    assert track.lats[i] == pytest.approx(points[22][1], abs=1e-9)  # a's point, not b's
    assert track.lats[30] == pytest.approx(points[30][1] + 0.001, abs=1e-9)
    assert load_gpx_files([a]).times == load_gpx(a).times


def test_times_with_offsets_and_fractions_are_utc_seconds(tmp_path: Path) -> None:
    zone = timezone(timedelta(hours=-5))
    text = (
        '<?xml version="1.0"?><gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1">'
        '<trk><trkseg><trkpt lat="1" lon="2"><time>2024-06-01T03:00:00.250-05:00</time></trkpt>'
        '<trkpt lat="1.1" lon="2"><time>2024-06-01T08:00:01Z</time></trkpt></trkseg></trk></gpx>'
    )
    p = tmp_path / "z.gpx"
    p.write_text(text)
    track = load_gpx(p)
    assert list(track.times) == [
        datetime(2024, 6, 1, 3, 0, 0, 250_000, tzinfo=zone).timestamp(),
        at(1).timestamp(),
    ]


def test_gpx_1_0_routes_and_missing_elevations(tmp_path: Path) -> None:
    text = (
        '<?xml version="1.0"?><gpx version="1.0" xmlns="http://www.topografix.com/GPX/1/0">'
        '<rte><rtept lat="10" lon="20"><ele>5</ele><time>2024-06-01T08:00:00Z</time></rtept>'
        '<rtept lat="10.001" lon="20"><time>2024-06-01T08:00:10Z</time></rtept></rte></gpx>'
    )
    p = tmp_path / "r.gpx"
    p.write_text(text)
    track = load_gpx(p)
    assert len(track) == 2
    pos = track.position_at(at(5).timestamp())
    assert pos is not None and pos.lat == pytest.approx(10.0005) and pos.ele is None
    assert track.position_at(at(0).timestamp()).ele == 5.0


def test_points_without_time_are_skipped(tmp_path: Path) -> None:
    points = straight(6)
    mixed = [(None if i == 2 else t, lat, lon, ele) for i, (t, lat, lon, ele) in enumerate(points)]
    track = load_gpx(write_gpx(tmp_path / "m.gpx", mixed))
    assert len(track) == 5 and at(2).timestamp() not in track.times


def test_a_log_cut_off_mid_write_keeps_the_points_before_the_cut(tmp_path: Path) -> None:
    text = gpx_text(straight(50))
    cut = text[: text.index(at(30).strftime("%Y-%m-%dT%H:%M:%S")) + 5]
    p = tmp_path / "cut.gpx"
    p.write_text(cut)
    track = load_gpx(p)
    assert track.truncated
    assert len(track) == 30 and track.end == at(29).timestamp()
    assert track.position_at(at(10.5).timestamp()) is not None


BAD = {
    "text": ("hello, not xml\n", "not a GPX/XML file"),
    "empty": ("", "not a GPX/XML file"),
    "other xml": ("<html><body><p>hi</p></body></html>", "not a GPX file (root element <html>)"),
    "no points": (
        '<gpx version="1.1"><trk><trkseg></trkseg></trk></gpx>',
        "GPX has no track points",
    ),
    "no times": (
        '<gpx><trk><trkseg><trkpt lat="1" lon="2"/><trkpt lat="1.1" lon="2">'
        "<time>not a time</time></trkpt></trkseg></trk></gpx>",
        "no usable GPX points (1 unreadable time)",
    ),
    "bad coordinates": (
        '<gpx><trk><trkseg><trkpt lat="north" lon="2"><time>2024-06-01T08:00:00Z</time>'
        "</trkpt></trkseg></trk></gpx>",
        "no usable GPX points (1 bad coordinates)",
    ),
    "coordinates out of range": (
        '<gpx><trk><trkseg><trkpt lat="91" lon="2"><time>2024-06-01T08:00:00Z</time>'
        "</trkpt></trkseg></trk></gpx>",
        "no usable GPX points (1 bad coordinates)",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_gpx_files_are_clear_errors(tmp_path: Path, case: str) -> None:
    text, reason = BAD[case]
    p = tmp_path / "bad.gpx"
    p.write_text(text)
    with pytest.raises(GpxError) as err:
        load_gpx(p)
    assert str(err.value).startswith(reason), str(err.value)
    assert "\n" not in str(err.value)
    good = write_gpx(tmp_path / "good.gpx", straight(3))
    with pytest.raises(GpxError, match=f"^{p}: "):
        load_gpx_files([good, p])
    assert p.read_text() == text


def test_unreadable_gpx_and_no_files(tmp_path: Path) -> None:
    with pytest.raises(GpxError, match="^cannot read: No such file"):
        load_gpx(tmp_path / "missing.gpx")
    (tmp_path / "dir.gpx").mkdir()
    with pytest.raises(GpxError, match="^cannot read: Is a directory"):
        load_gpx(tmp_path / "dir.gpx")
    with pytest.raises(GpxError, match="no GPX files given"):
        load_gpx_files([])


@pytest.mark.skipif(ROOT, reason="root reads files whatever their mode")
def test_permission_denied_gpx(tmp_path: Path) -> None:
    p = write_gpx(tmp_path / "a.gpx", straight(3))
    p.chmod(0)
    try:
        with pytest.raises(GpxError, match="^cannot read: Permission denied"):
            load_gpx(p)
    finally:
        p.chmod(0o644)


def test_non_utf8_file_name(tmp_path: Path) -> None:
    p = tmp_path / os.fsdecode(b"trac\xe9.gpx")
    try:
        write_gpx(p, straight(3))
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system refuses non-UTF-8 names")
    assert len(load_gpx(p)) == 3


# -- interpolation ---------------------------------------------------------------------------------


def test_interpolation_on_a_straight_line_matches_the_truth(tmp_path: Path) -> None:
    speed, step = 12.0, 5.0
    track = load_gpx(
        write_gpx(tmp_path / "s.gpx", straight(60, step_s=step, speed=speed, bearing=30.0))
    )
    rnd = random.Random(7)
    for _ in range(200):
        s = rnd.uniform(0, 59 * step)
        pos = track.position_at(at(s).timestamp())
        assert pos is not None
        lat, lon = destination(LAT0, LON0, 30.0, speed * s)
        assert distance_m(pos.lat, pos.lon, lat, lon) < 0.01  # cm: linear between close fixes
        assert pos.ele == pytest.approx(100.0 + s, abs=1e-6)
        assert angle_diff_deg(pos.bearing, 30.0) < 0.1


def test_interpolation_on_a_circle_stays_within_the_chord_sag(tmp_path: Path) -> None:
    """Driving a circle of radius 50 m at 10 m/s, fixes every second: between fixes the true
    position is off the chord by at most s²/(8R) = 0.25 m; interpolation must stay within it."""
    radius, speed = 50.0, 10.0

    def truth(s: float) -> tuple[float, float]:
        angle = speed * s / radius  # radians travelled round the centre
        return destination(LAT0, LON0, math.degrees(angle), radius)

    points = [(at(i), *truth(i), None) for i in range(40)]
    track = Track.from_points(points)
    sag = (speed * 1.0) ** 2 / (8 * radius)
    rnd = random.Random(3)
    for _ in range(200):
        s = rnd.uniform(0, 39)
        pos = track.position_at(at(s).timestamp())
        assert pos is not None and pos.ele is None
        assert distance_m(pos.lat, pos.lon, *truth(s)) <= sag * 1.01 + 0.01
        tangent = math.degrees(speed * s / radius) + 90.0  # heading is 90° ahead of the radius
        assert angle_diff_deg(pos.bearing, tangent) < 6.0  # half the 11.5° turned per fix


def test_exact_fix_times_give_the_fix(tmp_path: Path) -> None:
    points = straight(10)
    track = Track.from_points(points)
    for t, lat, lon, ele in points:
        pos = track.position_at(t.timestamp())
        assert (pos.lat, pos.lon, pos.ele) == (lat, lon, ele)
        assert angle_diff_deg(pos.bearing, 90.0) < 0.01


def test_gaps_longer_than_max_gap_give_no_position() -> None:
    before = straight(10)
    after = [(t + timedelta(seconds=100), lat, lon, ele) for t, lat, lon, ele in straight(10)]
    track = Track.from_points(before + after)  # fixes at 0..9 s, then 100..109 s
    mid = at(50).timestamp()
    assert track.position_at(mid) is None
    assert track.position_at(mid, max_gap=60.0) is None
    assert track.position_at(mid, max_gap=95.0) is not None
    assert track.position_at(at(9).timestamp()) is not None
    assert track.position_at(at(9.5).timestamp()) is None  # just after the last fix before it
    assert track.position_at(at(8.5).timestamp()) is not None  # a 1 s step is no gap
    assert track.position_at(at(8.5).timestamp(), max_gap=0.5) is None


def test_bearing_at_the_edge_of_a_gap_does_not_look_across_it() -> None:
    east = straight(10, bearing=90.0)
    north_far = [
        (at(300 + i), *destination(LAT0 + 0.01, LON0, 0.0, 10.0 * i), None) for i in range(10)
    ]
    track = Track.from_points(east + north_far)
    last = track.position_at(at(9).timestamp())
    assert angle_diff_deg(last.bearing, 90.0) < 0.01
    first_after = track.position_at(at(300).timestamp())
    assert angle_diff_deg(first_after.bearing, 0.0) < 0.01


def test_extrapolation_limit() -> None:
    track = Track.from_points(straight(10))
    start, end = track.start, track.end
    assert track.position_at(end + 0.5).lat == track.lats[-1]
    assert track.position_at(end + 1.5) is None
    assert track.position_at(end + 1.5, max_extrapolation=2.0) is not None
    assert track.position_at(start - 0.99).lon == track.lons[0]
    assert track.position_at(start - 1.01) is None
    assert track.position_at(start - 30.0, max_extrapolation=0.0) is None


def test_standing_still_borrows_the_bearing_of_the_moves_around_it() -> None:
    """Approach heading north, stand for 20 s (fixes within centimetres), leave heading north:
    the bearing while standing comes from the nearest fixes far enough apart."""
    rows = []
    for i in range(10):
        rows.append((at(i), *destination(LAT0, LON0, 0.0, 10.0 * i), 0.0))
    stop = destination(LAT0, LON0, 0.0, 90.0)
    rnd = random.Random(5)
    for i in range(10, 30):
        rows.append((at(i), *destination(*stop, rnd.uniform(0, 360), rnd.uniform(0, 0.2)), 0.0))
    for i in range(30, 40):
        rows.append((at(i), *destination(*stop, 0.0, 10.0 * (i - 29)), 0.0))
    track = Track.from_points(rows)
    for s in (12.5, 20.0, 27.3):
        pos = track.position_at(at(s).timestamp())
        assert pos is not None and pos.bearing is not None
        assert angle_diff_deg(pos.bearing, 0.0) < 5.0
        assert distance_m(pos.lat, pos.lon, *stop) < 0.5


def test_a_track_that_never_moves_has_no_bearing() -> None:
    track = Track.from_points([(at(i), LAT0, LON0, None) for i in range(20)])
    pos = track.position_at(at(10.5).timestamp())
    assert pos is not None and pos.bearing is None
    assert (pos.lat, pos.lon) == (LAT0, LON0)


def test_interpolation_across_the_antimeridian_takes_the_short_way() -> None:
    track = Track.from_points([(at(0), 10.0, 179.9999, None), (at(10), 10.0, -179.9997, None)])
    pos = track.position_at(at(5).timestamp())
    assert pos.lon == pytest.approx(-179.9999, abs=1e-7)  # 180.0001 east, written as west
    assert distance_m(pos.lat, pos.lon, 10.0, 179.9999) == pytest.approx(
        distance_m(10.0, 179.9999, 10.0, -179.9997) / 2, abs=0.5
    )
    assert angle_diff_deg(pos.bearing, 90.0) < 0.1


def test_from_points_accepts_seconds_and_datetimes_in_any_order() -> None:
    naive = datetime(2024, 6, 1, 8, 0, 2)  # naive datetimes are UTC
    track = Track.from_points(
        [
            (at(1).timestamp(), 1.0, 1.0, None),
            (naive, 2.0, 2.0, 7.0),
            (at(0), 0.0, 0.0, None),
            (at(1), 9.0, 9.0, None),
        ]
    )
    assert list(track.times) == [at(i).timestamp() for i in range(3)]
    assert list(track.lats) == [0.0, 1.0, 2.0]  # the second point at 1 s was dropped
    assert math.isnan(track.eles[0]) and track.eles[2] == 7.0
    assert len(Track()) == 0 and Track().position_at(0.0) is None


def test_entity_expansion_bombs_are_refused_quickly(tmp_path: Path) -> None:
    lol = ['<!ENTITY a0 "lollollollollollollollollollol">']
    lol += [f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10)]
    text = (
        f'<?xml version="1.0"?><!DOCTYPE gpx [{"".join(lol)}]>'
        '<gpx><trk><name>&a9;</name><trkseg><trkpt lat="1" lon="2">'
        "<time>2024-06-01T08:00:00Z</time></trkpt></trkseg></trk></gpx>"
    )
    p = tmp_path / "bomb.gpx"
    p.write_text(text)
    with pytest.raises(GpxError, match="^not a GPX/XML file"):
        load_gpx(p)
