"""The reader on files as cameras really write them: every odd layout the issue met in the wild
(a header over 64 KiB, text without its NUL, a one-byte "W", pointers of the wrong type, an
empty GPS IFD, data after the end-of-image marker, HEIC) and what it must say or read.

Odd files are built byte by byte with :func:`tiff_block` (piexif cannot write most of them);
the real camera files in ../shared/corpus/exif are used where they show the same thing.
"""

from __future__ import annotations

import io
import random
import struct
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import piexif
import pytest
from PIL import Image

from daemon.media import exif
from daemon.media.exif import MediaError, read_exif
from daemon.media.load import load_records
from daemon.pipeline.provenance import Provenance, time_source
from tests import jpegs
from tests.corpus import CORPUS as SHARED_CORPUS

CORPUS = SHARED_CORPUS / "exif"
needs_corpus = pytest.mark.skipif(
    not CORPUS.is_dir(), reason=f"the camera corpus is not here ({CORPUS})"
)

ASCII, SHORT, LONG, RATIONAL, UNDEFINED, IFD_TYPE = 2, 3, 4, 5, 7, 13
# An entry as tests write it: (tag, type, count, value bytes); the value is placed for you.
Raw = tuple[int, int, int, bytes]


def text(tag: int, value: bytes, nul: bool = True) -> Raw:
    data = value + b"\x00" if nul else value
    return (tag, ASCII, len(data), data)


def short(tag: int, *values: int, order: str = "<") -> Raw:
    return (tag, SHORT, len(values), struct.pack(f"{order}{len(values)}H", *values))


def rationals(tag: int, *pairs: tuple[int, int], order: str = "<") -> Raw:
    flat = [v for pair in pairs for v in pair]
    return (tag, RATIONAL, len(pairs), struct.pack(f"{order}{len(flat)}I", *flat))


def tiff_block(
    ifd0: list[Raw],
    exif_ifd: list[Raw] | None = None,
    gps: list[Raw] | None = None,
    *,
    order: str = "<",
    pointer_type: tuple[int, int] = (LONG, 1),
    ifd1: list[Raw] | None = None,
    tail: bytes = b"",
) -> bytes:
    """A TIFF block laid out as cameras do: header, IFD0, its sub-IFDs, then every value that
    does not fit in its entry. ``pointer_type`` is the (type, count) the Exif and GPS pointers
    are stored with; ``tail`` is appended to the block (a thumbnail's bytes, say)."""
    mark = b"II" if order == "<" else b"MM"
    tables: list[tuple[str, list[Raw]]] = [("0th", list(ifd0))]
    if exif_ifd is not None:
        tables.append(("Exif", list(exif_ifd)))
    if gps is not None:
        tables.append(("GPS", list(gps)))
    if ifd1 is not None:
        tables.append(("1st", list(ifd1)))
    pointers = {"Exif": 0x8769, "GPS": 0x8825}
    for name, _ in tables[1:]:
        if name in pointers:  # placeholder, fixed once the layout is known
            tables[0][1].append((pointers[name], pointer_type[0], pointer_type[1], b"\0" * 4))
    offsets, at = {}, 8
    for name, entries in tables:
        offsets[name] = at
        at += 2 + 12 * len(entries) + 4
    values_at = at
    out_values = b""
    blobs: dict[str, bytes] = {}
    for name, entries in tables:
        table = struct.pack(order + "H", len(entries))
        for tag, kind, count, value in sorted(entries, key=lambda e: e[0]):
            if tag in pointers.values() and name == "0th":
                target = "Exif" if tag == 0x8769 else "GPS"
                fmt = "H" if kind == SHORT else "I"
                field = struct.pack(order + fmt, offsets[target]).ljust(4, b"\0")
            elif len(value) <= 4:
                field = value.ljust(4, b"\0")
            else:
                if (values_at + len(out_values)) % 2:
                    out_values += b"\0"
                field = struct.pack(order + "I", values_at + len(out_values))
                out_values += value
            table += struct.pack(order + "HHI", tag, kind, count) + field
        link = offsets["1st"] if name == "0th" and "1st" in offsets else 0
        blobs[name] = table + struct.pack(order + "I", link)
    header = mark + struct.pack(order + "HI", 42, 8)
    return header + b"".join(blobs[name] for name, _ in tables) + out_values + tail


