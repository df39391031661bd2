"""Editing a TIFF block losslessly: only the entries asked for change, every other byte the
camera wrote stays where it was.

The existing block is kept in place. Each IFD that changes (and each IFD above it, whose pointer
to it must change) is written again after the end of the block, with its untouched entries
copied as they were (so they still point at the values where they lie) and its new values
after it; only the offset that leads to a rewritten IFD is changed (TIFF header → IFD0 → Exif/
GPS → Interop). Nothing the camera wrote moves, so maker notes, whose inner offsets no tool can
know for every maker, stay right; the byte order, the thumbnail and IFD0's link to it stay as
they were; entries are written in tag order.

What the last edit appended is taken back before appending again (the tail of the block is
reused when only IFDs and values being replaced lie there), so repeated edits do not grow the
block without end. Bytes the block holds that no known entry owns are never reused.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import piexif

from daemon.media.errors import MediaError
from daemon.media.tiff import (
    ASCII,
    BYTE,
    DOUBLE,
    FLOAT,
    HEADER_SIZE,
    LONG,
    RATIONAL,
    SBYTE,
    SHORT,
    SLONG,
    SRATIONAL,
    SSHORT,
    SUB_IFDS,
    UNDEFINED,
    Entry,
    Ifd,
    Tiff,
)

_ORDER = ("Interop", "GPS", "Exif", "0th")  # children first: a parent needs their offsets
_CHILDREN = {"0th": ("Exif", "GPS"), "Exif": ("Interop",), "GPS": (), "Interop": ()}
_INT_RANGES = {
    BYTE: (0, 0xFF, "B"),
    SHORT: (0, 0xFFFF, "H"),
    LONG: (0, 0xFFFF_FFFF, "I"),
    SBYTE: (-0x80, 0x7F, "b"),
    SSHORT: (-0x8000, 0x7FFF, "h"),
    SLONG: (-0x8000_0000, 0x7FFF_FFFF, "i"),
}
_FAMILY = {BYTE: 0, SHORT: 0, LONG: 0, SBYTE: 0, SSHORT: 0, SLONG: 0, RATIONAL: 1, SRATIONAL: 1}
_FAMILY.update({ASCII: 2, UNDEFINED: 3, FLOAT: 4, DOUBLE: 4})
_GAP = 3
# Tags whose values hold offsets (or are addressed from elsewhere): their bytes never move.
_NEVER_MOVED = {
    0x927C,
    0xC634,
    0x0111,
    0x0144,
    0x014A,
    0x0201,
    0x0202,
    0x8769,
    0x8825,
    0xA005,
}  # zero bytes between two values (word alignment) still count as theirs
EMPTY_TIFF = b"II*\x00" + struct.pack("<I", HEADER_SIZE) + b"\x00\x00" + b"\x00" * 4


@dataclass(frozen=True)
class Value:
    """An entry's new value, encoded: its TIFF type, count and bytes in the block's order."""

    kind: int
    count: int
    data: bytes


# Per IFD: tag → new value, or None to remove the entry.
Changes = dict[str, dict[int, Value | None]]


def _table(ifd: str) -> dict[int, dict[str, Any]]:
    tags: dict[int, dict[str, Any]] = piexif.TAGS["Image" if ifd in ("0th", "1st") else ifd]
    return tags


def _ints(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return (value,)
    if isinstance(value, bytes):
        return tuple(value)
    if (
        isinstance(value, tuple | list)
        and value
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return tuple(value)
    return None


def _is_pair(v: Any) -> bool:
    return (
        isinstance(v, tuple | list)
        and len(v) == 2
        and isinstance(v[0], int)
        and isinstance(v[1], int)
    )


def _pairs(value: Any) -> tuple[tuple[int, int], ...] | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return ((value, 1),)
    if _is_pair(value):
        return ((int(value[0]), int(value[1])),)
    if isinstance(value, tuple | list) and value and all(_is_pair(v) for v in value):
        return tuple((int(v[0]), int(v[1])) for v in value)
    return None


def _encoded(order: str, kind: int, value: Any) -> Value | None:
    """``value`` as ``kind``, or None when it cannot be that type."""
    if kind == ASCII:
        if isinstance(value, str):
            value = value.encode("utf-8")
        if not isinstance(value, bytes):
            return None
        data = value if value.endswith(b"\x00") else value + b"\x00"
        return Value(kind, len(data), data)
    if kind == UNDEFINED:
        ints = value if isinstance(value, bytes) else _ints(value)
        if ints is None or any(not 0 <= v <= 0xFF for v in ints):
            return None
        return Value(kind, len(ints), bytes(ints))
    if kind in _INT_RANGES:
        low, high, fmt = _INT_RANGES[kind]
        if isinstance(value, bytes) and kind not in (BYTE, SBYTE):
            return None
        ints = _ints(value)
        if ints is None or any(not low <= v <= high for v in ints):
            return None
        return Value(kind, len(ints), struct.pack(f"{order}{len(ints)}{fmt}", *ints))
    if kind in (RATIONAL, SRATIONAL):
        pairs = _pairs(value)
        low, high, fmt = _INT_RANGES[LONG if kind == RATIONAL else SLONG]
        if pairs is None or any(not low <= v <= high for p in pairs for v in p):
            return None
        flat = [v for p in pairs for v in p]
        return Value(kind, len(pairs), struct.pack(f"{order}{len(flat)}{fmt}", *flat))
    if kind in (FLOAT, DOUBLE):
        items = value if isinstance(value, tuple | list) else (value,)
        if not items or not all(isinstance(v, int | float) for v in items):
            return None
        fmt = "f" if kind == FLOAT else "d"
        return Value(kind, len(items), struct.pack(f"{order}{len(items)}{fmt}", *items))
    return None


def encode(order: str, ifd: str, tag: int, value: Any, old: Entry | None) -> Value:
    """The entry for ``value``: in the type the camera used for this tag when the value fits
    it, else in the standard's type (piexif's table), a SHORT that overflows as a LONG.
    MediaError when neither can hold it."""
    known = _table(ifd).get(tag, {}).get("type")
    kinds = [k for k in (old.kind if old else None, known) if k is not None]
    if old is not None and known is not None and _FAMILY.get(old.kind) != _FAMILY.get(known):
        kinds = [known]  # a camera's odd type is kept in its entry, not spread to new values
    if known == SHORT:
        kinds.append(LONG)
    for kind in kinds:
        encoded = _encoded(order, kind, value)
        if encoded is not None:
            return encoded
    name = _table(ifd).get(tag, {}).get("name", f"tag {tag}")
    raise MediaError(f"cannot write EXIF ({ifd} {name} = {value!r:.40}: not a value it can hold)")


def _same(tiff: Tiff, entry: Entry, value: Value) -> bool:
    return (entry.kind, entry.count) == (value.kind, value.count) and tiff.raw(entry) == value.data


def _rewritten(
    tiff: Tiff, ifds: dict[str, Ifd], changes: Changes, fresh: bool
) -> dict[str, dict[int, Value | None]]:
    """The changes that change something, per IFD; IFDs above a changed one are listed (with
    no changes of their own) since their pointer to it changes."""
    effective: dict[str, dict[int, Value | None]] = {}
    for name, tags in changes.items():
        ifd = ifds.get(name)
        for tag, value in tags.items():
            entry = ifd.get(tag) if ifd is not None else None
            if value is None and entry is None:
                continue
            if value is not None and entry is not None and _same(tiff, entry, value):
                continue
            effective.setdefault(name, {})[tag] = value
    if "1st" in effective:
        raise MediaError("cannot write EXIF (the thumbnail's IFD1 is never edited)")
    if fresh:
        effective.setdefault("0th", {})
    _with_parents(effective)
    return effective


def _with_parents(effective: dict[str, dict[int, Value | None]]) -> None:
    for name in ("Interop", "GPS", "Exif"):
        if name in effective:
            effective.setdefault(SUB_IFDS[name][0], {})


def _reusable_from(
    tiff: Tiff, ifds: dict[str, Ifd], effective: dict[str, dict[int, Value | None]]
) -> tuple[int, set[tuple[str, int]]]:
    """Where appending may start, and the kept entries whose values must then be copied along.

    The end of the block, or earlier when everything from there on belongs only to IFDs and
    values this edit replaces, to plain values of the IFDs it rewrites, or to the table of a
    sub-IFD (which is then written again too, its entries unchanged): what earlier edits
    appended. A maker note, a thumbnail and anything that holds offsets never move.
    ``effective`` gains the IFDs that are moved so."""
    while True:
        begin, moved = _tail(tiff, ifds, effective)
        more = {name for name, _ in moved if name not in effective}
        if not more:
            return begin, {(name, tag) for name, tag in moved if tag >= 0}
        for name in more:
            effective[name] = {}
        _with_parents(effective)


def _tail(
    tiff: Tiff, ifds: dict[str, Ifd], effective: dict[str, dict[int, Value | None]]
) -> tuple[int, set[tuple[str, int]]]:
    """One pass of :func:`_reusable_from`: (where to start, the owners of what lies past it),
    an owner being (ifd name, tag), tag -1 for a sub-IFD's table."""
    fixed_end = HEADER_SIZE
    spans: list[tuple[int, int, tuple[str, int] | None]] = []
    for name, ifd in ifds.items():
        replaced = effective.get(name)
        movable = replaced is not None or (name in SUB_IFDS and ifd.whole)
        for start, end, _, tag in tiff.spans(name, ifd):
            if replaced is not None and (tag is None or tag in replaced):
                spans.append((start, end, None))
            elif movable and tag not in _NEVER_MOVED:
                spans.append((start, end, (name, -1 if tag is None else tag)))
            else:
                fixed_end = max(fixed_end, end)
    data, cover = tiff.data, len(tiff.data)
    for start, end, _ in sorted(spans, key=lambda span: span[1], reverse=True):
        if end < cover and (cover - end > _GAP or data[end:cover].strip(b"\x00")):
            break
        cover = min(cover, start)
    begin = max(cover, fixed_end)
    if not any(owner is None and end > begin for _, end, owner in spans):
        return len(data), set()  # nothing replaced lies there: moving the rest gains nothing
    return begin, {owner for _, end, owner in spans if owner is not None and end > begin}


