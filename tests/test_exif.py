"""EXIF reading and writing on real JPEGs made with Pillow + piexif (tests/jpegs.py)."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import piexif
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from daemon.core.geo import distance_m
from daemon.media import exif
from daemon.media.exif import MediaError, read_exif
from daemon.media.exif_read import exif_info_of
from tests.jpegs import exif_dict, jpeg_bytes, make_jpeg, make_plain_jpeg, scan_data

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False
T0 = datetime(2024, 5, 17, 14, 3, 21)
REPO = Path(__file__).resolve().parents[1]


def pixels(path: Path) -> bytes:
    with Image.open(path) as im:
        return im.convert("RGB").tobytes()


def exif_segment(blob: bytes) -> tuple[int, int]:
    """[start, end) of the Exif APP1 segment, found by walking markers independently."""
    pos = 2
    while blob[pos + 1] != 0xDA:
        end = pos + 2 + int.from_bytes(blob[pos + 2 : pos + 4], "big")
        if blob[pos + 1] == 0xE1 and blob[pos + 4 : pos + 10] == b"Exif\x00\x00":
            return pos, end
        pos = end
    raise AssertionError("no Exif segment")


def without_exif(blob: bytes) -> bytes:
    start, end = exif_segment(blob)
    return blob[:start] + blob[end:]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or "tmp" in p.name)


# -- reading ---------------------------------------------------------------------------------------


def test_capture_time_with_subsec_and_offset_is_aware(tmp_path: Path) -> None:
    p = make_jpeg(tmp_path / "a.jpg", capture_time=T0, subsec="042", offset="-03:30")
    info = read_exif(p)
    assert info.capture_time == T0.replace(
        microsecond=42_000, tzinfo=timezone(-timedelta(hours=3, minutes=30))
    )
    assert info.time_source == "exif"


@pytest.mark.parametrize(
    ("subsec", "micro"), [("5", 500_000), ("12", 120_000), ("1234567", 123_456)]
)
def test_subsec_is_a_decimal_fraction(tmp_path: Path, subsec: str, micro: int) -> None:
    p = make_jpeg(tmp_path / "a.jpg", capture_time=T0, subsec=subsec)
    info = read_exif(p)
    assert info.capture_time == T0.replace(microsecond=micro)
    assert info.capture_time.tzinfo is None


def test_gps_stamp_is_used_when_there_is_no_original_time(tmp_path: Path) -> None:
    stamp = datetime(2023, 12, 31, 23, 59, 58, 500_000, tzinfo=UTC)
    p = make_jpeg(tmp_path / "a.jpg", capture_time=None, gps_time=stamp, lat=1.0, lon=2.0)
    info = read_exif(p)
    assert info.capture_time == stamp and info.time_source == "gps"
    assert info.gps_time == stamp


def test_gps_stamp_wins_over_original_time_as_in_the_official_uploader(tmp_path: Path) -> None:
    stamp = datetime(2024, 5, 17, 12, 3, 20, tzinfo=UTC)
    p = make_jpeg(tmp_path / "a.jpg", capture_time=T0, gps_time=stamp, lat=1.0, lon=2.0)
    info = read_exif(p)
    assert info.capture_time == stamp and info.time_source == "gps" and info.gps_time == stamp


def test_a_whole_second_gps_stamp_takes_the_camera_fraction_when_the_clocks_agree(
    tmp_path: Path,
) -> None:
    stamp = datetime(2024, 5, 17, 12, 3, 21, tzinfo=UTC)  # camera: 14:03:21.250 at +02:00
    p = make_jpeg(tmp_path / "a.jpg", capture_time=T0, subsec="25", gps_time=stamp, lat=1, lon=2)
    assert read_exif(p).capture_time == stamp.replace(microsecond=250_000)
    late = stamp + timedelta(seconds=2)  # the clocks disagree: the stamp as it is
    p = make_jpeg(tmp_path / "b.jpg", capture_time=T0, subsec="25", gps_time=late, lat=1, lon=2)
    assert read_exif(p).capture_time == late


def test_a_bad_camera_time_beside_a_gps_stamp_is_no_obstacle(tmp_path: Path) -> None:
    stamp = datetime(2024, 5, 17, 12, 3, 21, tzinfo=UTC)
    bad = {"Exif": {piexif.ExifIFD.DateTimeOriginal: b"2024:13:45 99:00:00"}}
    p = make_jpeg(tmp_path / "a.jpg", gps_time=stamp, lat=1.0, lon=2.0, extra_exif=bad)
    assert read_exif(p).capture_time == stamp


def test_digitized_then_plain_datetime_are_fallbacks(tmp_path: Path) -> None:
    digitized = {"Exif": {piexif.ExifIFD.DateTimeDigitized: b"2022:01:02 03:04:05"}}
    p = make_jpeg(tmp_path / "d.jpg", capture_time=None, extra_exif=digitized)
    info = read_exif(p)
    assert (info.capture_time, info.time_source) == (datetime(2022, 1, 2, 3, 4, 5), "digitized")
    plain = {"0th": {piexif.ImageIFD.DateTime: b"2021:06:07 08:09:10"}}
    p = make_jpeg(tmp_path / "p.jpg", capture_time=None, extra_exif=plain)
    assert read_exif(p).capture_time == datetime(2021, 6, 7, 8, 9, 10)


def test_unset_camera_clock_counts_as_no_time(tmp_path: Path) -> None:
    blank = {
        "Exif": {
            piexif.ExifIFD.DateTimeOriginal: b"0000:00:00 00:00:00",
            piexif.ExifIFD.DateTimeDigitized: b"    :  :     :  :  ",
        }
    }
    p = make_jpeg(tmp_path / "a.jpg", capture_time=None, extra_exif=blank)
    info = read_exif(p)
    assert info.capture_time is None and info.time_source is None


def test_position_altitude_direction_with_southern_western_refs(tmp_path: Path) -> None:
    p = make_jpeg(
        tmp_path / "a.jpg",
        capture_time=T0,
        lat=-33.8688197,
        lon=-70.6692655,
        altitude=-27.5,
        direction=359.25,
    )
    info = read_exif(p)
    assert info.lat == pytest.approx(-33.8688197, abs=1e-9)
    assert info.lon == pytest.approx(-70.6692655, abs=1e-9)
    assert info.altitude == pytest.approx(-27.5)
    assert info.direction == pytest.approx(359.25)


def test_no_gps_gives_none(tmp_path: Path) -> None:
    info = read_exif(make_jpeg(tmp_path / "a.jpg", capture_time=T0))
    assert (info.lat, info.lon, info.altitude, info.direction, info.gps_time) == (None,) * 5


def test_make_model_orientation_description_and_size(tmp_path: Path) -> None:
    p = make_jpeg(
        tmp_path / "a.jpg",
        size=(120, 90),
        capture_time=T0,
        make="GoPro\x00\x00  ",
        model="  HERO9 Black\x00",
        orientation=6,
        description='{"MAPLatitude": 1.5, "note": "Zürich ☀"}',
    )
    info = read_exif(p)
    assert (info.make, info.model, info.orientation) == ("GoPro", "HERO9 Black", 6)
    assert info.description == '{"MAPLatitude": 1.5, "note": "Zürich ☀"}'
    assert (info.width, info.height) == (120, 90)


def test_missing_orientation_defaults_to_1_and_latin1_description_is_tolerated(
    tmp_path: Path,
) -> None:
    latin = {"0th": {piexif.ImageIFD.ImageDescription: b"caf\xe9 au lait"}}
    p = make_jpeg(tmp_path / "a.jpg", capture_time=T0, orientation=None, extra_exif=latin)
    info = read_exif(p)
    assert info.orientation == 1
    assert info.description == "caf\ufffd au lait"


def test_progressive_jpeg_size_and_jpeg_without_exif(tmp_path: Path) -> None:
    p = tmp_path / "prog.jpg"
    Image.new("RGB", (77, 33), (1, 2, 3)).save(p, "JPEG", progressive=True)
    info = read_exif(p)
    assert (info.width, info.height) == (77, 33)
    assert info.capture_time is None and info.make is None and info.orientation == 1


@pytest.mark.parametrize("padding", [1, 4095, 4096, 10_000])
def test_trailing_zero_padding_is_tolerated(tmp_path: Path, padding: int) -> None:
    p = make_jpeg(tmp_path / "a.jpg", capture_time=T0)
    with open(p, "ab") as fh:
        fh.write(b"\x00" * padding)
    assert exif.is_complete_jpeg(p)
    assert read_exif(p).capture_time == T0
    exif.write_description(p, "ok")
    assert read_exif(p).description == "ok"


def test_read_touches_only_the_head_of_a_big_file(tmp_path: Path) -> None:
    """A 20 MB photo: the bytes this process reads (Linux /proc/self/io rchar) stay tiny."""
    io_stats = Path("/proc/self/io")
    if not io_stats.exists():
        pytest.skip("needs /proc/self/io")
    small = jpeg_bytes(exif=exif_dict(capture_time=T0, lat=10.0, lon=20.0), size=(32, 24))
    start, _ = exif_segment(small)
    sos = len(small) - len(scan_data(small))
    header = small[: sos + 2 + int.from_bytes(small[sos + 2 : sos + 4], "big")]
    p = tmp_path / "big.jpg"
    with open(p, "wb") as fh:
        fh.write(header)
        fh.write(random.Random(1).randbytes(20 * 1024 * 1024))
        fh.write(b"\xff\xd9")

    def rchar() -> int:
        line = next(x for x in io_stats.read_text().splitlines() if x.startswith("rchar:"))
        return int(line.split()[1])

    before = rchar()
    info = read_exif(p)
    after = rchar()
    assert info.capture_time == T0 and info.lat == pytest.approx(10.0)
    # The /proc read itself counts too; both are far below the 20 MB a full read would cost.
    assert after - before < 256 * 1024, after - before
    assert start < len(header)


# -- bad input -------------------------------------------------------------------------------------


def _truncated_scan(p: Path) -> None:
    blob = make_jpeg(p, capture_time=T0, size=(200, 150)).read_bytes()
    p.write_bytes(blob[: len(blob) - 500])


def _truncated_header(p: Path) -> None:
    blob = make_jpeg(p, capture_time=T0, description="x" * 300).read_bytes()
    start, end = exif_segment(blob)
    p.write_bytes(blob[: start + 40])


def _corrupt_exif(p: Path) -> None:
    blob = bytearray(make_jpeg(p, capture_time=T0).read_bytes())
    start, _ = exif_segment(bytes(blob))
    blob[start + 10 : start + 18] = b"JUNKJUNK"  # the TIFF header (byte order, magic, IFD offset)
    p.write_bytes(bytes(blob))


def _corrupt_ifd(p: Path) -> None:
    blob = bytearray(make_jpeg(p, capture_time=T0).read_bytes())
    start, _ = exif_segment(bytes(blob))
    blob[start + 14 : start + 18] = (60000).to_bytes(4, "big")  # 0th IFD offset past the end
    p.write_bytes(bytes(blob))


def _huge_count(p: Path) -> None:
    """Orientation's count says four billion: piexif alone would spend a minute and gigabytes."""
    blob = make_jpeg(p, capture_time=T0, orientation=6).read_bytes()
    start, end = exif_segment(blob)
    entry = blob.index((piexif.ImageIFD.Orientation).to_bytes(2, "big") + b"\x00\x03", start, end)
    p.write_bytes(blob[: entry + 4] + b"\xff\xff\xff\xf0" + blob[entry + 8 :])