def app1(tiff: bytes) -> bytes:
    payload = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def plain_jpeg(size: tuple[int, int] = (32, 24)) -> bytes:
    """A JPEG of noise (so its image data is most of the file), no EXIF."""
    buf = io.BytesIO()
    noise = random.Random(size[0] * 7919 + size[1]).randbytes(size[0] * size[1] * 3)
    Image.frombytes("RGB", size, noise).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def jpeg_with(tiff: bytes | None, *segments: bytes, size: tuple[int, int] = (32, 24)) -> bytes:
    """A JPEG whose header holds this TIFF block (as an Exif APP1) and then ``segments``."""
    base = plain_jpeg(size)
    exif_segment = app1(tiff) if tiff is not None else b""
    return base[:2] + exif_segment + b"".join(segments) + base[2:]


def write(tmp_path: Path, blob: bytes, name: str = "a.jpg") -> Path:
    p = tmp_path / name
    p.write_bytes(blob)
    return p


T_TEXT = b"2024:05:17 14:03:21"
DTO, SUBSEC_ORIGINAL, OFFSET_ORIGINAL = 0x9003, 0x9291, 0x9011


# -- the container ---------------------------------------------------------------------------------


def test_a_header_longer_than_64_kib_is_read(tmp_path: Path) -> None:
    """A long comment, a big maker note and a thumbnail: the header no longer fits the first
    read (it used to crash: "I/O operation on closed file")."""
    comment = b"\xff\xfe" + struct.pack(">H", 60_002) + b"c" * 60_000
    xmp = b"\xff\xe1" + struct.pack(">H", 30_002) + b"x" * 30_000
    tiff = tiff_block([text(0x010F, b"BigHead")], [text(DTO, T_TEXT)])
    p = write(tmp_path, jpeg_with(tiff, comment, xmp))
    info = read_exif(p)
    assert info.make == "BigHead" and info.capture_time == datetime(2024, 5, 17, 14, 3, 21)
    assert (info.width, info.height) == (32, 24)
    assert exif.is_complete_jpeg(p)


@pytest.mark.parametrize(
    "trailer",
    [b"\x00", b"\x5a", b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4000],
    ids=["stray zero", "stray byte", "motion photo video"],
)
def test_data_after_the_end_of_image_is_accepted_and_left_out_of_uploads(
    tmp_path: Path, trailer: bytes
) -> None:
    tiff = tiff_block([text(0x010F, b"Pixel")], [text(DTO, T_TEXT)])
    photo = jpeg_with(tiff)
    p = write(tmp_path, photo + trailer)
    assert read_exif(p).make == "Pixel"
    assert exif.is_complete_jpeg(p)
    sent = exif.tagged_bytes(p, "up")
    padding = trailer if trailer == b"\x00" else b""  # zero padding is part of the file
    assert sent.endswith(b"\xff\xd9" + padding)
    assert exif.read_exif(write(tmp_path, sent, "sent.jpg")).description == "up"
    exif.write_description(p, "kept")
    assert p.read_bytes().endswith(trailer)  # the user's file keeps its video
    assert read_exif(p).description == "kept"


def test_a_file_cut_after_its_thumbnail_is_still_cut_off(tmp_path: Path) -> None:
    """The thumbnail's own EOI lies in the header: it does not make a cut file whole."""
    thumb = plain_jpeg((8, 8))
    tiff = tiff_block([text(0x010F, b"Cam")], [text(DTO, T_TEXT)], tail=thumb)
    blob = jpeg_with(tiff)
    p = write(tmp_path, blob[: len(blob) - 300])
    with pytest.raises(MediaError, match="no end-of-image marker"):
        read_exif(p)
    assert not exif.is_complete_jpeg(p)


