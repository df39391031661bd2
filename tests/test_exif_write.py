"""The lossless editor: a write changes only what it is asked to change.

Files are built byte by byte (tests/test_exif_read.py's tiff_block) so that every part a camera
writes is there to be kept: a maker note with offsets into the block, an unknown tag, an
Interop IFD, a thumbnail behind IFD0's link, either byte order.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from pathlib import Path

import piexif
import pytest

from daemon.media import exif, jpeg
from daemon.media.exif import MediaError, read_exif
from daemon.media.tiff import Tiff
from tests.test_exif_read import (
    ASCII,
    DTO,
    LONG,
    SHORT,
    UNDEFINED,
    jpeg_with,
    plain_jpeg,
    rationals,
    short,
    text,
    tiff_block,
    write,
)

STAMP = datetime(2024, 5, 17, 12, 3, 21, tzinfo=UTC)
MAKER_AT = 400  # where the maker note's body sits in the block (see camera_block)


def block_of(blob: bytes) -> Tiff:
    head = jpeg.parse_head(blob)
    assert head.exif is not None
    return Tiff(head.exif[6:])


def camera_block(order: str = "<") -> bytes:
    """A camera's block: IFD0 (make, an unknown tag 0xC4A5), Exif IFD (time, a maker note whose
    body holds an absolute offset to its own second half), IFD1 with a thumbnail."""
    thumb = plain_jpeg((8, 8))
    maker = (
        b"ACME\x00\x00" + struct.pack(order + "I", MAKER_AT + 16) + b"\x00" * 6 + b"LENS-XYZ" * 4
    )
    ifd1 = [
        short(0x0103, 6, order=order),
        (0x0201, LONG, 1, b"\0" * 4),
        (0x0202, LONG, 1, b"\0" * 4),
    ]
    tiff = tiff_block(
        [text(0x010F, b"Acme"), text(0x0110, b"Cam 1"), (0xC4A5, UNDEFINED, 6, b"PIM\x00\x01\x02")],
        [text(DTO, b"2024:05:17 14:03:21"), (0x927C, UNDEFINED, len(maker), b"\0" * len(maker))],
        order=order,
        ifd1=ifd1,
    )
    # Place the maker note body at MAKER_AT and the thumbnail after it, then point at them.
    data = bytearray(tiff.ljust(MAKER_AT, b"\x00"))
    data += maker
    thumb_at = len(data)
    data += thumb
    t = Tiff(bytes(data))
    found = t.structure()
    note = found["Exif"].get(0x927C)
    assert note is not None
    data[note.at + 8 : note.at + 12] = struct.pack(order + "I", MAKER_AT)
    for tag, value in ((0x0201, thumb_at), (0x0202, len(thumb))):
        entry = found["1st"].get(tag)
        assert entry is not None
        data[entry.at + 8 : entry.at + 12] = struct.pack(order + "I", value)
    return bytes(data)


@pytest.mark.parametrize("order", ["<", ">"])
def test_geotag_and_describe_keep_every_byte_the_camera_wrote(tmp_path: Path, order: str) -> None:
    original = camera_block(order)
    p = write(tmp_path, jpeg_with(original, size=(64, 48)))
    before = p.read_bytes()
    exif.write_gps(p, -33.5, 151.25, 12.5, 90.0, STAMP)
    exif.write_description(p, '{"MAPLatitude": -33.5}')
    after = p.read_bytes()
    block = block_of(after)
    # The camera's bytes are all still where they were; only the IFD0 offset in the header changed.
    assert block.data[:4] == original[:4] and block.data[8 : len(original)] == original[8:]
    assert block.order == order
    found = block.structure()
    assert set(found) == {"0th", "Exif", "GPS", "1st"}
    assert found["Exif"].offset == Tiff(original).structure()["Exif"].offset  # not rewritten
    assert found["1st"].offset == Tiff(original).structure()["1st"].offset  # IFD0's link kept
    note = found["Exif"].get(0x927C)
    assert note is not None and note.value_at(order) == MAKER_AT  # the maker note did not move
    assert block.raw(found["0th"].get(0xC4A5)) == b"PIM\x00\x01\x02"  # the unknown tag is kept
    tags = [e.tag for e in found["0th"].entries]
    assert tags == sorted(tags)
    info = read_exif(p)
    assert (info.lat, info.lon, info.altitude, info.direction) == (-33.5, 151.25, 12.5, 90.0)
    assert info.make == "Acme" and info.description == '{"MAPLatitude": -33.5}'
    assert jpeg_without_exif(after) == jpeg_without_exif(before)
    thumb = piexif.load(after)["thumbnail"]
    assert thumb == plain_jpeg((8, 8))


def jpeg_without_exif(blob: bytes) -> bytes:
    head = jpeg.parse_head(blob)
    assert head.exif_span is not None
    return blob[: head.exif_span[0]] + blob[head.exif_span[1] :]


def test_repeated_edits_do_not_grow_the_block(tmp_path: Path) -> None:
    p = write(tmp_path, jpeg_with(camera_block(), size=(64, 48)))
    sizes = []
    for i in range(8):
        exif.write_gps(p, 10.0 + i, 20.0, 100.0, float(i), None if i % 2 else STAMP)
        exif.write_description(p, f"description {i:03d}")
        exif.write_capture_time(p, datetime(2024, 5, 17, 14, 3, i), subsec="5")
        sizes.append(p.stat().st_size)
    assert len(set(sizes[1::2])) == 1, sizes  # the first edit appends; later ones reuse it
    assert len(set(sizes[2::2])) == 1, sizes
    info = read_exif(p)
    assert info.lat == 17.0 and info.description == "description 007"
    assert info.capture_time == datetime(2024, 5, 17, 14, 3, 7, 500_000)
    assert block_of(p.read_bytes()).structure()["Exif"].get(0x927C).value_at("<") == MAKER_AT


def test_a_change_to_nothing_leaves_the_file_byte_identical(tmp_path: Path) -> None:
    p = write(tmp_path, jpeg_with(camera_block(), size=(64, 48)))
    exif.write_description(p, "same")
    before = p.read_bytes()
    exif.write_description(p, "same")
    assert p.read_bytes() == before


def test_exif_made_from_nothing_has_the_required_tags(tmp_path: Path) -> None:
    p = write(tmp_path, plain_jpeg((40, 30)))
    exif.write_capture_time(p, datetime(2024, 1, 2, 3, 4, 5), offset="+01:00")
    exif.write_gps(p, 1.0, 2.0)
    found = block_of(p.read_bytes()).structure()
    assert {0x011A, 0x011B, 0x0128, 0x0213} <= {e.tag for e in found["0th"].entries}
    exif_tags = {e.tag for e in found["Exif"].entries}
    assert {0x9000, 0x9101, 0xA000, 0xA001, 0xA002, 0xA003, DTO} <= exif_tags
    block = block_of(p.read_bytes())
    assert block.raw(found["Exif"].get(0x9000)) == b"0232"
    assert block.ints(found["Exif"].get(0xA002)) == (40,)
    assert read_exif(p).capture_time is not None


def test_a_thumbnail_of_zero_bytes_is_no_obstacle(tmp_path: Path) -> None:
    """A Nikon writes JPEGInterchangeFormatLength 0 (piexif refused: 'Given data isn't JPEG')."""
    ifd1 = [short(0x0103, 6), (0x0201, LONG, 1, struct.pack("<I", 0)), (0x0202, LONG, 1, b"\0" * 4)]
    tiff = tiff_block([text(0x010F, b"NIKON")], [text(DTO, b"2024:05:17 14:03:21")], ifd1=ifd1)
    p = write(tmp_path, jpeg_with(tiff))
    exif.write_gps(p, 5.0, 6.0)
    assert read_exif(p).lat == 5.0 and read_exif(p).make == "NIKON"


def test_a_number_the_camera_stored_as_text_stays_as_it_was(tmp_path: Path) -> None:
    """ExifImageWidth written as ASCII: our old writer turned it into a zero-count number."""
    tiff = tiff_block(
        [text(0x010F, b"Cam")], [text(DTO, b"2024:05:17 14:03:21"), text(0xA002, b"640")]
    )
    p = write(tmp_path, jpeg_with(tiff))
    exif.write_description(p, "x")
    block = block_of(p.read_bytes())
    entry = block.structure()["Exif"].get(0xA002)
    assert (entry.kind, block.raw(entry)) == (ASCII, b"640\x00")
    read_exif(p)


def test_a_new_value_keeps_the_type_the_camera_used(tmp_path: Path) -> None:
    tiff = tiff_block([text(0x010F, b"Cam")], [short(0xA002, 640)])  # SHORT, the table says LONG
    p = write(tmp_path, jpeg_with(tiff))
    exif.write_exif(p, {"Exif": {piexif.ExifIFD.PixelXDimension: 1280}})
    entry = block_of(p.read_bytes()).structure()["Exif"].get(0xA002)
    assert (entry.kind, entry.count) == (SHORT, 1)
    exif.write_exif(p, {"Exif": {piexif.ExifIFD.PixelXDimension: 70_000}})  # too big for SHORT
    entry = block_of(p.read_bytes()).structure()["Exif"].get(0xA002)
    assert entry.kind == LONG


def test_emptying_the_gps_ifd_removes_its_pointer(tmp_path: Path) -> None:
    gps = [(1, ASCII, 2, b"N\x00"), rationals(2, (10, 1), (0, 1), (0, 1))]
    tiff = tiff_block([text(0x010F, b"Cam")], [text(DTO, b"2024:05:17 14:03:21")], gps)
    p = write(tmp_path, jpeg_with(tiff))

    def drop_gps(data: dict) -> None:
        data["GPS"] = {}

    exif.write_exif(p, drop_gps)
    found = block_of(p.read_bytes()).structure()
    assert "GPS" not in found and found["0th"].get(0x8825) is None
    assert read_exif(p).lat is None and read_exif(p).make == "Cam"


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("ifd0 count", "corrupt EXIF (0th runs past the end of the block)"),
        ("segment full", "EXIF block would exceed the 64 KB"),
    ],
)
def test_a_change_that_cannot_be_made_safely_is_refused_and_the_file_kept(
    tmp_path: Path, damage: str, reason: str
) -> None:
    tiff = tiff_block([text(0x010F, b"Cam")], [text(DTO, b"2024:05:17 14:03:21")])
    if damage == "ifd0 count":
        tiff = tiff[:8] + struct.pack("<H", 900) + tiff[10:]  # 900 entries claimed
    else:
        tiff = tiff + b"\x00" * (65_500 - len(tiff))
    p = write(tmp_path, jpeg_with(tiff))
    before = p.read_bytes()
    for attempt in (lambda: exif.write_gps(p, 1.0, 2.0), lambda: exif.tagged_bytes(p, "d" * 40)):
        with pytest.raises(MediaError) as err:
            attempt()
        assert str(err.value).startswith(reason), str(err.value)
    assert p.read_bytes() == before
    assert [x.name for x in tmp_path.iterdir()] == ["a.jpg"]


def test_pointers_are_not_ours_to_set(tmp_path: Path) -> None:
    p = write(tmp_path, jpeg_with(camera_block()))
    with pytest.raises(MediaError, match="is a pointer"):
        exif.write_exif(p, {"0th": {piexif.ImageIFD.ExifTag: 8}})
