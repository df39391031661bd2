"""The Mapillary description and the description file."""

from __future__ import annotations

import doctest
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from daemon.pipeline import describe as describe_module
from daemon.pipeline.describe import (
    describe,
    description_file_entries,
    description_json,
    parse_capture_time,
    read_description_file,
    validate_description,
)
from daemon.pipeline.records import DUPLICATE, ImageRecord


def test_doctests() -> None:
    assert doctest.testmod(describe_module).failed == 0


def record(**kw: object) -> ImageRecord:
    base = dict(
        path=Path("/data/run/IMG_0042.JPG"),
        capture_time=datetime(
            2024, 8, 31, 23, 59, 59, 987654, tzinfo=timezone(timedelta(hours=-4))
        ),
        lat=-33.868819876,
        lon=151.209295123,
        altitude=12.34567,
        heading=271.23456,
        orientation=6,
        make="GoPro",
        model="HERO9 Black",
        sequence="0f1e2d3c-aaaa-4bbb-8ccc-123456789abc",
    )
    base.update(kw)
    return ImageRecord(**base)  # type: ignore[arg-type]


def test_full_description() -> None:
    d = describe(record(), {"MAPPhotoUUID": "p-1", "MAPSettingsProject": "proj"})
    assert d == {
        "MAPLatitude": -33.8688199,
        "MAPLongitude": 151.2092951,
        "MAPCaptureTime": "2024_09_01_03_59_59_987",
        "MAPAltitude": 12.346,
        "MAPCompassHeading": {"TrueHeading": 271.235, "MagneticHeading": 271.235},
        "MAPOrientation": 6,
        "MAPDeviceMake": "GoPro",
        "MAPDeviceModel": "HERO9 Black",
        "MAPFilename": "IMG_0042.JPG",
        "MAPSequenceUUID": "0f1e2d3c-aaaa-4bbb-8ccc-123456789abc",
        "MAPPhotoUUID": "p-1",
        "MAPSettingsProject": "proj",
    }
    text = description_json(d)
    assert " " not in text.replace("HERO9 Black", "")
    assert list(json.loads(text)) == sorted(d)
    assert validate_description(json.loads(text)) is None
    assert parse_capture_time(d["MAPCaptureTime"]) == datetime(
        2024, 9, 1, 3, 59, 59, 987000, tzinfo=UTC
    )


def test_optional_fields_are_left_out() -> None:
    d = describe(record(altitude=None, heading=None, make=None, model=None, sequence=None))
    assert set(d) == {
        "MAPLatitude",
        "MAPLongitude",
        "MAPCaptureTime",
        "MAPOrientation",
        "MAPFilename",
    }


def test_unusable_records_cannot_be_described() -> None:
    with pytest.raises(ValueError, match="set aside"):
        describe(record().set_aside(DUPLICATE, "dup"))
    with pytest.raises(ValueError, match="no capture time or no position"):
        describe(record(lat=None))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"MAPLatitude": None}, "MAPLatitude is not a number"),
        ({"MAPLongitude": 181.0}, "outside -180..180"),
        ({"MAPCaptureTime": "2024-01-01 00:00:00"}, "not YYYY_MM_DD_HH_MM_SS_mmm"),
        ({"MAPCompassHeading": {"TrueHeading": 360.0}}, "TrueHeading"),
        ({"MAPOrientation": 9}, "outside 1..8"),
        ({"MAPAltitude": "high"}, "MAPAltitude"),
        ({"MAPLatitude": float("nan")}, "not a number"),
        ({"MAPLatitude": True}, "not a number"),
    ],
)
def test_validation_names_the_problem(change: dict, reason: str) -> None:
    d = {**describe(record()), **change}
    assert reason in (validate_description(d) or "")
    missing = describe(record())
    del missing["MAPCaptureTime"]
    assert validate_description(missing) == "MAPCaptureTime is missing"
    assert validate_description([1]) == "description is not a JSON object"


def test_description_file_round_trip(tmp_path: Path) -> None:
    ok = record(path=tmp_path / "a.jpg")
    dup = record(path=tmp_path / "b.jpg").set_aside(DUPLICATE, "duplicate of a.jpg: 1.0 m")
    entries = description_file_entries([ok, dup])
    assert entries[0]["filename"] == str(tmp_path / "a.jpg")
    assert entries[0]["filetype"] == "image"
    assert entries[0]["MAPFilename"] == "a.jpg"
    assert entries[1] == {
        "filename": str(tmp_path / "b.jpg"),
        "filetype": "image",
        "error": {"type": "MapillaryDuplicationError", "message": "duplicate of a.jpg: 1.0 m"},
    }
    path = tmp_path / "desc.json"
    path.write_text(json.dumps(entries))
    assert read_description_file(path) == entries
    path.write_text('{"filename": "x"}')
    with pytest.raises(ValueError, match="not a description file"):
        read_description_file(path)
    with pytest.raises(ValueError, match="cannot read"):
        read_description_file(tmp_path / "missing.json")