def test_heic_gets_a_reason_naming_the_format_and_what_to_do(tmp_path: Path) -> None:
    box = struct.pack(">I", 24) + b"ftypheic" + b"\x00\x00\x00\x00mif1heic"
    for name in ("IMG_0001.HEIC", "renamed.jpg"):
        p = write(tmp_path, box + b"\x00" * 500, name)
        with pytest.raises(MediaError) as err:
            read_exif(p)
        reason = str(err.value)
        assert reason.startswith("HEIC photo, not a JPEG: convert it to JPEG first"), reason
        assert "Most Compatible" in reason and "\n" not in reason


@needs_corpus
def test_the_corpus_heic_is_named() -> None:
    with pytest.raises(MediaError, match="^HEIC photo"):
        read_exif(CORPUS / "heic_IMG_5195.HEIC")


# -- values ----------------------------------------------------------------------------------------


def test_text_without_its_nul_keeps_its_last_character(tmp_path: Path) -> None:
    """Kodak CX7530 writes DateTimeOriginal with no NUL: "...09:47:23" was read "09:47:2"."""
    tiff = tiff_block(
        [text(0x010F, b"EASTMAN KODAK COMPANY", nul=False)],
        [text(DTO, b"2005:08:13 09:47:23", nul=False)],
    )
    info = read_exif(write(tmp_path, jpeg_with(tiff)))
    assert info.capture_time == datetime(2005, 8, 13, 9, 47, 23)
    assert info.make == "EASTMAN KODAK COMPANY"


@needs_corpus
def test_kodak_time_and_make_read_whole() -> None:
    info = read_exif(CORPUS / "Kodak_CX7530.jpg")
    assert info.capture_time == datetime(2005, 8, 13, 9, 47, 23)
    assert info.make == "EASTMAN KODAK COMPANY"


@pytest.mark.parametrize("order", ["<", ">"])
def test_a_one_byte_west_ref_is_west(tmp_path: Path, order: str) -> None:
    gps = [
        (1, ASCII, 1, b"S"),
        rationals(2, (33, 1), (52, 1), (0, 1), order=order),
        (3, ASCII, 1, b"W"),
        rationals(4, (70, 1), (30, 1), (0, 1), order=order),
    ]
    tiff = tiff_block([text(0x010F, b"Cam")], [text(DTO, T_TEXT)], gps, order=order)
    info = read_exif(write(tmp_path, jpeg_with(tiff)))
    assert info.lat == pytest.approx(-(33 + 52 / 60))
    assert info.lon == pytest.approx(-70.5)


@pytest.mark.parametrize("subsec", ["１2", "²", "5\u0663", "  5", "12x"])
def test_odd_sub_seconds_never_crash(tmp_path: Path, subsec: str) -> None:
    tiff = tiff_block([], [text(DTO, T_TEXT), text(SUBSEC_ORIGINAL, subsec.encode())])
    info = read_exif(write(tmp_path, jpeg_with(tiff)))
    assert info.capture_time is not None
    assert info.capture_time.replace(microsecond=0) == datetime(2024, 5, 17, 14, 3, 21)
    expected = {"  5": 5_000, "12x": 120_000, "5\u0663": 500_000}.get(subsec, 0)
    assert info.capture_time.microsecond == expected


def test_a_fraction_inside_date_time_original_is_kept(tmp_path: Path) -> None:
    tiff = tiff_block([], [text(DTO, b"2024:05:17 14:03:21.375")])
    info = read_exif(write(tmp_path, jpeg_with(tiff)))
    assert info.capture_time == datetime(2024, 5, 17, 14, 3, 21, 375_000)


