"""Finding and loading photos: real files, every bad one set aside with its reason."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from daemon.demo import drive
from daemon.media.load import find_jpegs, load_records
from daemon.pipeline.records import BAD_FILE, BAD_METADATA, NO_TIME


def test_find_jpegs_skips_dotfiles_and_set_aside_folders(tmp_path: Path) -> None:
    for rel in [
        "a.jpg",
        "b.JPEG",
        "sub/c.Jpg",
        "sub/.d.jpg",
        ".cache/e.jpg",
        "duplicates/f.jpg",
        "sub/errors/g.jpg",
        "notes.txt",
        "h.png",
    ]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (tmp_path / "dir.jpg").mkdir()
    found = find_jpegs(tmp_path, ("duplicates", "errors"))
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.jpg", "b.JPEG", "sub/c.Jpg"]
    assert find_jpegs(tmp_path / "a.jpg") == [tmp_path / "a.jpg"]


def test_load_records_fills_records_and_sets_aside_bad_files(tmp_path: Path) -> None:
    drive.write_jpeg(tmp_path / "img_10.jpg", datetime(2024, 6, 1, 11, 0, 5, 250000))
    drive.write_jpeg(
        tmp_path / "img_9.jpg", datetime(2024, 6, 1, 11, 0, 5, 250000), gps=(-33.5, 151.25)
    )
    drive.write_jpeg(tmp_path / "img_1.jpg", datetime(2024, 6, 1, 11, 0, 7))
    drive.write_jpeg(tmp_path / "notime.jpg", None)
    (tmp_path / "text.jpg").write_text("this is not a photo")
    drive.write_jpeg(tmp_path / "cut.jpg", datetime(2024, 6, 1, 11, 0, 0))
    data = (tmp_path / "cut.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) * 2 // 3])
    records = load_records(find_jpegs(tmp_path), "+02:00")
    names = [r.filename for r in records]
    # Capture order, then natural name order for equal times; unusable photos last.
    assert names[:3] == ["img_9.jpg", "img_10.jpg", "img_1.jpg"]
    first = records[0]
    assert first.capture_time == datetime(2024, 6, 1, 9, 0, 5, 250000, tzinfo=UTC)
    assert (first.zone, first.time_source, first.position_source) == ("+02:00", "exif", "exif")
    assert abs(first.lat + 33.5) < 1e-6 and abs(first.lon - 151.25) < 1e-6  # type: ignore[operator]
    assert (first.make, first.model, first.orientation) == ("Acme", "DashCam 1", 1)
    assert records[1].position_source is None and not records[1].has_position
    errors = {r.filename: r.error for r in records if r.error}
    assert set(errors) == {"notime.jpg", "text.jpg", "cut.jpg"}
    assert errors["notime.jpg"].type == NO_TIME
    assert errors["text.jpg"].type in (BAD_FILE, BAD_METADATA)
    assert errors["cut.jpg"].type == BAD_FILE
    assert all(e.message for e in errors.values())