def _align(out: bytearray) -> None:
    if len(out) % 2:
        out.append(0)


def _place(
    out: bytearray,
    order: str,
    old: Ifd | None,
    kept: list[tuple[int, bytes]],
    new: dict[int, Value],
    link: bytes,
) -> int:
    """Append one IFD (kept entries as their 12 bytes, new ones with their values after the
    table); its offset."""
    _align(out)
    at = len(out)
    count = len(kept) + len(new)
    values_at = at + 2 + 12 * count + 4
    values = bytearray()
    rows: list[tuple[int, bytes]] = list(kept)
    for tag, value in new.items():
        if len(value.data) <= 4:
            field = value.data.ljust(4, b"\x00")
        else:
            if (values_at + len(values)) % 2:
                values.append(0)
            field = struct.pack(order + "I", values_at + len(values))
            values += value.data
        rows.append((tag, struct.pack(order + "HHI", tag, value.kind, value.count) + field))
    rows.sort(key=lambda row: row[0])
    out += struct.pack(order + "H", count)
    for _, row in rows:
        out += row
    out += link if old is not None and len(link) == 4 else b"\x00" * 4
    out += values
    return at


def edit(
    tiff: Tiff | None,
    changes: Changes,
    created: Callable[[str], dict[int, Value]] = lambda name: {},
) -> bytes:
    """The block with ``changes`` made (see the module's docstring); ``tiff`` None makes one
    from nothing. ``created(name)`` gives the entries an IFD made here must have besides those
    asked for (ExifVersion and the rest). MediaError when an IFD that must be written again
    cannot be read whole; the block is then not changed."""
    fresh = tiff is None
    block = tiff if tiff is not None else Tiff(EMPTY_TIFF)
    ifds = block.structure()
    effective = _rewritten(block, ifds, changes, fresh)
    if not effective:
        return block.data
    for name in effective:
        ifd = ifds.get(name)
        if ifd is not None and not ifd.whole:
            raise MediaError(f"corrupt EXIF ({name} runs past the end of the block); not written")
    order = block.order
    start, moved = _reusable_from(block, ifds, effective)
    out = bytearray(block.data[:start])
    placed: dict[str, int | None] = {}
    for name in _ORDER:
        if name not in effective:
            continue
        old = None if fresh and name == "0th" else ifds.get(name)
        tags = effective[name]
        new = {tag: v for tag, v in tags.items() if v is not None}
        if old is None:
            new = {**created(name), **new}
        children = {SUB_IFDS[c][1]: c for c in _CHILDREN[name] if c in effective}
        kept = []
        for e in old.entries if old is not None else ():
            if e.tag in tags or e.tag in children:
                continue
            raw = block.raw(e) if (name, e.tag) in moved else None
            if raw is not None:  # its value lay where this edit appends: copied along
                new[e.tag] = Value(e.kind, e.count, raw)
            else:
                kept.append((e.tag, block.data[e.at : e.at + 12]))
        for pointer, child in children.items():
            if placed.get(child) is not None:
                new[pointer] = Value(LONG, 1, struct.pack(order + "I", placed[child]))
        if not kept and not new and name != "0th":
            placed[name] = None  # emptied: its pointer goes too
            continue
        placed[name] = _place(out, order, old, kept, new, old.next_field if old else b"")
    ifd0_at = placed.get("0th")
    if ifd0_at is not None:
        out[4:8] = struct.pack(order + "I", ifd0_at)
    return bytes(out)
