"""The TIFF structure inside an Exif APP1 segment: its IFDs, their entries, and where each value
lies, read without trusting a single count or offset.

Every offset is checked against the block before it is followed, tables are read only as far as
they fit, a loop of IFDs is followed once, and values are sliced (never sized by a count the file
claims), so any input costs at most a pass over its own bytes. The only exception raised is
:class:`MediaError`, and only by the calls whose docstring says so; a damaged entry is otherwise
just an entry whose value is None.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field as dataclass_field

from daemon.media.errors import MediaError

# TIFF field types and the size of one value of each (13 is IFD, a LONG that points to an IFD).
BYTE, ASCII, SHORT, LONG, RATIONAL, SBYTE, UNDEFINED = 1, 2, 3, 4, 5, 6, 7
SSHORT, SLONG, SRATIONAL, FLOAT, DOUBLE, IFD = 8, 9, 10, 11, 12, 13
TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_INT_FORMATS = {BYTE: "B", SHORT: "H", LONG: "I", SBYTE: "b", SSHORT: "h", SLONG: "i", IFD: "I"}
_UNDEFINED_INTS = UNDEFINED  # cameras write one-byte numbers (GPSAltitudeRef) as UNDEFINED too

EXIF_POINTER, GPS_POINTER, INTEROP_POINTER = 0x8769, 0x8825, 0xA005
THUMB_OFFSET, THUMB_LENGTH = 0x0201, 0x0202
STRIP_OFFSETS, STRIP_COUNTS = 0x0111, 0x0117
# The sub-IFDs we know: name -> (parent IFD, pointer tag in the parent).
SUB_IFDS = {
    "Exif": ("0th", EXIF_POINTER),
    "GPS": ("0th", GPS_POINTER),
    "Interop": ("Exif", INTEROP_POINTER),
}
POINTER_TAGS = {"0th": {EXIF_POINTER, GPS_POINTER}, "Exif": {INTEROP_POINTER}}
HEADER_SIZE = 8


@dataclass(slots=True)
class Entry:
    """One 12-byte IFD entry as stored: ``field`` is its 4-byte value-or-offset field."""

    tag: int
    kind: int
    count: int
    field: bytes
    at: int  # where the 12 bytes lie in the block
    size: int | None  # bytes its value takes; None for a type TIFF does not define

    def value_at(self, order: str) -> int | None:
        """Where the value lies when it does not fit in the entry (None when inline)."""
        size = self.size
        if size is None or size <= 4:
            return None
        return int(struct.unpack(order + "I", self.field)[0])


@dataclass(frozen=True)
class Ifd:
    """One IFD: its entries in file order and the raw next-IFD link."""

    offset: int
    entries: tuple[Entry, ...]
    next_field: bytes  # the 4 bytes after the table, as stored (b"" when past the end)
    whole: bool  # every entry the count claims fits in the block
    by_tag: dict[int, Entry] = dataclass_field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for entry in reversed(self.entries):  # the first of two entries of one tag wins
            self.by_tag[entry.tag] = entry

    @property
    def end(self) -> int:
        return self.offset + 2 + 12 * len(self.entries) + len(self.next_field)

    def get(self, tag: int) -> Entry | None:
        return self.by_tag.get(tag)


class Tiff:
    """A TIFF block (the APP1 payload after ``Exif\\0\\0``)."""

    def __init__(self, data: bytes) -> None:
        """MediaError when the block has no TIFF header."""
        if len(data) < HEADER_SIZE or data[:2] not in (b"II", b"MM"):
            raise MediaError("corrupt EXIF (no TIFF header)")
        self.data = data
        self.order = "<" if data[:2] == b"II" else ">"
        magic, self.first = struct.unpack_from(self.order + "HI", data, 2)
        if magic != 42:
            raise MediaError("corrupt EXIF (no TIFF header)")

    def _u32(self, field: bytes) -> int:
        return int(struct.unpack(self.order + "I", field)[0])

    def ifd_at(self, offset: int) -> Ifd | None:
        """The IFD at ``offset``; None when its entry count lies outside the block."""
        data = self.data
        if offset < HEADER_SIZE or offset + 2 > len(data):
            return None
        (claimed,) = struct.unpack_from(self.order + "H", data, offset)
        fits = min(claimed, (len(data) - offset - 2) // 12)
        start = offset + 2
        fmt = self.order + "HHI4s"
        sizes = TYPE_SIZES
        entries = tuple(
            Entry(
                tag,
                kind,
                count,
                field,
                start + 12 * i,
                sizes[kind] * count if kind in sizes else None,
            )
            for i, (tag, kind, count, field) in enumerate(
                struct.iter_unpack(fmt, data[start : start + 12 * fits])
            )
        )
        link_at = start + 12 * fits
        next_field = data[link_at : link_at + 4] if fits == claimed else b""
        return Ifd(offset, entries, next_field if len(next_field) == 4 else b"", fits == claimed)

    def ifd0(self) -> Ifd:
        """IFD0; MediaError when the header points outside the block."""
        ifd = self.ifd_at(self.first)
        if ifd is None:
            raise MediaError(f"corrupt EXIF (IFD0 offset {self.first:,} is outside the block)")
        return ifd

    def pointer(self, entry: Entry) -> int | None:
        """The offset a sub-IFD pointer holds, whatever integer type the camera stored it as
        (LONG as the standard says, or IFD, SLONG, SHORT, four UNDEFINED bytes)."""
        if entry.kind == UNDEFINED:
            return self._u32(entry.field) if entry.count == 4 else None
        if entry.kind not in (LONG, IFD, SLONG, SHORT) or entry.count != 1:
            return None
        values = self.ints(entry)
        return values[0] if values else None

    def sub_ifd(self, parent: Ifd | None, name: str) -> tuple[Ifd | None, str | None]:
        """The sub-IFD ``name`` under ``parent``: (ifd, None), (None, None) when there is none,
        or (None, reason) when its pointer leads nowhere."""
        if parent is None:
            return None, None
        entry = parent.get(SUB_IFDS[name][1])
        if entry is None:
            return None, None
        offset = self.pointer(entry)
        if offset == 0 or entry.count == 0:
            return None, None  # some writers store a zero or empty pointer for "none"
        ifd = None if offset is None else self.ifd_at(offset)
        if ifd is None or ifd.offset == parent.offset:
            return None, f"corrupt EXIF ({name} IFD pointer {offset} leads outside the block)"
        return ifd, None

    def ifd1(self, ifd0: Ifd) -> Ifd | None:
        """The thumbnail's IFD linked from IFD0, when the link leads to one."""
        if not ifd0.next_field:
            return None
        offset = self._u32(ifd0.next_field)
        if offset == 0 or offset == ifd0.offset:
            return None
        return self.ifd_at(offset)

    def structure(self) -> dict[str, Ifd]:
        """Every IFD we know that can be reached ("0th", "Exif", "GPS", "Interop", "1st");
        pointers that lead nowhere are left out. MediaError only when IFD0 cannot be read."""
        found = {"0th": self.ifd0()}
        for name in ("Exif", "GPS", "Interop"):
            ifd, _ = self.sub_ifd(found.get(SUB_IFDS[name][0]), name)
            if ifd is not None and all(ifd.offset != other.offset for other in found.values()):
                found[name] = ifd
        first = self.ifd1(found["0th"])
        if first is not None and all(first.offset != other.offset for other in found.values()):
            found["1st"] = first
        return found

    # -- values -----------------------------------------------------------------------------------

    def raw(self, entry: Entry) -> bytes | None:
        """The value's bytes; None when its type is unknown or it runs past the block."""
        size = entry.size
        if size is None:
            return None
        if size <= 4:
            return entry.field[:size]
        at = self._u32(entry.field)
        if at + size > len(self.data):
            return None
        return self.data[at : at + size]

    def ints(self, entry: Entry) -> tuple[int, ...] | None:
        """An integer entry's values (BYTE, SHORT, LONG and signed; UNDEFINED read as bytes)."""
        raw = self.raw(entry)
        if raw is None:
            return None
        if entry.kind == _UNDEFINED_INTS:
            return tuple(raw)
        fmt = _INT_FORMATS.get(entry.kind)
        if fmt is None:
            return None
        return struct.unpack(f"{self.order}{entry.count}{fmt}", raw)

    def rationals(self, entry: Entry) -> tuple[tuple[int, int], ...] | None:
        """A rational entry's (numerator, denominator) pairs; integers count as n/1."""
        raw = self.raw(entry)
        if raw is None:
            return None
        if entry.kind in (RATIONAL, SRATIONAL):
            fmt = "I" if entry.kind == RATIONAL else "i"
            flat = struct.unpack(f"{self.order}{2 * entry.count}{fmt}", raw)
            return tuple(zip(flat[::2], flat[1::2], strict=True))
        ints = self.ints(entry) if entry.kind != UNDEFINED else None
        return None if ints is None else tuple((v, 1) for v in ints)

    def floats(self, entry: Entry) -> tuple[float, ...] | None:
        """FLOAT and DOUBLE entries' values."""
        raw = self.raw(entry)
        if raw is None or entry.kind not in (FLOAT, DOUBLE):
            return None
        fmt = "f" if entry.kind == FLOAT else "d"
        return struct.unpack(f"{self.order}{entry.count}{fmt}", raw)

    def text_bytes(self, entry: Entry) -> bytes | None:
        """A text entry's bytes up to its first NUL (the whole value when a camera left the NUL
        out); text stored as UNDEFINED or BYTE is read the same way."""
        if entry.kind not in (ASCII, UNDEFINED, BYTE):
            return None
        raw = self.raw(entry)
        if raw is None:
            return None
        cut = raw.find(b"\x00")
        return raw if cut < 0 else raw[:cut]

    def value(self, entry: Entry) -> object | None:
        """The value as piexif's dictionaries hold it: ASCII as bytes (without the NUL),
        UNDEFINED as bytes, numbers as an int or (num, den) alone when there is one, else as a
        tuple. None when it cannot be read."""
        kind = entry.kind
        if kind == ASCII:
            return self.text_bytes(entry)
        if kind == UNDEFINED:
            return self.raw(entry)
        if kind in (RATIONAL, SRATIONAL):
            items: tuple[object, ...] | None = self.rationals(entry)
        elif kind in (FLOAT, DOUBLE):
            items = self.floats(entry)
        else:
            items = self.ints(entry)
        if items is None:
            return None
        return items[0] if len(items) == 1 else items

    # -- layout -----------------------------------------------------------------------------------

    def spans(self, name: str, ifd: Ifd) -> Iterator[tuple[int, int, str, int | None]]:
        """The byte ranges the IFD owns: (start, end, ifd name, tag), tag None for the table
        itself; values outside the block are left out. The thumbnail an IFD points to (JPEG or
        strips) counts as owned by the pointing entry."""
        yield ifd.offset, ifd.end, name, None
        limit = len(self.data)
        for entry in ifd.entries:
            at = entry.value_at(self.order)
            size = entry.size or 0
            if at is not None and at + size <= limit:
                yield at, at + size, name, entry.tag
        if name in ("0th", "1st"):
            yield from self._image_data(name, ifd)

    def _image_data(self, name: str, ifd: Ifd) -> Iterator[tuple[int, int, str, int | None]]:
        pairs = ((THUMB_OFFSET, THUMB_LENGTH), (STRIP_OFFSETS, STRIP_COUNTS))
        limit = len(self.data)
        for offsets_tag, lengths_tag in pairs:
            where, sizes = ifd.get(offsets_tag), ifd.get(lengths_tag)
            if where is None or sizes is None:
                continue
            starts, lengths = self.ints(where), self.ints(sizes)
            if not starts or not lengths:
                continue
            for start, length in zip(starts, lengths, strict=False):
                if start > 0 and length > 0 and start + length <= limit:
                    yield start, start + length, name, offsets_tag
