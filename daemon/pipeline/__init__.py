"""The processing pipeline: pure stages over image records, and the order they run in.

``run_pipeline`` is shared by the ``process`` command and the daemon::

    capture order → GPX geotag → no position? set aside → impossible speeds
    → cut at time gaps / distance jumps → duplicates per piece → directions per piece
    → at most max_images per sequence, each with a fresh sequence id

Duplicates are judged within a piece, before the size cap, so that removing the photos of a stop
never opens a time gap that would split a sequence.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields

from daemon.pipeline import dates
from daemon.pipeline.dates import capture_order
from daemon.pipeline.directions import directions_from_motion, interpolate_directions
from daemon.pipeline.duplicates import mark_duplicates, mark_impossible_speeds, mark_stops
from daemon.pipeline.geotag import TrackLike, correct_times, geotag
from daemon.pipeline.records import NO_POSITION, ImageRecord
from daemon.pipeline.sequences import cap_sequences, cut_sequences, new_sequence_id
from daemon.pipeline.smooth import MIN_SMOOTHED_S, Motion, estimate

__all__ = ["PipelineOptions", "PipelineResult", "clear_caches", "run_pipeline"]


@dataclass
class PipelineOptions:
    """Every tunable of the pipeline; names match the ``[pipeline]`` settings."""

    tz: str | None = None  # used when loading; kept here so summaries can say it
    time_offset: float = 0.0  # seconds the camera clock is ahead of the GPX clock
    bearing_offset: float = 0.0  # added to the track's bearing (camera looking sideways)
    max_gap: float = 60.0  # longest track gap to interpolate across, seconds
    cutoff_distance: float = 100.0
    cutoff_time: float | None = 60.0  # None: 1.5 × the median gap between photos
    max_images: int = 1000
    duplicate_distance: float = 4.0
    duplicate_angle: float = 20.0
    duplicate_window: float = 30.0  # seconds of motion to judge standing; 0 = classic rule
    max_speed_kmh: float | None = 200.0
    interpolate_directions: bool = False
    offset_angle: float = 0.0
    overwrite_positions: bool = True  # GPX wins over EXIF GPS when both exist
    smoothing: bool = True  # positions from the smoothed track (speeds and headings always are)
    uuid_factory: Callable[[], str] = field(default=new_sequence_id, repr=False)

    @classmethod
    def from_settings(cls, settings: object, **overrides: object) -> PipelineOptions:
        """Options from any object with same-named attributes (``daemon.core.config.Settings``)."""
        values = {
            f.name: getattr(settings, f.name) for f in fields(cls) if hasattr(settings, f.name)
        }
        values.update(overrides)
        return cls(**values)


@dataclass
class PipelineResult:
    sequences: list[list[ImageRecord]]  # usable photos, capture order, each with .sequence
    duplicates: list[ImageRecord]  # set aside as DUPLICATE
    set_aside: list[ImageRecord]  # every other reason (bad file, no time, no position, ...)

    @property
    def images(self) -> int:
        return sum(len(s) for s in self.sequences)

    @property
    def counts(self) -> Counter[str]:
        """Set-aside photos by error type, duplicates included."""
        return Counter(r.error.type for r in self.duplicates + self.set_aside if r.error)

    @property
    def records(self) -> list[ImageRecord]:
        """Every photo once, in capture order."""
        every = [r for s in self.sequences for r in s] + self.duplicates + self.set_aside
        return capture_order(every)


def run_pipeline(
    records: Sequence[ImageRecord], track: TrackLike | None, options: PipelineOptions
) -> PipelineResult:
    """Run every stage; nothing here raises for a bad photo, it is set aside with a reason."""
    recs = capture_order(records)
    if track is not None:
        recs = geotag(
            recs,
            track,
            time_offset_s=options.time_offset,
            bearing_offset=options.bearing_offset,
            max_gap=options.max_gap,
            overwrite=options.overwrite_positions,
        )
    else:
        recs = correct_times(recs, options.time_offset)
    why = "no GPS position in its EXIF" + ("" if track is not None else " and no GPX track given")
    recs = [r.set_aside(NO_POSITION, why) if r.ok and not r.has_position else r for r in recs]
    if options.max_speed_kmh is not None:
        recs = mark_impossible_speeds(recs, options.max_speed_kmh)
    pieces = []
    duplicates = []
    for piece in cut_sequences(recs, options.cutoff_distance, options.cutoff_time):
        judged, smoothed = _judge(piece, track, options)
        kept = [r for r in judged if r.ok]
        duplicates += [r for r in judged if not r.ok]
        if options.interpolate_directions and not smoothed:
            kept = _interpolated(kept, interpolate_directions(kept, options.offset_angle))
        pieces.append(kept)
    sequences = cap_sequences(pieces, options.max_images, options.uuid_factory)
    set_aside = [r for r in recs if not r.ok]
    return PipelineResult(sequences, duplicates, set_aside)


SMOOTHED = {"gpx", "exif"}


def _too_short(piece: list[ImageRecord], motion: Motion) -> bool:
    """A handful of photos with their own GPS and no track: one fix each is too little for the
    smoother to see a stop begin, so pieces shorter than the window are left to the old rules."""
    if motion.from_track:
        return False
    assert piece[0].capture_time is not None and piece[-1].capture_time is not None
    return (piece[-1].time - piece[0].time).total_seconds() < MIN_SMOOTHED_S


def _judge(
    piece: list[ImageRecord], track: TrackLike | None, options: PipelineOptions
) -> tuple[list[ImageRecord], bool]:
    """Duplicates (and, with the smoothed track, headings and positions) of one piece; True when
    the smoothed track judged it, False when the fixes were too sparse and the window rule did."""
    motion = estimate(piece, track, options.max_gap) if options.duplicate_window > 0 else None
    if motion is None or any(s is None for s in motion.states) or _too_short(piece, motion):
        # Fixes too sparse or too few for the smoother to tell a walk from a stop: the window
        # rule (and, on fewer photos than a window holds, the classic one).
        judged = mark_duplicates(
            piece,
            options.duplicate_distance,
            options.duplicate_angle,
            window_s=options.duplicate_window,
            max_speed_kmh=None,
        )
        return judged, False
    states = [s for s in motion.states if s is not None]
    recs = piece
    if options.smoothing:
        recs = [
            r.replace(lat=ll[0], lon=ll[1]) if r.position_source in SMOOTHED else r
            for r, s in zip(recs, states, strict=True)
            for ll in (motion.latlon(s),)
        ]
    slowness = [s.slowness for s in states]
    # Stops before headings: a camera's own compass may keep a photo of a stop, a heading made
    # up from the movement must not.
    speeds = [s.speed for s in states]
    recs = mark_stops(
        recs, slowness, options.duplicate_angle, fix_step=motion.step, momentary=speeds
    )
    if options.interpolate_directions:
        headings: list[float | None] = [s.heading for s in states]
        recs = _interpolated(
            recs, directions_from_motion(recs, headings, speeds, options.offset_angle)
        )
    return recs, True


def _interpolated(before: list[ImageRecord], after: list[ImageRecord]) -> list[ImageRecord]:
    """``after`` with the records a directions stage gave a heading marked as such (the stages
    return a record they left alone as the same object)."""
    return [
        b if b is a else b.replace(heading_source="interpolated")
        for a, b in zip(before, after, strict=True)
    ]


def clear_caches() -> None:
    """Forget what the stages keep between runs: each file name's sort key (up to 65,536),
    useful while one folder is sorted again and again, ~30 MB kept for good after a big card
    in a long-running daemon, which calls this after each batch."""
    dates._name_key.cache_clear()
