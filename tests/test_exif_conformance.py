"""Geotag then add-tags on a copy of every photo of ../shared/corpus/exif, checked by exiftool:
every tag it listed before is still there with the same value except those we set, -validate
gives no warning it did not give before, and every byte outside the EXIF segment is identical.
Our reader agrees with exiftool on capture time, GPS, orientation, make and model.

Skips (with the reason) when the corpus or exiftool is absent. Run as a script to print the
figures over the whole corpus (maker-note offset warnings, lost and changed tags, byte-order
flips) for whatever ``daemon`` is first on sys.path:

    python tests/test_exif_conformance.py
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pytest

from daemon.media import exif
from tests.test_exif_read import CORPUS

EXIFTOOL = shutil.which("exiftool")
needs_tools = pytest.mark.skipif(
    not (CORPUS.is_dir() and EXIFTOOL),
    reason=f"needs the camera corpus ({CORPUS}) and exiftool (apt-get install libimage-exiftool-perl)",
)
WHERE = (47.376887, 8.541694, 408.25, 123.5)  # Zürich, 408 m, heading 123.5°
STAMP = datetime(2024, 5, 17, 12, 3, 21, 250_000, tzinfo=UTC)
DESCRIPTION = (
    '{"MAPLatitude":47.376887,"MAPLongitude":8.541694,"MAPCaptureTime":"2024_05_17_12_03_21_250"}'
)
# Tags our two writes set, or that exiftool derives from what they set (or from the file).
OURS = re.compile(r"^(GPS|Composite|System|ExifTool):|^IFD0:ImageDescription$")
MP_START = re.compile(r"^MPImage\d+:MPImageStart$")
MAKER_OFFSETS = re.compile(r"maker ?notes? offset", re.IGNORECASE)


def photos() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))


class Repeated(list):  # type: ignore[type-arg]
    """The values of a tag that exiftool lists more than once (-a)."""


def _pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in items:
        if key not in out:
            out[key] = value
        elif isinstance(out[key], Repeated):
            out[key].append(value)
        else:
            out[key] = Repeated([out[key], value])
    return out


def exiftool_tags(paths: list[Path]) -> dict[str, dict[str, Any]]:
    """``exiftool -a -G1 -n`` of each file (duplicate tags as lists), by file name."""
    done = subprocess.run(
        [str(EXIFTOOL), "-j", "-a", "-G1", "-n", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )
    found = json.loads(done.stdout, object_pairs_hook=_pairs)
    return {Path(item["SourceFile"]).name: item for item in found}


def exiftool_warnings(paths: list[Path]) -> dict[str, list[str]]:
    """``exiftool -validate -warning -a`` of each file: its warnings (Validate's summary out)."""
    done = subprocess.run(
        [str(EXIFTOOL), "-validate", "-warning", "-a", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )
    out: dict[str, list[str]] = {}
    current = paths[0].name if len(paths) == 1 else None
    for line in done.stdout.splitlines():
        if line.startswith("======== "):
            current = Path(line[9:]).name
            out[current] = []
        elif current is not None and line.startswith("Warning"):
            out.setdefault(current, []).append(line.split(":", 1)[1].strip())
    return out


@dataclass
class Report:
    name: str
    lost: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    new_warnings: list[str] = field(default_factory=list)
    maker_warning: bool = False
    order_flipped: bool = False
    outside_changed: bool = False
    refused: str | None = None


def exif_span(blob: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 4 <= len(blob) and blob[pos + 1] != 0xDA:
        end = pos + 2 + int.from_bytes(blob[pos + 2 : pos + 4], "big")
        if blob[pos + 1] == 0xE1 and blob[pos + 4 : pos + 10] == b"Exif\x00\x00":
            return pos, end
        pos = end
    return None


def _exif_size(blob: bytes) -> int:
    span = exif_span(blob)
    return 0 if span is None else span[1] - span[0]


def outside_exif(blob: bytes) -> bytes:
    span = exif_span(blob)
    return blob if span is None else blob[: span[0]] + blob[span[1] :]


def tag_both(path: Path) -> None:
    """What geotag and add-tags write: the GPS IFD replaced, then ImageDescription."""
    lat, lon, alt, heading = WHERE
    exif.write_exif(path, exif.gps_update(lat, lon, alt, heading, STAMP))
    exif.write_description(path, DESCRIPTION)


def conform(folder: Path) -> list[Report]:
    """Copy every corpus photo into ``folder``, tag the copies, and compare with exiftool."""
    originals = photos()
    copies = []
    for p in originals:
        copy = folder / p.name
        shutil.copyfile(p, copy)
        copies.append(copy)
    tags_before, warn_before = exiftool_tags(copies), exiftool_warnings(copies)
    bytes_before = {p.name: p.read_bytes() for p in copies}
    reports = []
    for p in copies:
        report = Report(p.name)
        try:
            tag_both(p)
        except exif.MediaError as exc:
            report.refused = str(exc)
        reports.append(report)
    tags_after, warn_after = exiftool_tags(copies), exiftool_warnings(copies)
    for report, p in zip(reports, copies, strict=True):
        before, after = tags_before[p.name], tags_after[p.name]
        grown = _exif_size(p.read_bytes()) - _exif_size(bytes_before[p.name])
        for key, value in before.items():
            if OURS.search(key):
                continue
            if key not in after:
                report.lost.append(key)
            elif MP_START.search(key) and after[key] == value + grown:
                continue  # a file offset: the images after a grown EXIF segment moved with it
            elif after[key] != value:
                report.changed.append(f"{key}: {value!r:.40} -> {after[key]!r:.40}")
        report.order_flipped = before.get("File:ExifByteOrder") not in (
            None,
            after.get("File:ExifByteOrder"),
        )
        old_warnings = set(warn_before.get(p.name, []))
        report.new_warnings = [w for w in warn_after.get(p.name, []) if w not in old_warnings]
        report.maker_warning = any(MAKER_OFFSETS.search(w) for w in report.new_warnings)
        report.outside_changed = outside_exif(p.read_bytes()) != outside_exif(bytes_before[p.name])
    return reports


@pytest.fixture(scope="module")
def reports() -> list[Report]:
    with tempfile.TemporaryDirectory() as folder:
        return conform(Path(folder))


@needs_tools
def test_every_corpus_photo_is_tagged(reports: list[Report]) -> None:
    assert [(r.name, r.refused) for r in reports if r.refused] == []


@needs_tools
def test_no_tag_is_lost_or_changed(reports: list[Report]) -> None:
    assert [(r.name, r.lost) for r in reports if r.lost] == []
    assert [(r.name, r.changed) for r in reports if r.changed] == []


@needs_tools
def test_no_new_exiftool_warning(reports: list[Report]) -> None:
    assert [(r.name, r.new_warnings) for r in reports if r.new_warnings] == []


@needs_tools
def test_byte_order_and_every_byte_outside_exif_are_kept(reports: list[Report]) -> None:
    assert [r.name for r in reports if r.order_flipped] == []
    assert [r.name for r in reports if r.outside_changed] == []


@needs_tools
def test_tagged_copies_read_back_what_we_wrote(tmp_path: Path) -> None:
    for original in photos():
        p = tmp_path / original.name
        shutil.copyfile(original, p)
        tag_both(p)
        info = exif.read_exif(p)
        assert (info.lat, info.lon) == (
            pytest.approx(WHERE[0], abs=1e-7),
            pytest.approx(WHERE[1], abs=1e-7),
        )
        assert info.altitude == pytest.approx(WHERE[2]) and info.direction == pytest.approx(
            WHERE[3]
        )
        assert info.gps_time == STAMP and info.description == DESCRIPTION


@needs_tools
def test_a_second_round_grows_nothing(tmp_path: Path) -> None:
    for original in photos():
        p = tmp_path / original.name
        shutil.copyfile(original, p)
        tag_both(p)
        exif.write_capture_time(p, datetime(2024, 5, 17, 14, 3, 21), subsec="250", offset="+02:00")
        size = p.stat().st_size
        tag_both(p)
        exif.write_capture_time(p, datetime(2024, 5, 17, 14, 3, 22), subsec="500", offset="+02:00")
        assert p.stat().st_size == size, original.name


def _exif_time(
    tags: dict[str, Any], group: str, name: str, subsec: str, offset: str
) -> datetime | None:
    text = tags.get(f"{group}:{name}")
    if not isinstance(text, str) or not text.strip(" :0"):
        return None
    moment = datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S")
    fraction = str(tags.get(f"ExifIFD:{subsec}", "")).strip()
    if fraction.isdigit():
        moment = moment.replace(microsecond=int((fraction + "000000")[:6]))
    zone = tags.get(f"ExifIFD:{offset}")
    if isinstance(zone, str) and re.fullmatch(r"[+-]\d\d:\d\d", zone):
        delta = timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        moment = moment.replace(tzinfo=timezone(-delta if zone[0] == "-" else delta))
    return moment


def exiftool_time(tags: dict[str, Any], source: str | None) -> datetime | None:
    """The capture time exiftool lists from the tag our reader says it used."""
    if source == "gps":
        stamp = tags.get("Composite:GPSDateTime")
        return (
            datetime.strptime(stamp[:19], "%Y:%m:%d %H:%M:%S").replace(tzinfo=UTC)
            if stamp
            else None
        )
    if source == "exif":
        return _exif_time(
            tags, "ExifIFD", "DateTimeOriginal", "SubSecTimeOriginal", "OffsetTimeOriginal"
        )
    return _exif_time(
        tags, "ExifIFD", "CreateDate", "SubSecTimeDigitized", "OffsetTimeDigitized"
    ) or _exif_time(tags, "IFD0", "ModifyDate", "SubSecTime", "OffsetTime")


@needs_tools
def test_our_reader_agrees_with_exiftool() -> None:
    files = photos()
    listed = exiftool_tags(files)
    for p in files:
        tags = listed[p.name]
        info = exif.read_exif(p)
        assert info.make == (
            str(tags["IFD0:Make"]).strip() or None if "IFD0:Make" in tags else None
        ), p.name
        assert info.model == (
            str(tags["IFD0:Model"]).strip() or None if "IFD0:Model" in tags else None
        ), p.name
        assert info.orientation == tags.get("IFD0:Orientation", 1), p.name
        lat, lon = tags.get("Composite:GPSLatitude"), tags.get("Composite:GPSLongitude")
        if info.position_source == "xmp":  # Adobe's tools keep it only there
            lat, lon = tags.get("XMP-exif:GPSLatitude"), tags.get("XMP-exif:GPSLongitude")
        if info.lat is not None or lat is not None:
            assert (info.lat, info.lon) == (
                pytest.approx(lat, abs=1e-9),
                pytest.approx(lon, abs=1e-9),
            ), p.name
        if info.capture_time is not None:
            expected = exiftool_time(tags, info.time_source)
            got = info.capture_time
            if info.time_source == "gps":
                got = got.replace(microsecond=0)
            assert got == expected, p.name


def main() -> None:
    if not (CORPUS.is_dir() and EXIFTOOL):
        print("needs the corpus and exiftool")
        return
    with tempfile.TemporaryDirectory() as folder:
        reports = conform(Path(folder))
    print(f"{len(reports)} corpus photos, geotag then add-tags on a copy ({exif.__file__})")
    print(f"  refused: {sum(bool(r.refused) for r in reports)}")
    print(f"  with new maker-note offset warnings: {sum(r.maker_warning for r in reports)}")
    print(f"  with any new exiftool warning: {sum(bool(r.new_warnings) for r in reports)}")
    print(
        f"  with lost tags: {sum(bool(r.lost) for r in reports)} (tags lost: {sum(len(r.lost) for r in reports)})"
    )
    print(
        f"  with changed tags: {sum(bool(r.changed) for r in reports)} (tags: {sum(len(r.changed) for r in reports)})"
    )
    print(f"  byte order flipped: {sum(r.order_flipped for r in reports)}")
    print(f"  bytes outside EXIF changed: {sum(r.outside_changed for r in reports)}")
    warnings: dict[str, int] = {}
    for r in reports:
        for w in r.new_warnings:
            key = re.sub(r"\d+", "N", w)[:70]
            warnings[key] = warnings.get(key, 0) + 1
    for w, n in sorted(warnings.items(), key=lambda kv: -kv[1])[:12]:
        print(f"    {n:3}  {w}")
    for r in reports:
        if r.refused or r.lost or r.changed:
            print(f"  {r.name}: refused={r.refused} lost={r.lost[:4]} changed={r.changed[:3]}")


if __name__ == "__main__":
    main()
