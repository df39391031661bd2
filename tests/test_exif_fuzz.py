"""Damaged photos: thousands of mutants of real camera files (and of a few built here), each
read and tagged. Every one must come back as a result or a one-line MediaError, quickly, and
a file we refuse is left byte for byte as it was.

The mutator (:func:`mutants`, fixed seed) damages what cameras and card readers damage: bytes
in the header (the first 64 KiB), the end of the file, whole segments duplicated or removed,
and the TIFF structure itself (IFD offsets, entry counts, value counts and offsets, types).
tests/bench/bench_exif_fuzz.py runs the same over 20,000+ mutants and prints figures.
"""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from daemon.media import exif
from daemon.media.exif import MediaError
from daemon.media.jpeg import EXIF_HEADER
from daemon.media.tiff import Tiff
from tests.test_exif_read import (
    CORPUS,
    DTO,
    OFFSET_ORIGINAL,
    SUBSEC_ORIGINAL,
    needs_corpus,
    plain_jpeg,
    rationals,
    short,
    text,
    tiff_block,
)
from tests.test_exif_read import jpeg_with as _jpeg_with

HANG_S = 5.0
ROUND_TRIP = True  # a tagged readable photo reads back the same
SUITE_MUTANTS = 3_000


def header_segments(blob: bytes) -> list[tuple[int, int]]:
    """[start, end) of each marker segment from SOI to SOS (as far as they can be walked)."""
    spans, pos = [], 2
    while pos + 4 <= len(blob) and blob[pos] == 0xFF:
        kind = blob[pos + 1]
        end = pos + 2 + int.from_bytes(blob[pos + 2 : pos + 4], "big")
        spans.append((pos, min(end, len(blob))))
        if kind == 0xDA or end <= pos:
            break
        pos = end
    return spans


def tiff_fields(blob: bytes) -> tuple[int, str, list[int]] | None:
    """Where the TIFF block starts, its byte order, and the positions (in the file) of every
    IFD table and entry our parser can reach: the places worth damaging."""
    for start, end in header_segments(blob):
        if blob[start + 1] == 0xE1 and blob[start + 4 : start + 10] == EXIF_HEADER:
            base = start + 10
            try:
                tiff = Tiff(blob[base:end])
                found = tiff.structure()
            except MediaError:
                return base, "<", []
            places = []
            for ifd in found.values():
                places.append(base + ifd.offset)
                places.extend(base + entry.at for entry in ifd.entries)
            return base, tiff.order, places
    return None


def _flip(rnd: random.Random, blob: bytearray) -> str:
    reach = min(len(blob), 64 * 1024)
    for _ in range(rnd.randint(1, 8)):
        at = rnd.randrange(reach)
        blob[at] = rnd.randrange(256) if rnd.random() < 0.7 else blob[at] ^ (1 << rnd.randrange(8))
    return "byte flips"


def _truncate(rnd: random.Random, blob: bytearray) -> str:
    head = header_segments(bytes(blob))
    limit = head[-1][1] + 64 if head and rnd.random() < 0.6 else len(blob)
    del blob[rnd.randrange(1, max(2, min(limit, len(blob)))) :]
    return "truncated"


def _segment(rnd: random.Random, blob: bytearray) -> str:
    spans = [s for s in header_segments(bytes(blob)) if blob[s[0] + 1] != 0xDA]
    if not spans:
        return _flip(rnd, blob)
    start, end = rnd.choice(spans)
    if rnd.random() < 0.5:
        blob[start:start] = blob[start:end]
        return "segment duplicated"
    del blob[start:end]
    return "segment removed"


def _segment_length(rnd: random.Random, blob: bytearray) -> str:
    spans = header_segments(bytes(blob))
    if not spans:
        return _flip(rnd, blob)
    start, _ = rnd.choice(spans)
    blob[start + 2 : start + 4] = struct.pack(
        ">H", rnd.choice([0, 1, 2, 0xFFFF, rnd.randrange(65536)])
    )
    return "segment length"


def _structure(rnd: random.Random, blob: bytearray) -> str:
    """A bogus IFD offset, entry count, value count, value offset or type."""
    found = tiff_fields(bytes(blob))
    if found is None or not found[2]:
        return _flip(rnd, blob)
    base, order, places = found
    size = len(blob) - base
    bogus = [0, 1, 7, 8, size - 1, size, size + 1, 0xFFFF, 0x7FFF_FFFF, 0xFFFF_FFFF]
    bogus.append(rnd.randrange(max(size, 1)))
    choice = rnd.random()
    if choice < 0.15:  # IFD0 offset in the header
        blob[base + 4 : base + 8] = struct.pack(order + "I", rnd.choice(bogus))
        return "IFD0 offset"
    at = rnd.choice(places)
    is_table = (at - base) in {p - base for p in places[:1]} or rnd.random() < 0.1
    if is_table and at + 2 <= len(blob):
        blob[at : at + 2] = struct.pack(
            order + "H", rnd.choice([0, 1, 0xFFFF, rnd.randrange(65536)])
        )
        return "IFD entry count"
    if at + 12 > len(blob):
        return _flip(rnd, blob)
    part = rnd.random()
    if part < 0.35:
        blob[at + 4 : at + 8] = struct.pack(order + "I", rnd.choice(bogus))
        return "value count"
    if part < 0.75:
        blob[at + 8 : at + 12] = struct.pack(order + "I", rnd.choice(bogus))
        return "value offset"
    blob[at + 2 : at + 4] = struct.pack(
        order + "H", rnd.choice([0, 2, 3, 4, 5, 7, 12, 13, 14, 255])
    )
    return "value type"


MUTATORS: list[Callable[[random.Random, bytearray], str]] = [
    _flip,
    _flip,
    _truncate,
    _segment,
    _segment_length,
    _structure,
    _structure,
    _structure,
]