@pytest.mark.parametrize("offset", ["+05:45", "-03:00", "+14:00"])
def test_year_one_is_refused_not_a_crash(tmp_path: Path, offset: str) -> None:
    tiff = tiff_block(
        [], [text(DTO, b"0001:01:01 00:00:00"), text(OFFSET_ORIGINAL, offset.encode())]
    )
    with pytest.raises(
        MediaError, match=r"^bad DateTimeOriginal date '0001:01:01 00:00:00' \(year 1\)"
    ):
        read_exif(write(tmp_path, jpeg_with(tiff)))


@pytest.mark.parametrize(
    ("written", "hours"), [("+0200", 2), ("+02", 2), ("Z", 0), ("-09:30", -9.5)]
)
def test_offset_spellings(tmp_path: Path, written: str, hours: float) -> None:
    tiff = tiff_block([], [text(DTO, T_TEXT), text(OFFSET_ORIGINAL, written.encode())])
    info = read_exif(write(tmp_path, jpeg_with(tiff)))
    assert info.capture_time is not None
    assert info.capture_time.utcoffset() == timedelta(hours=hours)


def test_an_empty_gps_ifd_is_no_position(tmp_path: Path) -> None:
    tiff = tiff_block([text(0x010F, b"Cam")], [text(DTO, T_TEXT)], [])
    info = read_exif(write(tmp_path, jpeg_with(tiff)))
    assert (info.lat, info.lon, info.capture_time) == (None, None, datetime(2024, 5, 17, 14, 3, 21))


@needs_corpus
def test_the_corpus_file_with_an_empty_gps_pointer_is_read() -> None:
    info = read_exif(CORPUS / "tests_45-gps_ifd.jpg")
    assert info.make == "Polyphony Digital Inc." and info.lat is None
    assert info.capture_time == datetime(2012, 6, 23, 6, 55, 49)


@pytest.mark.parametrize("pointer", [(SHORT, 1), (IFD_TYPE, 1), (UNDEFINED, 4)])
def test_exif_and_gps_pointers_of_the_wrong_type_are_followed(
    tmp_path: Path, pointer: tuple[int, int]
) -> None:
    gps = [(1, ASCII, 2, b"N\x00"), rationals(2, (10, 1), (0, 1), (0, 1))]
    gps += [(3, ASCII, 2, b"E\x00"), rationals(4, (20, 1), (0, 1), (0, 1))]
    tiff = tiff_block([text(0x010F, b"Cam")], [text(DTO, T_TEXT)], gps, pointer_type=pointer)
    info = read_exif(write(tmp_path, jpeg_with(tiff)))
    assert info.capture_time == datetime(2024, 5, 17, 14, 3, 21)
    assert (info.lat, info.lon) == (pytest.approx(10.0), pytest.approx(20.0))


def test_a_damaged_entry_we_do_not_use_does_not_stop_the_photo(tmp_path: Path) -> None:
    huge = (0x927C, UNDEFINED, 0xFFFF_FFF0, b"\xff\xff\xff\x00")  # a maker note past the end
    tiff = tiff_block([text(0x010F, b"Cam")], [text(DTO, T_TEXT), huge])
    info = read_exif(write(tmp_path, jpeg_with(tiff)))
    assert info.capture_time == datetime(2024, 5, 17, 14, 3, 21)


def test_a_bad_gps_stamp_falls_back_to_the_camera_time(tmp_path: Path) -> None:
    gps = [text(29, b"2024:13:01"), rationals(7, (12, 1), (0, 1), (0, 1))]
    tiff = tiff_block([], [text(DTO, T_TEXT)], gps)
    info = read_exif(write(tmp_path, jpeg_with(tiff)))
    assert info.gps_time is None and info.time_source == "exif"


