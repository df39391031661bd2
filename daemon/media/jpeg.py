"""The JPEG container: marker segments up to the image data, where the Exif APP1 sits, and
whether the file is whole.

Reading walks the segments up to the start of the image data, so a 10 MB photo costs a few
kilobytes of I/O (plus one small read at the end to see the end-of-image marker). Writing
splices a new APP1 segment into the original byte stream, so every other segment and the
compressed image data stay byte-for-byte.

Data after the end-of-image marker (the video of an Android Motion Photo, a stray byte some
cameras leave) does not make a photo incomplete: the entropy-coded image data can never hold
the bytes FF D9, so an EOI anywhere after the start of the image data means the photo is whole.
"""

from __future__ import annotations

import enum
import io
import mmap
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO

from daemon.core.files import open_regular
from daemon.media.errors import MediaError

SOI = b"\xff\xd8"
EOI = b"\xff\xd9"
EXIF_HEADER = b"Exif\x00\x00"
XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_ICC_HEADER = b"ICC_PROFILE\x00"
_APP1 = b"\xff\xe1"
_MAX_SEGMENT = 0xFFFF  # a segment's length field (which counts itself) is two bytes
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_NO_LENGTH = {0x01, *range(0xD0, 0xD8)}  # TEM and RSTn stand alone
_TAIL = 4096  # bytes read at a time from the end, looking for EOI past zero padding
_MAX_PADDING = 1 << 20  # some cameras pad to a block size; more zeros than this is not padding
_FIRST_READ = 64 * 1024  # the header of a camera photo (EXIF, thumbnail, tables) fits in this
_SCAN = 256 * 1024  # bytes read at a time looking backwards for an EOI before trailing data
# ISO media files (HEIF and its kin) start with an "ftyp" box naming their brand.
_BRANDS = {
    **dict.fromkeys((b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"), "HEIC"),
    **dict.fromkeys((b"mif1", b"msf1"), "HEIF"),
    **dict.fromkeys((b"avif", b"avis"), "AVIF"),
}


class _Truncated(MediaError):
    """The file ends inside the header: cut off (or still being written), not corrupt."""


@dataclass(frozen=True)
class JpegHead:
    """Where things are in a JPEG's header: the Exif APP1 segment (if any) and the frame size."""

    exif_span: tuple[int, int] | None  # [start, end) of the whole APP1 segment, marker included
    exif: bytes | None  # the segment's payload, starting with EXIF_HEADER
    insert_at: int  # where a new APP1 goes when there is none (after SOI and a JFIF APP0)
    width: int | None
    height: int | None
    data_start: int = 0  # where the image data begins (just past the first SOS segment)
    xmp: bytes | None = None  # the first XMP packet (APP1 payload after XMP_HEADER)
    icc: bool = False  # an ICC colour profile is embedded (APP2)


def _read_exact(fh: BinaryIO, n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise _Truncated("truncated JPEG header")
    return data


def not_a_jpeg(start: bytes) -> MediaError:
    """The reason for a file that does not start with SOI, from its first 12 bytes."""
    if start[4:8] == b"ftyp":
        kind = _BRANDS.get(start[8:12])
        if kind is not None:
            return MediaError(
                f"{kind} photo, not a JPEG: convert it to JPEG first (on an iPhone, "
                "Settings > Camera > Formats > Most Compatible takes JPEGs)"
            )
        return MediaError(f"not a JPEG (an ISO media file of brand {start[8:12]!r}, a video?)")
    return MediaError(f"not a JPEG (starts with {start[:8]!r})")


def _walk_head(fh: BinaryIO) -> JpegHead:
    """Walk segments from SOI to SOS reading only what we need; ``fh`` is at offset 0."""
    start = fh.read(2)
    if not start:
        raise MediaError("empty file (0 bytes)")
    if start != SOI:
        raise not_a_jpeg(start + fh.read(10))
    pos = 2
    exif_span = exif = xmp = None
    insert_at = 2
    width = height = None
    icc = False
    while True:
        marker = _read_exact(fh, 2)
        if marker[0] != 0xFF:
            raise MediaError(f"corrupt JPEG header at byte {pos}")
        kind = marker[1]
        if kind == 0xFF:  # fill byte before a marker
            fh.seek(pos + 1)
            pos += 1
            continue
        if kind in _NO_LENGTH:
            pos += 2
            continue
        if kind in (0xD8, 0xD9):
            raise MediaError(f"corrupt JPEG header (marker FF{kind:02X} at byte {pos})")
        (length,) = struct.unpack(">H", _read_exact(fh, 2))
        if length < 2:
            raise MediaError(f"corrupt JPEG segment length at byte {pos}")
        end = pos + 2 + length
        if kind == 0xDA:  # start of scan: the header is over
            if width is None:
                raise MediaError("corrupt JPEG header (no frame header before the image data)")
            return JpegHead(exif_span, exif, insert_at, width, height, end, xmp, icc)
        if kind == 0xE1 and (exif is None or xmp is None):
            payload = _read_exact(fh, length - 2)
            if exif is None and payload.startswith(EXIF_HEADER):
                exif_span, exif = (pos, end), payload
            elif xmp is None and payload.startswith(XMP_HEADER):
                xmp = payload[len(XMP_HEADER) :]
        elif kind == 0xE2 and not icc:
            icc = _read_exact(fh, min(length - 2, len(_ICC_HEADER))) == _ICC_HEADER
        elif kind in _SOF:
            if length < 7:
                raise MediaError(f"corrupt JPEG frame header at byte {pos}")
            height, width = struct.unpack(">HH", _read_exact(fh, 5)[1:5])
        if kind == 0xE0 and insert_at == pos:
            insert_at = end  # keep JFIF's APP0 first, as the standard wants
        fh.seek(end)
        pos = end


def _ends_with_eoi(fh: BinaryIO, size: int, after: int) -> bool:
    """Whether the file ends with an EOI starting at or past ``after``, allowing trailing zero
    padding (read backwards in chunks)."""
    end = size
    while end > after and size - end <= _MAX_PADDING:
        start = max(0, end - _TAIL)
        fh.seek(start)
        chunk = fh.read(end - start).rstrip(b"\x00")
        if chunk:
            if len(chunk) == 1 and start > 0:  # the marker straddles two chunks
                fh.seek(start - 1)
                return fh.read(2) == EOI and start - 1 >= after
            return chunk.endswith(EOI) and start + len(chunk) - 2 >= after
        end = start
    return False


def _eoi_before_trailer(fh: BinaryIO, size: int, after: int) -> bool:
    """Whether an EOI lies anywhere at or past ``after``, looking backwards from the end: a
    Motion Photo's video or a stray byte after the photo. Only a file without an EOI at its
    end (or one cut off) costs more than one read here."""
    end = size
    while end > after:
        start = max(after, end - _SCAN)
        fh.seek(start)
        if fh.read(min(end + 1, size) - start).rfind(EOI) >= 0:  # +1: a marker on the seam
            return True
        end = start
    return False


def _has_eoi(fh: BinaryIO, size: int, after: int) -> bool:
    return _ends_with_eoi(fh, size, after) or _eoi_before_trailer(fh, size, after)


def photo_end(data: bytes, head: JpegHead) -> int:
    """Where the photo ends: ``len(data)`` when the file ends with its EOI (zero padding
    kept), else just past the EOI that ends the image data, so a Motion Photo's video or any
    other trailer is left out."""
    if _ends_with_eoi(io.BytesIO(data), len(data), head.data_start):
        return len(data)
    return _scan_to_eoi(data, head.data_start)


def photo_end_of_file(fh: BinaryIO, head: JpegHead) -> int:
    """:func:`photo_end` of an open file, without reading it into memory: the end is checked
    first (the usual case), the image data walked through a read-only mapping otherwise."""
    size = os.fstat(fh.fileno()).st_size
    if _ends_with_eoi(fh, size, head.data_start):
        return size
    with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        return _scan_to_eoi(mapped, head.data_start)


def _scan_to_eoi(data: bytes | mmap.mmap, pos: int) -> int:
    """Just past the EOI that ends the image data starting at ``pos`` (the whole size when
    there is none). Walks the markers: scans of a progressive JPEG, tables between them."""
    size = len(data)
    while True:
        at = data.find(b"\xff", pos)
        if at < 0 or at + 1 >= size:
            return size  # no EOI after all: keep the whole file
        kind = data[at + 1]
        if kind == 0xD9:
            return at + 2
        if kind == 0xFF:  # fill byte
            pos = at + 1
        elif kind == 0x00 or kind in _NO_LENGTH:  # stuffed FF, restart marker
            pos = at + 2
        elif at + 4 > size:
            return size
        else:  # a segment between scans: skip its length
            pos = at + 2 + int.from_bytes(data[at + 2 : at + 4], "big")


class JpegState(enum.Enum):
    """How finished a JPEG file is; the value is the one-line reason when it is not."""

    COMPLETE = "complete"
    EMPTY = "empty file"
    NOT_JPEG = "not a JPEG: no start-of-image marker"  # no writer can make it one
    CORRUPT = "corrupt JPEG header"  # or preallocated zeros not yet written over
    CUT_OFF = "cut off: no end-of-image marker"


def jpeg_state(path: str | os.PathLike[str]) -> JpegState:
    """SOI, header segments up to the start of scan, and an EOI after the image data at the
    end (zero padding allowed). OSError when the file cannot be read.

    Walking the segments matters: an EXIF thumbnail ends with its own EOI, so a file cut right
    after it would pass a plain "ends with FFD9" test.
    """
    with open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        start = fh.read(2)
        if not start:
            return JpegState.EMPTY
        if not SOI.startswith(start):
            return JpegState.NOT_JPEG  # HEIC too: read_exif names the format
        if len(start) < 2:
            return JpegState.CUT_OFF
        fh.seek(0)
        try:
            head = _walk_head(fh)
        except _Truncated:
            return JpegState.CUT_OFF
        except MediaError:
            return JpegState.CORRUPT
        if _has_eoi(fh, size, after=head.data_start):
            return JpegState.COMPLETE
        return JpegState.CUT_OFF


def is_complete_jpeg(path: str | os.PathLike[str]) -> bool:
    """Whether the file is a whole JPEG (see :func:`jpeg_state`); False when unreadable."""
    try:
        return jpeg_state(path) is JpegState.COMPLETE
    except OSError:
        return False


def _cannot_read(exc: OSError) -> MediaError:
    return MediaError(f"cannot read: {exc.strerror or exc}")


def _no_eoi() -> MediaError:
    return MediaError("truncated JPEG (no end-of-image marker)")


def read_head(path: str | os.PathLike[str]) -> JpegHead:
    """The header of a whole JPEG file, reading as little of it as we can; MediaError when
    the file is unreadable, not a JPEG, or cut off."""
    try:
        with open_regular(path, 0) as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                raise MediaError("empty file (0 bytes)")
            # One read holds the whole header of almost any photo (and all of a small one):
            # walking it in memory costs no system calls per segment.
            first = fh.read(_FIRST_READ)
            whole = len(first) >= size
            try:
                head = _walk_head(io.BytesIO(first))
            except _Truncated:
                if whole:
                    raise
                fh.seek(0)  # a header longer than the first read: walk the file itself
                head = _walk_head(fh)
            if not _has_eoi(io.BytesIO(first) if whole else fh, size, head.data_start):
                raise _no_eoi()
    except OSError as exc:
        raise _cannot_read(exc) from exc
    return head


def read_all(path: str | os.PathLike[str]) -> bytes:
    """The file's bytes; MediaError when it cannot be read."""
    try:
        with open_regular(path) as fh:
            return fh.read()
    except OSError as exc:
        raise _cannot_read(exc) from exc


def parse_head(data: bytes) -> JpegHead:
    """The header of a whole JPEG held in memory; MediaError as for :func:`read_head`."""
    if not data:
        raise MediaError("empty file (0 bytes)")
    head = _walk_head(io.BytesIO(data))
    if not _has_eoi(io.BytesIO(data), len(data), head.data_start):
        raise _no_eoi()
    return head


def app1_segment(payload: bytes) -> bytes:
    """``payload`` framed as an APP1 segment; MediaError when it is too big for one."""
    if len(payload) + 2 > _MAX_SEGMENT:
        raise MediaError("EXIF block would exceed the 64 KB a JPEG segment can hold")
    return _APP1 + struct.pack(">H", len(payload) + 2) + payload


def with_exif_segment(data: bytes, head: JpegHead, segment: bytes) -> bytes:
    """``data`` (whose header is ``head``) with its Exif APP1 replaced by ``segment``, or
    ``segment`` inserted where there is none; every other byte kept as it was."""
    start, end = head.exif_span or (head.insert_at, head.insert_at)
    view = memoryview(data)  # slices without copying; join copies once
    return b"".join((view[:start], segment, view[end:]))
