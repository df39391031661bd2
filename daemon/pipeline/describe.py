"""The Mapillary image description (the JSON in EXIF ImageDescription) and the description file.

Light on imports on purpose: the embedded server validates uploads with
:func:`validate_description`.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daemon.core.files import valid_text
from daemon.pipeline.records import ImageRecord

CAPTURE_TIME_FORMAT = "%Y_%m_%d_%H_%M_%S_%f"  # the last field holds milliseconds (3 digits)
REQUIRED = ("MAPLatitude", "MAPLongitude", "MAPCaptureTime")
DESCRIPTION_FILE = "mapillary_image_description.json"  # mapillary_tools' name for it


def format_capture_time(moment: datetime) -> str:
    """UTC time as ``YYYY_MM_DD_HH_MM_SS_mmm`` (milliseconds truncated).

    >>> from datetime import timedelta, timezone
    >>> format_capture_time(datetime(2024, 3, 9, 14, 5, 7, 123999, tzinfo=timezone(timedelta(hours=1))))
    '2024_03_09_13_05_07_123'
    """
    if moment.tzinfo is None:
        raise ValueError("capture time without a zone")
    return moment.astimezone(UTC).strftime(CAPTURE_TIME_FORMAT)[:-3]


def parse_capture_time(text: str) -> datetime:
    """The inverse of :func:`format_capture_time`; seconds-only values are accepted too.

    >>> parse_capture_time("2024_03_09_13_05_07_123").isoformat()
    '2024-03-09T13:05:07.123000+00:00'
    >>> parse_capture_time("2024_03_09_13_05_07").second
    7
    """
    for fmt in (CAPTURE_TIME_FORMAT, CAPTURE_TIME_FORMAT[:-3]):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ValueError(f"capture time {text!r} is not YYYY_MM_DD_HH_MM_SS_mmm")


def describe(record: ImageRecord, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The description of one usable, positioned, timed image.

    ``extra`` adds fields such as ``MAPPhotoUUID`` or ``MAPSettingsProject`` (it wins over the
    record's own values). ``MAPSequenceUUID`` comes from the record once it has a sequence.

    >>> from pathlib import Path
    >>> r = ImageRecord(Path("/x/a.jpg"), datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
    ...                 lat=52.123456789, lon=13.5, altitude=34.56789, heading=359.99991)
    >>> description_json(describe(r))
    '{"MAPAltitude":34.568,"MAPCaptureTime":"2024_01_02_03_04_05_678","MAPCompassHeading":{"MagneticHeading":0.0,"TrueHeading":0.0},"MAPFilename":"a.jpg","MAPLatitude":52.1234568,"MAPLongitude":13.5,"MAPOrientation":1}'
    """
    if not record.ok:
        raise ValueError(f"{record.filename} is set aside: {record.reason}")
    if record.capture_time is None or not record.has_position:
        raise ValueError(f"{record.filename} has no capture time or no position")
    lat, lon = record.position
    desc: dict[str, Any] = {
        "MAPLatitude": round(lat, 7),
        "MAPLongitude": round(lon, 7),
        "MAPCaptureTime": format_capture_time(record.capture_time),
        "MAPOrientation": record.orientation,
        "MAPFilename": record.filename,
    }
    if record.altitude is not None:
        desc["MAPAltitude"] = round(record.altitude, 3)
    if record.heading is not None:
        # Rounding may reach 360.0, which is north again.
        heading = round(record.heading, 3) % 360.0
        desc["MAPCompassHeading"] = {"TrueHeading": heading, "MagneticHeading": heading}
    if record.make:
        desc["MAPDeviceMake"] = record.make
    if record.model:
        desc["MAPDeviceModel"] = record.model
    if record.sequence:
        desc["MAPSequenceUUID"] = record.sequence
    desc.update(extra or {})
    return desc