def test_an_unreadable_altitude_is_left_out(tmp_path: Path) -> None:
    gps = [(1, ASCII, 2, b"N\x00"), rationals(2, (10, 1), (0, 1), (0, 1))]
    gps += [(3, ASCII, 2, b"E\x00"), rationals(4, (20, 1), (0, 1), (0, 1))]
    gps += [rationals(6, (5, 0))]
    tiff = tiff_block([], [text(DTO, T_TEXT)], gps)
    info = read_exif(write(tmp_path, jpeg_with(tiff)))
    assert info.lat == pytest.approx(10.0) and info.altitude is None


def test_big_endian_blocks_read_the_same(tmp_path: Path) -> None:
    for order in "<>":
        tiff = tiff_block(
            [text(0x010F, b"Cam"), short(0x0112, 6, order=order)],
            [text(DTO, T_TEXT), text(OFFSET_ORIGINAL, b"+01:00")],
            order=order,
        )
        info = read_exif(write(tmp_path, jpeg_with(tiff)))
        assert info.orientation == 6
        assert info.capture_time == datetime(
            2024, 5, 17, 14, 3, 21, tzinfo=timezone(timedelta(hours=1))
        )
        assert info.capture_time.astimezone(UTC).hour == 13


# -- precedence, as the official uploader reads -----------------------------------------------------

TRACK_GPS = [(1, ASCII, 2, b"N\x00"), rationals(2, (10, 1), (0, 1), (0, 1))]
TRACK_GPS += [(3, ASCII, 2, b"E\x00"), rationals(4, (20, 1), (0, 1), (0, 1))]


def test_gps_track_is_the_heading_when_there_is_no_image_direction(tmp_path: Path) -> None:
    gps = [*TRACK_GPS, (14, ASCII, 2, b"T\x00"), rationals(15, (27089, 100))]
    info = read_exif(write(tmp_path, jpeg_with(tiff_block([], [text(DTO, T_TEXT)], gps))))
    assert info.direction == pytest.approx(270.89) and info.direction_source == "GPSTrack"
    gps.append(rationals(17, (90, 1)))
    info = read_exif(write(tmp_path, jpeg_with(tiff_block([], [text(DTO, T_TEXT)], gps))))
    assert info.direction == 90.0 and info.direction_source == "GPSImgDirection"


def test_digitized_time_takes_its_own_offset(tmp_path: Path) -> None:
    digitized = [text(0x9004, T_TEXT), text(0x9292, b"5"), text(0x9012, b"-04:00")]
    info = read_exif(write(tmp_path, jpeg_with(tiff_block([], digitized))))
    assert info.capture_time == datetime(
        2024, 5, 17, 14, 3, 21, 500_000, tzinfo=timezone(timedelta(hours=-4))
    )
    assert info.time_source == "digitized"


def xmp_segment(body: str) -> bytes:
    packet = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:exif="http://ns.adobe.com/exif/1.0/" {body}/>'
        "</rdf:RDF></x:xmpmeta>"
    ).encode()
    payload = b"http://ns.adobe.com/xap/1.0/\x00" + packet
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def test_a_position_kept_only_in_xmp_is_read(tmp_path: Path) -> None:
    body = 'exif:GPSLatitude="0,4.21601S" exif:GPSLongitude="34,22.91611E" exif:GPSAltitude="136169/100"'
    body += ' exif:GPSImgDirection="1763/10" exif:DateTimeOriginal="2019-07-16T10:26:11.5+03:00"'
    p = write(tmp_path, jpeg_with(tiff_block([text(0x010F, b"SAMSUNG")], []), xmp_segment(body)))
    info = read_exif(p)
    assert info.position_source == "xmp"
    assert info.lat == pytest.approx(-(4.21601 / 60)) and info.lon == pytest.approx(
        34 + 22.91611 / 60
    )
    assert info.altitude == pytest.approx(1361.69) and info.direction == pytest.approx(176.3)
    assert info.capture_time == datetime(
        2019, 7, 16, 10, 26, 11, 500_000, tzinfo=timezone(timedelta(hours=3))
    )
    assert info.time_source == "xmp"


