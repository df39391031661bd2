"""run_pipeline: the stages in order, on the synthetic drive with positions from EXIF GPS."""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path

from daemon.core import config
from daemon.demo import drive
from daemon.pipeline import PipelineOptions, run_pipeline
from daemon.pipeline.records import BAD_FILE, DUPLICATE, NO_POSITION, ImageRecord


def exif_drive(seed: int, camera_ahead_s: float = 0.0) -> list[ImageRecord]:
    fixes = drive.gps_track(seed)
    recs = []
    for i, t in enumerate(drive.photo_times()):
        lat, lon = drive.interpolate(fixes, t)
        recs.append(
            ImageRecord(
                Path(f"/cap/e_{i}.jpg"),
                drive.at(t) + timedelta(seconds=camera_ahead_s),
                lat=lat,
                lon=lon,
                position_source="exif",
                time_source="exif",
            )
        )
    return recs


def ids():
    n = itertools.count()
    return lambda: f"s{next(n)}"


def test_stages_in_order() -> None:
    recs = exif_drive(3, camera_ahead_s=5.0)
    recs.reverse()  # any input order: the pipeline sorts by capture time
    recs.append(ImageRecord(Path("/cap/nogps.jpg"), drive.at(10.0)))
    recs.append(ImageRecord(Path("/cap/bad.jpg")).set_aside(BAD_FILE, "not a JPEG"))
    options = PipelineOptions(time_offset=5.0, max_images=25, uuid_factory=ids())
    result = run_pipeline(recs, None, options)
    # The time offset is applied without a track too: capture times are true times.
    firsts = [s[0] for s in result.sequences]
    assert firsts[0].capture_time == drive.at(0.5)
    # Split at the long break, then at most 25 per sequence with the count restarting.
    before = [r for s in result.sequences for r in s if r.capture_time < drive.at(drive.BREAK[0])]
    after = [r for s in result.sequences for r in s if r.capture_time > drive.at(drive.WALK[0])]
    assert len(before) + len(after) == result.images
    sizes = [len(s) for s in result.sequences]
    assert sizes == [25] * (len(before) // 25) + (
        [len(before) % 25] if len(before) % 25 else []
    ) + [25] * (len(after) // 25) + ([len(after) % 25] if len(after) % 25 else [])
    assert [s[0].sequence for s in result.sequences] == [f"s{i}" for i in range(len(sizes))]
    # The stop shrank to (about) one photo; nothing else was lost.
    assert all(r.error.type == DUPLICATE for r in result.duplicates)  # type: ignore[union-attr]
    assert 25 <= len(result.duplicates) <= 34
    assert {r.filename: r.error.type for r in result.set_aside} == {  # type: ignore[union-attr]
        "nogps.jpg": NO_POSITION,
        "bad.jpg": BAD_FILE,
    }
    assert result.counts == {DUPLICATE: len(result.duplicates), NO_POSITION: 1, BAD_FILE: 1}
    assert len(result.records) == len(recs)


def test_directions_and_options_from_settings() -> None:
    settings = config.Settings(interpolate_directions=True, offset_angle=90.0)
    options = PipelineOptions.from_settings(settings, max_images=500)
    assert (options.interpolate_directions, options.offset_angle, options.max_images) == (
        True,
        90.0,
        500,
    )
    result = run_pipeline(exif_drive(4), None, options)
    # Driving east, the camera looks right of travel: south.
    east = [r for r in result.sequences[0] if r.capture_time < drive.at(50.0)]
    assert east and all(abs(r.heading - 180.0) < 2.0 for r in east)  # type: ignore[operator]