def description_json(desc: dict[str, Any]) -> str:
    """Compact JSON with sorted keys, as written into EXIF.

    >>> description_json({"b": 1, "a": {"d": 2.5, "c": "é"}})
    '{"a":{"c":"é","d":2.5},"b":1}'
    """
    text = json.dumps(desc, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    try:
        text.encode("utf-8")  # what EXIF and the server get
    except UnicodeEncodeError:  # a file name that is not UTF-8 (a card from another system)
        return description_json(_valid(desc))
    return text


def _valid(value: Any) -> Any:
    """``value`` with every text in it valid UTF-8 (see :func:`daemon.core.files.valid_text`).

    >>> import os
    >>> description_json({"MAPFilename": os.fsdecode(b"G\\xff01.JPG")})
    '{"MAPFilename":"G\\\\\\\\xff01.JPG"}'
    """
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, dict):
        return {valid_text(str(k)): _valid(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_valid(v) for v in value]
    return value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def validate_description(desc: Any) -> str | None:
    """Why a description is unusable, or None when it is fine.

    >>> validate_description({"MAPLatitude": 91, "MAPLongitude": 0,
    ...                       "MAPCaptureTime": "2024_01_01_00_00_00_000"})
    'MAPLatitude 91 is outside -90..90'
    >>> validate_description({"MAPLatitude": 1.5, "MAPLongitude": 2.5,
    ...                       "MAPCaptureTime": "2024_01_01_00_00_00_000"}) is None
    True
    """
    if not isinstance(desc, dict):
        return "description is not a JSON object"
    for key in REQUIRED:
        if key not in desc:
            return f"{key} is missing"
    for key, limit in (("MAPLatitude", 90), ("MAPLongitude", 180)):
        value = desc[key]
        if not _number(value):
            return f"{key} is not a number: {value!r}"
        if not -limit <= value <= limit:
            return f"{key} {value} is outside -{limit}..{limit}"
    if not isinstance(desc["MAPCaptureTime"], str):
        return "MAPCaptureTime is not a string"
    try:
        parse_capture_time(desc["MAPCaptureTime"])
    except ValueError as exc:
        return str(exc)
    if "MAPAltitude" in desc and not _number(desc["MAPAltitude"]):
        return f"MAPAltitude is not a number: {desc['MAPAltitude']!r}"
    if "MAPCompassHeading" in desc:
        heading = desc["MAPCompassHeading"]
        if not isinstance(heading, dict):
            return "MAPCompassHeading is not an object"
        for key in ("TrueHeading", "MagneticHeading"):
            if key in heading and not (_number(heading[key]) and 0 <= heading[key] < 360):
                return f"MAPCompassHeading.{key} is not a heading in [0, 360): {heading[key]!r}"
    orientation = desc.get("MAPOrientation", 1)
    if not (isinstance(orientation, int) and not isinstance(orientation, bool)):
        return f"MAPOrientation is not an integer: {orientation!r}"
    if not 1 <= orientation <= 8:
        return f"MAPOrientation {orientation} is outside 1..8"
    for key in ("MAPDeviceMake", "MAPDeviceModel", "MAPFilename", "MAPSequenceUUID"):
        if key in desc and not isinstance(desc[key], str):
            return f"{key} is not a string"
    return None


def description_file_entries(
    records: list[ImageRecord], extra: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Entries of a mapillary_tools description file (``mapillary_image_description.json``).

    Usable images carry ``filename`` (absolute path, as mapillary_tools writes it), ``filetype``
    and their description; set-aside images carry ``error`` with its ``type`` and ``message``.
    """
    return [description_file_entry(record, extra) for record in records]


def description_file_entry(record: ImageRecord, extra: dict[str, Any] | None = None) -> dict:
    """One entry of :func:`description_file_entries`."""
    path = record.path if isinstance(record.path, Path) else Path(record.path)
    head = {"filename": str(path if path.is_absolute() else path.absolute()), "filetype": "image"}
    error = record.error
    if error is None:
        return {**head, **describe(record, extra)}
    return {**head, "error": {"type": error.type, "message": error.message}}


def read_description_file(path: Path) -> list[dict[str, Any]]:
    """Entries of a description file; ValueError (naming the file) when it is not one."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read description file: {exc}") from None
    if not isinstance(data, list) or not all(
        isinstance(e, dict) and isinstance(e.get("filename"), str) for e in data
    ):
        raise ValueError(f"{path}: not a description file (a JSON list of entries with filename)")
    return data
