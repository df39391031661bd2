"""Sequence split: time gaps, distance jumps, size cap with a fresh count after every split."""

from __future__ import annotations

import doctest
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.core.geo import destination
from daemon.pipeline import sequences
from daemon.pipeline.records import BAD_FILE, ImageRecord
from daemon.pipeline.sequences import cut_sequences, default_cutoff_time, split_sequences

T0 = datetime(2024, 4, 1, 7, 0, tzinfo=UTC)


def test_doctests() -> None:
    assert doctest.testmod(sequences).failed == 0


def shots(plan: list[tuple[float, float]]) -> list[ImageRecord]:
    """Photos from (seconds since the previous photo, metres east of it)."""
    out, t, lat, lon = [], 0.0, 45.0, 7.0
    for i, (dt, step) in enumerate(plan):
        t += dt
        lat, lon = destination(lat, lon, 90.0, step)
        out.append(ImageRecord(Path(f"s_{i}.jpg"), T0 + timedelta(seconds=t), lat=lat, lon=lon))
    return out


def counter_ids():
    n = itertools.count()
    return lambda: f"seq-{next(n)}"


def test_time_gap_and_distance_jump_split() -> None:
    recs = shots([(0, 0)] + [(2, 10)] * 4 + [(61, 10)] + [(2, 10)] * 2 + [(2, 150)] + [(2, 10)])
    seqs = split_sequences(recs, cutoff_distance=100, cutoff_time=60, uuid_factory=counter_ids())
    assert [[r.filename for r in s] for s in seqs] == [
        ["s_0.jpg", "s_1.jpg", "s_2.jpg", "s_3.jpg", "s_4.jpg"],
        ["s_5.jpg", "s_6.jpg", "s_7.jpg"],
        ["s_8.jpg", "s_9.jpg"],
    ]
    assert [{r.sequence for r in s} for s in seqs] == [{"seq-0"}, {"seq-1"}, {"seq-2"}]


def test_the_image_count_starts_again_after_every_split() -> None:
    # 7 photos, a time gap, 7 photos; max 3: the tail of the first part must not eat the second.
    recs = shots([(0, 0)] + [(2, 5)] * 6 + [(600, 5)] + [(2, 5)] * 6)
    seqs = split_sequences(recs, cutoff_time=60, max_images=3, uuid_factory=counter_ids())
    assert [len(s) for s in seqs] == [3, 3, 1, 3, 3, 1]
    assert len({s[0].sequence for s in seqs}) == 6


def test_default_cutoff_is_one_and_a_half_median_gaps() -> None:
    recs = shots([(0, 0)] + [(4, 5)] * 10 + [(7, 5)] + [(4, 5)] * 3)
    assert default_cutoff_time(recs) == 6.0
    assert [len(s) for s in split_sequences(recs)] == [11, 4]
    assert default_cutoff_time(recs[:1]) is None


def test_set_aside_photos_are_left_out_and_ids_are_uuids() -> None:
    recs = shots([(0, 0), (2, 5), (2, 5)])
    recs[1] = recs[1].set_aside(BAD_FILE, "truncated")
    seqs = split_sequences(recs)
    assert [[r.filename for r in s] for s in seqs] == [["s_0.jpg", "s_2.jpg"]]
    assert len(seqs[0][0].sequence) == 36 and seqs[0][0].sequence.count("-") == 4


@settings(max_examples=80, deadline=None)
@given(
    plan=st.lists(st.tuples(st.floats(0, 200), st.floats(0, 300)), min_size=1, max_size=80),
    cutoff_time=st.one_of(st.none(), st.floats(1, 120)),
    cutoff_distance=st.floats(1, 200),
    max_images=st.integers(1, 12),
)
def test_invariants(plan, cutoff_time, cutoff_distance, max_images) -> None:
    recs = shots(plan)
    seqs = split_sequences(recs, cutoff_distance, cutoff_time, max_images)
    # Every photo exactly once, in order; no sequence empty or over the cap; ids unique.
    assert [r.path for s in seqs for r in s] == [r.path for r in recs]
    assert all(1 <= len(s) <= max_images for s in seqs)
    assert len({s[0].sequence for s in seqs}) == len(seqs)
    assert all(len({r.sequence for r in s}) == 1 for s in seqs)
    # Only the cap may cut a piece that has no gap: pieces of the time/distance cut are
    # filled to the cap except for their last sequence.
    pieces = cut_sequences(recs, cutoff_distance, cutoff_time)
    assert len(seqs) == sum(-(-len(p) // max_images) for p in pieces)
