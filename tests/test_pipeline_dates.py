"""Capture times: zones, UTC conversion, fix-dates and natural order."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from daemon.pipeline import dates
from daemon.pipeline.dates import (
    capture_order,
    fix_dates,
    natural_key,
    parse_zone,
    resolve_capture_time,
    to_utc,
)
from daemon.pipeline.records import BAD_FILE, NO_TIME, ImageRecord


def test_doctests() -> None:
    assert doctest.testmod(dates).failed == 0


@pytest.mark.parametrize(
    ("text", "offset_min", "label"),
    [
        ("+02:00", 120, "+02:00"),
        ("-0530", -330, "-05:30"),
        ("+7", 420, "+07:00"),
        ("UTC", 0, "UTC"),
        ("Z", 0, "UTC"),
        ("+14:00", 840, "+14:00"),
    ],
)
def test_offsets(text: str, offset_min: int, label: str) -> None:
    tz, got = parse_zone(text)
    assert tz.utcoffset(None) == timedelta(minutes=offset_min)
    assert got == label


def test_named_zone_follows_daylight_saving() -> None:
    tz, label = parse_zone("Europe/Berlin")
    assert label.startswith("Europe/Berlin (+0")
    winter = to_utc(datetime(2024, 1, 10, 12, 0), tz)
    summer = to_utc(datetime(2024, 7, 10, 12, 0), tz)
    assert (winter.hour, summer.hour) == (11, 10)
    t, zone = resolve_capture_time(datetime(2024, 7, 10, 12, 0), tz, label)
    assert t == datetime(2024, 7, 10, 10, 0, tzinfo=UTC)
    assert zone == "Europe/Berlin (+02:00)"


@pytest.mark.parametrize("bad", ["+15:00", "+02:75", "Mars/Olympus", "two hours", "+2:0:0"])
def test_bad_zones_say_what_is_wrong(bad: str) -> None:
    with pytest.raises(ValueError, match=bad.replace("+", r"\+")):
        parse_zone(bad)


def test_local_zone_when_none_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    tz, label = parse_zone(None)
    assert isinstance(tz, ZoneInfo) and tz.key == "America/New_York"
    assert label.startswith("America/New_York (-0")


def test_aware_times_keep_their_own_zone() -> None:
    own = datetime(2024, 3, 1, 8, 30, tzinfo=timezone(timedelta(hours=-3)))
    t, zone = resolve_capture_time(own, ZoneInfo("Asia/Tokyo"), "Asia/Tokyo (+09:00)")
    assert t == datetime(2024, 3, 1, 11, 30, tzinfo=UTC)
    assert zone == "-03:00 (from file)"


def test_fix_dates_spaces_images_and_takes_back_only_missing_times() -> None:
    recs = [
        ImageRecord(Path("a/img_1.jpg")).set_aside(NO_TIME, "no capture time"),
        ImageRecord(Path("a/img_2.jpg"), capture_time=datetime(1999, 1, 1, tzinfo=UTC)),
        ImageRecord(Path("a/img_3.jpg")).set_aside(BAD_FILE, "truncated"),
    ]
    start = datetime(2024, 5, 1, 10, 0, 0, 250000, tzinfo=timezone(timedelta(hours=2)))
    out = fix_dates(recs, start, 1.5)
    assert [r.capture_time for r in out] == [
        datetime(2024, 5, 1, 8, 0, 0, 250000, tzinfo=UTC),
        datetime(2024, 5, 1, 8, 0, 1, 750000, tzinfo=UTC),
        datetime(2024, 5, 1, 8, 0, 3, 250000, tzinfo=UTC),
    ]
    assert [r.ok for r in out] == [True, True, False]
    assert {r.zone for r in out} == {"+02:00"}
    with pytest.raises(ValueError):
        fix_dates(recs, datetime(2024, 5, 1), 1.0)


def test_natural_and_capture_order() -> None:
    names = ["IMG_10.JPG", "img_9.jpg", "IMG_100.jpg", "img_9a.jpg", "img_1.jpg"]
    assert sorted(names, key=natural_key) == [
        "img_1.jpg",
        "img_9.jpg",
        "img_9a.jpg",
        "IMG_10.JPG",
        "IMG_100.jpg",
    ]
    t = datetime(2024, 1, 1, tzinfo=UTC)
    recs = [
        ImageRecord(Path("b_10.jpg"), t),
        ImageRecord(Path("none.jpg")),
        ImageRecord(Path("b_2.jpg"), t),
        ImageRecord(Path("a.jpg"), t - timedelta(seconds=1)),
    ]
    assert [r.filename for r in capture_order(recs)] == ["a.jpg", "b_2.jpg", "b_10.jpg", "none.jpg"]
