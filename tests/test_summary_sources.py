"""The summaries say where each value came from and which offsets camera times got.

`process`, `add-tags` and `run --once` over real JPEGs whose capture times come from the GPS
stamp, from DateTimeOriginal with its own offset and from the camera's clock in a named zone (in
June and in December), whose positions come from EXIF GPS or only from XMP, whose headings come
from GPSImgDirection or GPSTrack; one photo was taken in the hour repeated when summer time
ends.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import piexif
import pytest

from daemon.server.config import ServerConfig
from daemon.server.runner import ServerThread
from tests import jpegs
from tests.daemon_proc import TOKEN, DaemonProc, new_daemon, run_cli
from tests.test_exif_read import xmp_segment

LAT, LON = 52.52, 13.40
XMP_POSITION = 'exif:GPSLatitude="52,31.5N" exif:GPSLongitude="13,24.3E"'


def _mixed_folder(folder: Path) -> None:
    """Six photos, days apart (a sequence each), 100 m apart."""
    folder.mkdir(parents=True)
    gps_track = {"GPS": {piexif.GPSIFD.GPSTrackRef: b"T", piexif.GPSIFD.GPSTrack: (450, 10)}}
    jpegs.make_jpeg(
        folder / "a_gps_time.jpg",
        capture_time=datetime(2024, 6, 1, 12, 0, 5),  # the camera's clock, 5 s off: not used
        gps_time=datetime(2024, 6, 1, 10, 0, 0, tzinfo=UTC),
        lat=LAT,
        lon=LON,
        direction=90.0,
    )
    jpegs.make_jpeg(
        folder / "b_offset.jpg",
        capture_time=datetime(2024, 6, 2, 12, 0, 0),
        offset="+02:00",
        lat=LAT + 0.001,
        lon=LON,
        extra_exif=gps_track,
    )
    jpegs.make_jpeg(
        folder / "c_june.jpg", capture_time=datetime(2024, 6, 3, 12, 0), lat=LAT + 0.002, lon=LON
    )
    jpegs.make_jpeg(
        folder / "d_december.jpg",
        capture_time=datetime(2024, 12, 3, 12, 0),
        lat=LAT + 0.003,
        lon=LON,
    )
    jpegs.make_jpeg(
        folder / "e_repeated_hour.jpg",
        capture_time=datetime(2024, 10, 27, 2, 30),  # Berlin's clocks go 03:00 → 02:00
        lat=LAT + 0.004,
        lon=LON,
    )
    xmp_only = jpegs.jpeg_bytes(exif=jpegs.exif_dict(capture_time=datetime(2024, 6, 4, 12, 0)))
    (folder / "f_xmp.jpg").write_bytes(xmp_only[:2] + xmp_segment(XMP_POSITION) + xmp_only[2:])


ZONE = "Europe/Berlin (+02:00 for 3 photos, +01:00 for 1)"  # c, e, f in summer time; d not
SOURCES = (
    "capture time: GPS time 1, DateTimeOriginal+OffsetTimeOriginal 1, "
    "DateTimeOriginal in the camera zone 4; position: EXIF GPS 5, XMP 1; "
    "heading: GPSImgDirection 1, GPSTrack 1, none 4"
)
HINT = (
    "1 photo taken in the hour repeated when summer time ends (first: e_repeated_hour.jpg): "
    "read as the first of the two, so possibly an hour off"
)


def _order_free(line: str) -> str:
    """A sources line with equal counts in a fixed order (they come in order of appearance)."""
    return "; ".join(
        f"{name}: " + ", ".join(sorted(counts.split(", ")))
        for part in line.split("; ")
        for name, counts in (part.split(": ", 1),)
    )


def _sources_line(stdout: str) -> str:
    line = next(ln.strip() for ln in stdout.splitlines() if "capture time:" in ln)
    return _order_free(line)


def test_process_names_each_values_source_and_the_offsets_photos_got(tmp_path: Path) -> None:
    photos = tmp_path / "p"
    _mixed_folder(photos)
    proc = run_cli(tmp_path, "process", str(photos), "--tz", "Europe/Berlin")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "process: 6 images in 6 sequences, 0 duplicates, 0 set aside" in proc.stdout
    assert f"zone of camera times: {ZONE}; time offset: 0 s" in proc.stdout
    assert _sources_line(proc.stdout) == _order_free(SOURCES)
    assert HINT in proc.stdout


def test_add_tags_says_the_same(tmp_path: Path) -> None:
    photos = tmp_path / "p"
    _mixed_folder(photos)
    proc = run_cli(tmp_path, "add-tags", str(photos), "--tz", "Europe/Berlin")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"zone of camera times: {ZONE}" in proc.stdout
    assert _sources_line(proc.stdout) == _order_free(SOURCES)
    assert HINT in proc.stdout


def test_a_fixed_offset_is_not_in_doubt(tmp_path: Path) -> None:
    photos = tmp_path / "p"
    _mixed_folder(photos)
    proc = run_cli(tmp_path, "process", str(photos), "--tz", "+02:00")
    assert "zone of camera times: +02:00; time offset: 0 s" in proc.stdout
    assert "summer time" not in proc.stdout


def test_a_photo_dated_by_ifd0_datetime_is_counted_under_that_name(tmp_path: Path) -> None:
    photos = tmp_path / "p"
    photos.mkdir()
    jpegs.make_jpeg(
        photos / "edited.jpg",
        capture_time=None,  # no DateTimeOriginal or DateTimeDigitized: an editor's export
        extra_exif={"0th": {piexif.ImageIFD.DateTime: b"2024:06:05 12:00:00"}},
        lat=LAT,
        lon=LON,
    )
    proc = run_cli(tmp_path, "process", str(photos), "--tz", "Europe/Berlin")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _sources_line(proc.stdout) == _order_free(
        "capture time: DateTime (IFD0) in the camera zone 1; position: EXIF GPS 1; heading: none 1"
    )


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(tokens=(TOKEN,))) as srv:
        yield srv


def test_run_once_labels_the_zone_with_the_offsets_used(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    inbox = tmp_path / "in"
    _mixed_folder(inbox)
    d = new_daemon(daemons, tmp_path / "work", server.environment(), "--watch", str(inbox))
    done = d.once("--tz", "Europe/Berlin", timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert f"camera times without a zone read in {ZONE}, camera clock offset 0 s" in done.stdout
    assert _sources_line(done.stdout) == _order_free(SOURCES)
    assert HINT in done.stdout
    summary = [e for e in _log_entries(done.stderr) if e.get("event") == "run_summary"]
    assert summary and summary[0]["zone"] == ZONE
    assert summary[0]["sources"]["position"] == {"EXIF GPS": 5, "XMP": 1}


def _log_entries(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out


def test_headings_a_directions_stage_gave_are_counted_as_interpolated() -> None:
    from datetime import timedelta

    from daemon.pipeline import PipelineOptions, run_pipeline
    from daemon.pipeline.provenance import Provenance
    from daemon.pipeline.records import ImageRecord

    t0 = datetime(2024, 6, 1, 10, tzinfo=UTC)
    walk = [
        ImageRecord(
            Path(f"w{i}.jpg"),
            t0 + timedelta(seconds=2 * i),
            LAT + i * 1e-4,  # 11 m a photo, northwards
            LON,
            time_source="exif",
            zone="+02:00",
            position_source="exif",
        )
        for i in range(5)
    ]
    plain = run_pipeline(walk, None, PipelineOptions())
    assert Provenance.of(plain.records).heading == {"none": 5}
    turned = run_pipeline(walk, None, PipelineOptions(interpolate_directions=True))
    assert Provenance.of(turned.records).heading == {"interpolated": 5}
    assert all(abs(r.heading or 0) < 1 or abs((r.heading or 0) - 360) < 1 for r in turned.records)


def test_doctests() -> None:
    import doctest

    from daemon.pipeline import dates, provenance

    assert doctest.testmod(dates).failed == 0
    assert doctest.testmod(provenance).failed == 0