def _png(p: Path) -> None:
    Image.new("RGB", (8, 8)).save(p, "PNG")


BAD = {
    "empty": (lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
    "png": (_png, "not a JPEG (starts with b'\\x89PNG"),
    "text": (lambda p: p.write_text("hello world\n"), "not a JPEG (starts with b'hello wo'"),
    "cut in image data": (_truncated_scan, "truncated JPEG (no end-of-image marker)"),
    "cut in header": (_truncated_header, "truncated JPEG header"),
    "corrupt exif": (_corrupt_exif, "corrupt EXIF"),
    "corrupt ifd offset": (_corrupt_ifd, "corrupt EXIF"),
    "huge entry count": (_huge_count, "corrupt EXIF (tag 274 claims 8,589,934,560 bytes)"),
    "bad date": (
        lambda p: make_jpeg(
            p,
            capture_time=None,
            extra_exif={"Exif": {piexif.ExifIFD.DateTimeOriginal: b"2024:13:45 99:00:00"}},
        ),
        "bad DateTimeOriginal date '2024:13:45 99:00:00'",
    ),
    "bad offset": (
        lambda p: make_jpeg(p, capture_time=T0, offset="+2 hrs"),
        "bad OffsetTimeOriginal '+2 hrs'",
    ),
    "latitude out of range": (
        lambda p: make_jpeg(p, capture_time=T0, lat=95.0, lon=10.0),
        "GPS latitude 95.000000 is out of range",
    ),
    "longitude out of range": (
        lambda p: make_jpeg(p, capture_time=T0, lat=5.0, lon=-190.5),
        "GPS longitude -190.500000 is out of range",
    ),
    "zero denominator": (
        lambda p: make_jpeg(
            p,
            capture_time=T0,
            lat=1.0,
            lon=2.0,
            extra_exif={"GPS": {piexif.GPSIFD.GPSLongitude: ((5, 0), (0, 1), (0, 1))}},
        ),
        "corrupt GPS data in EXIF",
    ),
}


SOUND_CONTAINER = {
    "bad date",
    "bad offset",
    "latitude out of range",
    "longitude out of range",
    "zero denominator",
    "huge entry count",  # the damaged entry is kept as it is, the others can be written
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_a_clear_media_error_and_the_file_is_untouched(
    tmp_path: Path, case: str
) -> None:
    build, reason = BAD[case]
    p = tmp_path / "photo.jpg"
    build(p)
    original = p.read_bytes()
    with pytest.raises(MediaError) as err:
        read_exif(p)
    assert str(err.value).startswith(reason), str(err.value)
    assert "\n" not in str(err.value)
    if case in SOUND_CONTAINER:
        # only a value is wrong: the file is a whole JPEG, and writing it stays possible
        assert exif.is_complete_jpeg(p)
    else:
        for write in (
            lambda: exif.write_description(p, "x"),
            lambda: exif.write_gps(p, 1.0, 2.0),
            lambda: exif.tagged_bytes(p, "x"),
        ):
            with pytest.raises(MediaError):
                write()
    assert p.read_bytes() == original
    assert leftovers(tmp_path) == []


def test_is_complete_jpeg(tmp_path: Path) -> None:
    good = make_jpeg(tmp_path / "good.jpg", capture_time=T0)
    assert exif.is_complete_jpeg(good)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[:-3])
    assert not exif.is_complete_jpeg(cut)
    png = tmp_path / "png.jpg"
    _png(png)
    assert not exif.is_complete_jpeg(png)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert not exif.is_complete_jpeg(empty)
    assert not exif.is_complete_jpeg(tmp_path / "missing.jpg")


def test_unreadable_paths_are_media_errors(tmp_path: Path) -> None:
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    with pytest.raises(MediaError, match="^cannot read: Is a directory"):
        read_exif(folder)
    with pytest.raises(MediaError, match="^cannot read: No such file"):
        read_exif(tmp_path / "missing.jpg")
    with pytest.raises(MediaError, match="^cannot read"):
        exif.tagged_bytes(folder, "x")


@pytest.mark.skipif(ROOT, reason="root reads files whatever their mode")
def test_permission_denied_is_a_media_error(tmp_path: Path) -> None:
    p = make_jpeg(tmp_path / "a.jpg", capture_time=T0)
    p.chmod(0)
    try:
        with pytest.raises(MediaError, match="^cannot read: Permission denied"):
            read_exif(p)
    finally:
        p.chmod(0o644)


# -- writing ---------------------------------------------------------------------------------------

KEEP = {
    "0th": {
        piexif.ImageIFD.Artist: b"Ada Lovelace",
        piexif.ImageIFD.Copyright: b"(c) 2024 Ada",
        piexif.ImageIFD.Software: b"CamFW 1.2",
    },
    "Exif": {
        piexif.ExifIFD.UserComment: b"ASCII\x00\x00\x00kept as is",
        piexif.ExifIFD.FNumber: (28, 10),
        piexif.ExifIFD.ISOSpeedRatings: 200,
    },
}


def rich_jpeg(path: Path) -> Path:
    return make_jpeg(
        path,
        size=(160, 120),
        capture_time=T0,
        subsec="250",
        offset="+02:00",
        lat=47.3769,
        lon=8.5417,
        altitude=408.0,
        direction=12.0,
        gps_time=datetime(2024, 5, 17, 12, 3, 21, tzinfo=UTC),
        description="before",
        extra_exif=KEEP,
        thumbnail=True,
    )


def assert_only_exif_changed(before: bytes, after: bytes) -> None:
    assert scan_data(after) == scan_data(before)
    assert without_exif(after) == without_exif(before)
    old, new = piexif.load(before), piexif.load(after)
    assert new["thumbnail"] == old["thumbnail"] and new["thumbnail"]
    for ifd, tags in KEEP.items():
        for tag, value in tags.items():
            assert new[ifd][tag] == value


def test_write_description_keeps_everything_else(tmp_path: Path) -> None:
    p = rich_jpeg(tmp_path / "a.jpg")
    before = p.read_bytes()
    text = '{"MAPCaptureTime":"2024_05_17_12_03_21_250","note":"ünïcödé ✓"}'
    exif.write_description(p, text)
    after = p.read_bytes()
    assert_only_exif_changed(before, after)
    info = read_exif(p)
    assert info.description == text
    assert info.capture_time == T0.replace(microsecond=250_000, tzinfo=timezone(timedelta(hours=2)))
    assert info.lat == pytest.approx(47.3769, abs=1e-9)
    assert pixels(p) == Image.open(io.BytesIO(before)).convert("RGB").tobytes()
    assert leftovers(tmp_path) == []


def test_write_gps_round_trip_and_replaces_the_old_fix(tmp_path: Path) -> None:
    p = rich_jpeg(tmp_path / "a.jpg")
    before = p.read_bytes()
    stamp = datetime(2024, 5, 17, 14, 3, 21, 750_000, tzinfo=timezone(timedelta(hours=2)))
    exif.write_gps(p, -12.3456789, -45.6789012, altitude=-3.25, direction=-90.0, utc_time=stamp)
    assert_only_exif_changed(before, p.read_bytes())
    info = read_exif(p)
    assert info.lat == pytest.approx(-12.3456789, abs=1e-8)
    assert info.lon == pytest.approx(-45.6789012, abs=1e-8)
    assert info.altitude == pytest.approx(-3.25)
    assert info.direction == pytest.approx(270.0)
    assert info.gps_time == stamp
    gps = piexif.load(str(p))["GPS"]
    assert gps[piexif.GPSIFD.GPSVersionID] == (2, 2, 0, 0)
    assert gps[piexif.GPSIFD.GPSImgDirectionRef] == b"T"
    assert gps[piexif.GPSIFD.GPSDateStamp] == b"2024:05:17"
    exif.write_gps(p, 1.0, 2.0)  # no altitude, heading or stamp now: the old ones must go
    info = read_exif(p)
    assert (info.lat, info.lon) == (pytest.approx(1.0), pytest.approx(2.0))
    assert (info.altitude, info.direction, info.gps_time) == (None, None, None)


@settings(max_examples=60, deadline=None)
@given(
    lat=st.floats(-90, 90, allow_nan=False),
    lon=st.floats(-180, 180, allow_nan=False),
)
def test_gps_precision_is_better_than_1e7_degrees(lat: float, lon: float) -> None:
    blob = jpeg_bytes(exif=exif_dict(capture_time=T0))
    with tempfile.TemporaryDirectory() as folder:
        p = Path(folder) / "a.jpg"
        p.write_bytes(blob)
        exif.write_gps(p, lat, lon)
        info = read_exif(p)
    assert abs(info.lat - lat) < 1e-7 and abs(info.lon - lon) < 1e-7
    assert distance_m(lat, lon, info.lat, info.lon) < 0.01


def test_write_gps_refuses_positions_off_the_globe(tmp_path: Path) -> None:
    p = make_jpeg(tmp_path / "a.jpg", capture_time=T0)
    before = p.read_bytes()
    with pytest.raises(MediaError, match="out of range"):
        exif.write_gps(p, 91.0, 0.0)
    assert p.read_bytes() == before


def test_write_capture_time_round_trips_and_drops_stale_parts(tmp_path: Path) -> None:
    p = rich_jpeg(tmp_path / "a.jpg")
    exif.write_gps(p, 47.3769, 8.5417)  # no GPS stamp: it would be the capture time
    before = p.read_bytes()
    new = datetime(2020, 2, 29, 23, 59, 59)
    exif.write_capture_time(p, new, subsec="5", offset="-07:00")
    assert_only_exif_changed(before, p.read_bytes())
    assert read_exif(p).capture_time == new.replace(
        microsecond=500_000, tzinfo=timezone(-timedelta(hours=7))
    )
    exif.write_capture_time(p, new)
    got = read_exif(p).capture_time
    assert got == new and got.tzinfo is None
    exif.write_capture_time(p, new.replace(tzinfo=timezone(timedelta(hours=5, minutes=45))))
    assert read_exif(p).capture_time.utcoffset() == timedelta(hours=5, minutes=45)
    with pytest.raises(MediaError):
        exif.write_capture_time(p, new, offset="02:00")
    with pytest.raises(MediaError):
        exif.write_capture_time(p, new, subsec="0.5")


def test_write_exif_with_a_function_can_delete_tags(tmp_path: Path) -> None:
    p = rich_jpeg(tmp_path / "a.jpg")

    def drop_artist(data: dict) -> None:
        del data["0th"][piexif.ImageIFD.Artist]
        data["0th"][piexif.ImageIFD.Make] = b"NewMake"

    exif.write_exif(p, drop_artist)
    data = piexif.load(str(p))
    assert piexif.ImageIFD.Artist not in data["0th"]
    assert data["0th"][piexif.ImageIFD.Copyright] == b"(c) 2024 Ada"
    assert read_exif(p).make == "NewMake"


def test_writing_into_a_jpeg_without_exif_inserts_after_jfif(tmp_path: Path) -> None:
    p = make_plain_jpeg(tmp_path / "plain.jpg", size=(50, 40))
    before = p.read_bytes()
    assert before[2:4] == b"\xff\xe0"  # Pillow writes a JFIF APP0 first
    app0_end = 4 + int.from_bytes(before[4:6], "big")
    exif.write_gps(p, 51.5, -0.1, utc_time=datetime(2024, 1, 1, 12, 0, 0))
    after = p.read_bytes()
    start, end = exif_segment(after)
    assert start == app0_end
    assert after[:start] == before[:app0_end] and after[end:] == before[app0_end:]
    info = read_exif(p)
    assert (info.lat, info.lon) == (pytest.approx(51.5), pytest.approx(-0.1))
    assert info.gps_time == datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert pixels(p) == Image.open(io.BytesIO(before)).convert("RGB").tobytes()


def test_tagged_bytes_leaves_the_file_alone_and_matches_a_written_copy(tmp_path: Path) -> None:
    p = rich_jpeg(tmp_path / "a.jpg")
    before = p.read_bytes()
    stat = p.stat()
    text = '{"MAPLatitude":47.3769}'
    data = exif.tagged_bytes(p, text)
    assert p.read_bytes() == before and p.stat().st_mtime_ns == stat.st_mtime_ns
    assert_only_exif_changed(before, data)
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(before)
    exif.write_description(copy, text)
    assert copy.read_bytes() == data
    assert read_exif(copy).description == text


def test_oversized_exif_is_refused_and_the_file_kept(tmp_path: Path) -> None:
    p = rich_jpeg(tmp_path / "a.jpg")
    before = p.read_bytes()
    with pytest.raises(MediaError, match="64 KB"):
        exif.write_description(p, "x" * 70_000)
    assert p.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_an_update_that_fails_leaves_the_file_alone(tmp_path: Path) -> None:
    p = rich_jpeg(tmp_path / "a.jpg")
    before = p.read_bytes()

    def broken(data: dict) -> None:
        data["0th"][piexif.ImageIFD.Orientation] = "sideways"  # piexif cannot encode this

    with pytest.raises(MediaError, match="^cannot write EXIF"):
        exif.write_exif(p, broken)
    assert p.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_write_keeps_the_file_mode(tmp_path: Path) -> None:
    p = rich_jpeg(tmp_path / "a.jpg")
    p.chmod(0o640)
    exif.write_description(p, "mode")
    assert p.stat().st_mode & 0o777 == 0o640


def test_a_write_that_fails_on_disk_leaves_the_original_and_no_temp_file(tmp_path: Path) -> None:
    """A real failed write: a child process whose file size limit (RLIMIT_FSIZE) is below
    the photo's size, so writing the temp file fails with EFBIG half way."""
    p = make_jpeg(tmp_path / "a.jpg", size=(400, 300), capture_time=T0, description="old")
    before = p.read_bytes()
    limit = len(before) // 2
    code = (
        "import resource, signal, sys\n"
        "from daemon.media import exif\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        "try:\n"
        "    exif.write_description(sys.argv[1], 'new')\n"
        "except OSError as exc:\n"
        "    print('OSError', exc.errno)\n"
        "    sys.exit(3)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(p)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert p.read_bytes() == before
    assert read_exif(p).description == "old"
    assert leftovers(tmp_path) == []


@pytest.mark.skipif(ROOT, reason="root writes into read-only folders")
def test_read_only_folder_write_fails_and_keeps_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    p = rich_jpeg(folder / "a.jpg")
    before = p.read_bytes()
    folder.chmod(0o555)
    try:
        with pytest.raises(PermissionError):
            exif.write_description(p, "new")
        assert p.read_bytes() == before
        assert leftovers(folder) == []
    finally:
        folder.chmod(0o755)


def test_non_utf8_file_names(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9 \xff.jpg")
    p = tmp_path / name
    try:
        make_jpeg(p, capture_time=T0, lat=10.0, lon=20.0)
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system refuses non-UTF-8 names")
    assert exif.is_complete_jpeg(p)
    assert read_exif(p).capture_time == T0
    exif.write_gps(p, -1.5, 2.5)
    exif.write_description(p, "d")
    exif.write_capture_time(p, T0 + timedelta(seconds=1), subsec="1")
    info = read_exif(str(p))
    assert (info.lat, info.lon, info.description) == (-1.5, 2.5, "d")
    assert info.capture_time == T0 + timedelta(seconds=1, microseconds=100_000)
    tagged = piexif.load(exif.tagged_bytes(p, "up"))
    assert tagged["0th"][piexif.ImageIFD.ImageDescription] == b"up"
    assert os.listdir(os.fsencode(tmp_path)) == [b"caf\xe9 \xff.jpg"]


def retype(blob: bytes, tag: int, old_type: int, new_type: int) -> bytes:
    """Change the type field of one IFD entry in place, as a careless camera writes it."""
    start, end = exif_segment(blob)
    tiff = blob[start + 10 : end]
    assert tiff[:2] == b"MM"  # piexif writes big-endian
    entry = tag.to_bytes(2, "big") + old_type.to_bytes(2, "big")
    at = blob.index(entry, start + 10, end)
    return blob[:at] + tag.to_bytes(2, "big") + new_type.to_bytes(2, "big") + blob[at + 4 :]


def test_mistyped_camera_entries_are_kept_as_written_not_fatal(tmp_path: Path) -> None:
    odd = {
        "0th": {piexif.ImageIFD.Artist: b"", piexif.ImageIFD.Copyright: b"(c) Cam"},
        "Exif": {piexif.ExifIFD.SceneType: b"\x01", piexif.ExifIFD.ISOSpeedRatings: 400},
    }
    blob = jpeg_bytes(exif=exif_dict(capture_time=T0, lat=1.5, lon=2.5, extra_exif=odd))
    blob = retype(blob, piexif.ExifIFD.SceneType, 7, 1)  # UNDEFINED written as BYTE: fixable
    blob = retype(blob, piexif.ImageIFD.Artist, 2, 3)  # ASCII written as SHORT: not fixable
    p = tmp_path / "odd.jpg"
    p.write_bytes(blob)
    with pytest.raises(ValueError):
        piexif.dump(piexif.load(blob))  # what plain piexif does with such a file
    assert read_exif(p).capture_time == T0
    data = exif.tagged_bytes(p, "described")
    assert p.read_bytes() == blob
    assert scan_data(data) == scan_data(blob)
    tags = piexif.load(data)
    assert tags["0th"][piexif.ImageIFD.ImageDescription] == b"described"
    for tag, kind in ((piexif.ExifIFD.SceneType, 1), (piexif.ImageIFD.Artist, 3)):
        entry = tag.to_bytes(2, "big") + kind.to_bytes(2, "big")
        assert blob[blob.index(entry) :][:12] in data  # as the camera wrote it
    assert tags["0th"][piexif.ImageIFD.Copyright] == b"(c) Cam"
    assert tags["Exif"][piexif.ExifIFD.ISOSpeedRatings] == 400
    exif.write_gps(p, 3.5, 4.5)
    assert (read_exif(p).lat, read_exif(p).lon) == (pytest.approx(3.5), pytest.approx(4.5))


def test_xmp_before_exif_is_skipped_on_read_and_kept_on_write(tmp_path: Path) -> None:
    blob = jpeg_bytes(exif=exif_dict(capture_time=T0, lat=5.0, lon=6.0))
    xmp_payload = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>rating 5</x:xmpmeta>"
    xmp = b"\xff\xe1" + (len(xmp_payload) + 2).to_bytes(2, "big") + xmp_payload
    p = tmp_path / "xmp.jpg"
    p.write_bytes(blob[:2] + xmp + blob[2:])
    before = p.read_bytes()
    assert read_exif(p).lat == pytest.approx(5.0)
    exif.write_description(p, "with xmp")
    after = p.read_bytes()
    assert after[: 2 + len(xmp)] == before[: 2 + len(xmp)]
    assert without_exif(after) == without_exif(before)
    assert read_exif(p).description == "with xmp"


FUZZ_BASE = jpeg_bytes(
    exif=exif_dict(
        capture_time=T0,
        subsec="12",
        offset="+01:00",
        lat=45.0,
        lon=7.0,
        altitude=300.0,
        direction=10.0,
        gps_time=datetime(2024, 5, 17, 13, 3, 21, tzinfo=UTC),
        description="fuzz",
    ),
    thumbnail=True,
)


@settings(max_examples=300, deadline=None)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, exif_segment(FUZZ_BASE)[1] + 200), st.integers(0, 255)),
        min_size=1,
        max_size=8,
    )
)
def test_corrupted_headers_only_ever_give_media_errors(edits: list[tuple[int, int]]) -> None:
    """Random byte damage in the header: a result or a MediaError, never another exception."""
    blob = bytearray(FUZZ_BASE)
    for at, value in edits:
        blob[at] = value
    with tempfile.TemporaryDirectory() as folder:
        p = Path(folder) / "fuzz.jpg"
        p.write_bytes(bytes(blob))
        try:
            info = read_exif(p)
        except MediaError as exc:
            assert str(exc) and "\n" not in str(exc)
        else:
            assert isinstance(info.orientation, int)
        try:
            exif.tagged_bytes(p, "x")
        except MediaError as exc:
            assert str(exc)
        assert p.read_bytes() == bytes(blob)


def test_sound_exif_of_every_layout_passes_the_count_check() -> None:
    """No thumbnail IFD (next pointer 0) and descriptions of every length up to 600 bytes shift
    every offset: none of these sound files may be taken for corrupt."""
    base = jpeg_bytes(exif=None, size=(16, 16))
    for n in range(600):
        data = exif_dict(
            capture_time=T0,
            subsec="123",
            lat=47.1,
            lon=8.2,
            altitude=400.0,
            direction=12.5,
            make="Acme",
            model="DashCam 1",
            orientation=None,
        )
        data["0th"][piexif.ImageIFD.ImageDescription] = b"d" * n
        payload = piexif.dump(data)
        segment = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
        info = exif_info_of(base[:2] + segment + base[2:])  # MediaError if misread
        assert info.description == "d" * n or (n == 0 and info.description is None)