def test_exif_wins_over_xmp_and_bad_xmp_is_ignored(tmp_path: Path) -> None:
    body = 'exif:GPSLatitude="95,0N" exif:GPSLongitude="nonsense" exif:DateTimeOriginal="yesterday"'
    p = write(
        tmp_path, jpeg_with(tiff_block([], [text(DTO, T_TEXT)], TRACK_GPS), xmp_segment(body))
    )
    info = read_exif(p)
    assert (info.lat, info.lon, info.position_source) == (10.0, 20.0, "exif")
    p = write(tmp_path, jpeg_with(tiff_block([], [text(DTO, T_TEXT)]), xmp_segment(body)))
    assert read_exif(p).lat is None and read_exif(p).time_source == "exif"


@needs_corpus
def test_the_official_uploaders_own_files_read_as_it_reads_them() -> None:
    adobe = read_exif(CORPUS / "mapillary_tools_adobe_coords.jpg")
    assert adobe.lat == pytest.approx(-0.0702668, abs=1e-7)
    assert adobe.lon == pytest.approx(34.3819352, abs=1e-7)
    assert adobe.altitude == pytest.approx(1361.69) and adobe.direction == pytest.approx(176.3)
    sony = read_exif(CORPUS / "mapillary_tools_DSC00001.JPG")
    assert sony.capture_time == datetime(2018, 6, 8, 20, 24, 11, tzinfo=UTC)
    assert sony.time_source == "gps"
    assert sony.direction == pytest.approx(270.89) and sony.direction_source == "GPSTrack"


def test_a_photo_dated_only_by_ifd0_datetime_says_so_in_the_sources(tmp_path: Path) -> None:
    """IFD0's DateTime (which editors rewrite) is named as such in the summaries' sources line,
    not as DateTimeDigitized; DateTimeDigitized beside it still wins and keeps its name."""
    plain = tmp_path / "plain.jpg"
    jpegs.make_jpeg(
        plain,
        capture_time=None,
        extra_exif={"0th": {piexif.ImageIFD.DateTime: b"2021:06:07 08:09:10"}},
    )
    zoned = tmp_path / "zoned.jpg"
    jpegs.make_jpeg(
        zoned,
        capture_time=None,
        extra_exif={
            "0th": {piexif.ImageIFD.DateTime: b"2021:06:07 09:09:10"},
            "Exif": {piexif.ExifIFD.OffsetTime: b"-04:00"},
        },
    )
    both = tmp_path / "both.jpg"
    jpegs.make_jpeg(
        both,
        capture_time=None,
        extra_exif={
            "0th": {piexif.ImageIFD.DateTime: b"2023:01:01 00:00:00"},  # a later edit
            "Exif": {piexif.ExifIFD.DateTimeDigitized: b"2021:06:07 10:09:10"},
        },
    )
    info = read_exif(plain)
    assert (info.capture_time, info.time_source) == (datetime(2021, 6, 7, 8, 9, 10), "datetime")
    assert read_exif(zoned).capture_time == datetime(
        2021, 6, 7, 9, 9, 10, tzinfo=timezone(timedelta(hours=-4))
    )
    records = {r.path.name: r for r in load_records([plain, zoned, both], "+02:00")}
    assert {name: time_source(r) for name, r in records.items()} == {
        "plain.jpg": "DateTime (IFD0) in the camera zone",
        "zoned.jpg": "DateTime (IFD0)+OffsetTime",
        "both.jpg": "DateTimeDigitized in the camera zone",
    }
    assert Provenance.of(records.values()).time == {
        "DateTime (IFD0) in the camera zone": 1,
        "DateTime (IFD0)+OffsetTime": 1,
        "DateTimeDigitized in the camera zone": 1,
    }