def mutants(seeds: list[bytes], count: int, seed: int = 13) -> Iterator[tuple[int, str, bytes]]:
    """``count`` damaged copies of the seed files: (seed index, what was done, bytes). One to
    three damages each; the same seed always gives the same mutants."""
    rnd = random.Random(seed)
    for _ in range(count):
        index = rnd.randrange(len(seeds))
        blob = bytearray(seeds[index])
        done = [rnd.choice(MUTATORS)(rnd, blob) for _ in range(rnd.choice([1, 1, 2, 3]))]
        yield index, "+".join(done), bytes(blob)


def built_seeds() -> list[bytes]:
    """Seeds that need no corpus: both byte orders, a thumbnail, GPS, sub-IFD pointers."""
    seeds = []
    for order in "<>":
        gps = [(1, 2, 2, b"N\x00"), rationals(2, (47, 1), (22, 1), (3, 100), order=order)]
        gps += [(3, 2, 2, b"W\x00"), rationals(4, (8, 1), (32, 1), (15, 1), order=order)]
        gps += [rationals(6, (400, 1), order=order), text(29, b"2024:05:17")]
        gps += [rationals(7, (12, 1), (3, 1), (21, 1), order=order)]
        times = [text(DTO, b"2024:05:17 14:03:21"), text(SUBSEC_ORIGINAL, b"25")]
        times.append(text(OFFSET_ORIGINAL, b"+02:00"))
        tiff = tiff_block(
            [text(0x010F, b"Acme"), text(0x0110, b"Cam 1"), short(0x0112, 6, order=order)],
            times,
            gps,
            order=order,
            ifd1=[short(0x0103, 6, order=order)] if order == "<" else None,
            tail=plain_jpeg((8, 8)),
        )
        seeds.append(_jpeg_with(tiff, size=(96, 64)))
    seeds.append(plain_jpeg((48, 32)))
    return seeds


def corpus_seeds() -> list[bytes]:
    return [
        p.read_bytes() for p in sorted(CORPUS.iterdir()) if p.suffix.lower() in (".jpg", ".jpeg")
    ]


@dataclass
class Outcome:
    read: int = 0
    refused: int = 0
    written: int = 0
    write_refused: int = 0
    slowest: float = 0.0
    failures: list[str] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)


def check(path: Path, blob: bytes, label: str, out: Outcome, write_file: bool) -> None:
    """Read and tag one mutant (written at ``path``), recording anything that is not a result
    or a one-line MediaError, and any change to a refused file."""
    path.write_bytes(blob)
    started = time.perf_counter()
    try:
        info = exif.read_exif(path)
        out.read += 1
        readable = True
    except MediaError as exc:
        readable = False
        out.refused += 1
        reason = str(exc)
        if not reason or "\n" in reason:
            out.failures.append(f"{label}: reason not one line: {reason!r}")
        key = reason.split("(")[0].split(":")[0][:40]
        out.reasons[key] = out.reasons.get(key, 0) + 1
    except Exception as exc:  # noqa: BLE001 - the finding itself
        out.failures.append(f"{label}: read raised {type(exc).__name__}: {exc}")
        return
    try:
        if write_file:
            exif.write_description(path, "fuzz ✓")
        else:
            sent = exif.tagged_bytes(path, "fuzz ✓")
        out.written += 1
        if readable and ROUND_TRIP:
            again = exif.read_exif(path) if write_file else exif.exif_info_of(sent)
            if again.description != "fuzz ✓" or again.capture_time != info.capture_time:
                out.failures.append(f"{label}: written file reads back differently")
    except (MediaError, OSError):
        out.write_refused += 1
        if path.read_bytes() != blob:
            out.failures.append(f"{label}: a refused write changed the file")
    except Exception as exc:  # noqa: BLE001
        out.failures.append(f"{label}: write raised {type(exc).__name__}: {exc}")
    if not readable and not write_file and path.read_bytes() != blob:
        out.failures.append(f"{label}: a refused file was changed")
    elapsed = time.perf_counter() - started
    out.slowest = max(out.slowest, elapsed)
    if elapsed > HANG_S:
        out.failures.append(f"{label}: took {elapsed:.1f} s")


def run(seeds: list[bytes], count: int, folder: Path, seed: int = 13) -> Outcome:
    out = Outcome()
    for n, (index, what, blob) in enumerate(mutants(seeds, count, seed)):
        check(
            folder / f"m{n % 8}.jpg", blob, f"mutant {n} of seed {index} ({what})", out, n % 40 == 0
        )
    return out


def test_built_mutants_only_ever_give_results_or_reasons(tmp_path: Path) -> None:
    out = run(built_seeds(), 600, tmp_path, seed=1)
    assert out.failures == [], out.failures[:10]
    assert out.read and out.refused and out.written  # the mutator reaches every outcome
    assert out.slowest < HANG_S


@needs_corpus
def test_corpus_mutants_only_ever_give_results_or_reasons(tmp_path: Path) -> None:
    out = run(corpus_seeds(), SUITE_MUTANTS, tmp_path)
    assert out.failures == [], out.failures[:10]
    assert out.read > 100 and out.refused > 100
    assert out.slowest < HANG_S


def test_the_mutator_is_deterministic() -> None:
    seeds = built_seeds()
    first = [(i, w, hash(b)) for i, w, b in mutants(seeds, 50)]
    assert first == [(i, w, hash(b)) for i, w, b in mutants(seeds, 50)]
    assert len({h for _, _, h in first}) > 40


@pytest.mark.parametrize("seed", range(3))
def test_every_built_seed_is_sound(seed: int) -> None:
    blob = built_seeds()[seed]
    exif.exif_info_of(blob)  # an unmutated seed reads
