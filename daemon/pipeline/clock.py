"""The camera clock, found from the photos: which zone and offset make them agree with the track.

A camera's naive clock reading is true UTC plus its zone plus its error; only their sum, the
*shift*, can be seen, so the finder looks for the shift and then splits it into the zone (a
real UTC offset near it, the track's longitude as a prior) and the rest (the clock's error).

Evidence, strongest first:

- **stops** (found by :mod:`daemon.pipeline.standing`): consecutive photos that look alike
  (their tiny pictures, :mod:`daemon.media.tiny`) are a camera standing still; the track
  stands still too (its smoothed speed). Each pair of a photo stop and a track stop of about
  the same length votes for the shift that lines up their middles; the shift most stops agree
  on wins, and its estimate is the mean over the matched stops (a middle does not move when
  either side sees a stop a little longer or shorter, as long as it sees both ends alike).
- **breaks**: a pause in the photos that lines up with a gap in the track (both switched off);
- **contradictions**: a photo stop landing where the track moves, or the track standing while
  the photos there all differ, counts against a shift;
- **span**: the share of photos that land inside the track at all;
- **location**: the zone of the track's longitude (within a few hours: zones follow borders).

The answer always says how sure it is (0..1) and, when it cannot tell, why: never a guess.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from daemon.core.config import AUTO
from daemon.media.gpx import Track
from daemon.pipeline.dates import format_offset, parse_zone, resolve_capture_time, zone_label
from daemon.pipeline.records import ImageRecord
from daemon.pipeline.standing import (
    MIN_PHOTO_STOP_S,
    MIN_TRACK_STOP_S,
    PhotoClue,
    Stop,
    TrackMotion,
    breaks_in_both,
    neighbours_alike,
    photo_breaks,
    photo_stops,
    track_motion,
)

CONFIDENT = 0.8  # `--tz auto`/`--time-offset auto` use an answer this sure, or none at all
MATCH_TOLERANCE_S = 4.0  # stop middles this close agree
NULL_SHIFTS = 50  # the shifts no stop votes for, each as likely as a shift of score 0
ZONE_STEP_S = 900  # zones come in quarter hours
SHIFT_RANGE_S = (-13 * 3600, 15 * 3600)  # zones -12:00..+14:00, give or take a clock hour
# UTC offsets some zone uses (summer times included); other quarter hours are possible but rare.
REAL_ZONES_MIN = frozenset(
    m * 60 if isinstance(m, int) else int(m * 60)
    for m in (
        *range(-12, 15),
        -9.5,
        -3.5,
        -2.5,
        3.5,
        4.5,
        5.5,
        5.75,
        6.5,
        8.75,
        9.5,
        10.5,
        12.75,
        13.75,
    )
)


@dataclass(frozen=True)
class Candidate:
    shift: float
    matched: int  # photo stops (both edges seen) whose middle lines up with a track stop
    contradictions: int
    inside: float  # share of photos inside the track
    spread: float  # standard deviation of the matched stops' residuals, s
    breaks: int = 0  # breaks in the photos that line up with gaps in the track

    @property
    def weight(self) -> float:
        """The matched evidence: a break seen by both (to BREAK_TOLERANCE_S) is half a stop."""
        return self.matched + 0.5 * self.breaks

    @property
    def score(self) -> float:
        return self.weight - self.contradictions + 2.0 * self.inside


@dataclass(frozen=True)
class ClockAnswer:
    """The finder's answer. ``tz``/``time_offset`` mean what the ``--tz``/``--time-offset``
    flags mean (true time = camera time read in tz, minus time_offset); both None when it cannot
    tell, with ``reason`` saying why (``best`` then holds the candidate it did not trust)."""

    tz: str | None
    time_offset: float | None
    confidence: float
    photos: int
    reason: str = ""
    evidence: str = ""
    shift: float | None = None
    stops_matched: int = 0
    photo_stops: int = 0
    track_stops: int = 0
    inside: float = 0.0
    zone_from_file: bool = False
    best: dict[str, Any] | None = None
    runner_up: dict[str, Any] | None = None

    @property
    def found(self) -> bool:
        return self.tz is not None or (self.zone_from_file and self.time_offset is not None)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tz": self.tz,
            "time_offset": self.time_offset,
            "confidence": round(self.confidence, 3),
            "photos": self.photos,
            "stops_matched": self.stops_matched,
            "photo_stops": self.photo_stops,
            "track_stops": self.track_stops,
            "inside_track": round(self.inside, 3),
            "zone_from_file": self.zone_from_file,
            "evidence": self.evidence,
            "reason": self.reason or None,
        }
        if self.best is not None:
            out["best_candidate"] = self.best
        if self.runner_up is not None:
            out["runner_up"] = self.runner_up
        return out


# -- photos ---------------------------------------------------------------------------------


def is_auto(value: object) -> bool:
    """Whether a --tz or --time-offset value asks for the finder.

    >>> is_auto("auto"), is_auto(" AUTO "), is_auto("+02:00"), is_auto(3.0)
    (True, True, False, False)
    """
    return isinstance(value, str) and value.strip().lower() == AUTO


def reading_zone(tz: str | None) -> tzinfo:
    """The zone to read the photos in first: UTC while the zone is yet to be found (ValueError
    for a zone that is no zone)."""
    return UTC if is_auto(tz) else parse_zone(tz)[0]


def _from_file(record: ImageRecord) -> bool:
    return bool(record.zone and record.zone.endswith("(from file)"))


def camera_reading(
    record: ImageRecord, read_in: tzinfo, zone_known: bool = False
) -> PhotoClue | None:
    """The clue of a usable photo loaded with its naive times read in ``read_in`` (picture still
    to come), or None: no time, or a time from the GPS stamp (true already, nothing to find).
    With ``zone_known`` (the zone was given) its time is read in that zone, each photo at its own
    date as geotag reads it (a camera following summer time stays whole), and only the clock's
    error is left to find."""
    if not record.ok or record.capture_time is None or record.time_source == "gps":
        return None
    if zone_known or _from_file(record):
        return PhotoClue(record.capture_time.timestamp(), None, from_file=True)
    naive = record.capture_time.astimezone(read_in).replace(tzinfo=UTC)
    return PhotoClue(naive.timestamp(), None)


def needs_clock(records: Sequence[ImageRecord]) -> bool:
    """Whether any usable photo's true time depends on the camera clock (not one from its GPS
    stamp, which is true already)."""
    return any(camera_reading(r, UTC) is not None for r in records)


def read_again(records: Sequence[ImageRecord], read_in: tzinfo, tz: tzinfo) -> list[ImageRecord]:
    """The records with their naive camera times read in ``tz`` instead of ``read_in``; times
    that carried a zone, or came from the GPS stamp, stay as they are."""
    label = zone_label(tz)
    out = []
    for r in records:
        if r.capture_time is None or _from_file(r) or r.time_source == "gps":
            out.append(r)
            continue
        naive = r.capture_time.astimezone(read_in).replace(tzinfo=None)
        moment, zone = resolve_capture_time(naive, tz, label)
        out.append(r.replace(capture_time=moment, zone=zone))
    return out


def placed(
    records: list[ImageRecord],
    read_in: tzinfo,
    tz: str | None,
    time_offset: float | str,
    answer: ClockAnswer,
) -> tuple[list[ImageRecord], str | None, float]:
    """The records, zone and offset once a found ``answer`` fills in whichever of ``tz`` and
    ``time_offset`` is auto (the other kept as given); a found zone reads the photos again."""
    zone_auto = is_auto(tz)
    new_tz = (answer.tz or "UTC") if zone_auto else tz
    offset = float(answer.time_offset or 0.0) if is_auto(time_offset) else float(time_offset)
    if zone_auto:
        records = read_again(records, read_in, parse_zone(new_tz)[0])
    return records, new_tz, offset


def zone_seconds(tz: tzinfo, clues: Sequence[PhotoClue]) -> float:
    """A zone's offset east of UTC at the photos' (middle) time, for a named zone too."""
    when = datetime.fromtimestamp(clues[len(clues) // 2].seconds, UTC) if clues else None
    moment = when.replace(tzinfo=None) if when else datetime(2000, 1, 1)
    offset = tz.utcoffset(moment)
    return offset.total_seconds() if offset is not None else 0.0


# -- the search -------------------------------------------------------------------------------


def _votes(photos: list[Stop], track: list[Stop], low: float, high: float) -> list[tuple]:
    """(shift, photo stop) for each photo and track stop of about the same length."""
    votes = []
    for k, p in enumerate(photos):
        if not p.closed:
            continue
        for q in track:
            if q.closed and abs(p.length - q.length) <= 8.0 + 0.2 * max(p.length, q.length):
                shift = p.middle - q.middle
                if low <= shift <= high:
                    votes.append((shift, k))
    votes.sort()
    return votes


def _peaks(votes: list[tuple], most: int = 12) -> list[float]:
    """The shifts the most distinct photo stops vote for (within MATCH_TOLERANCE_S), best
    first, at least 20 s apart."""
    scored = []
    counts: Counter[int] = Counter()
    lo = 0
    for hi, (shift, k) in enumerate(votes):
        counts[k] += 1
        while votes[lo][0] < shift - 2 * MATCH_TOLERANCE_S:
            counts[votes[lo][1]] -= 1
            if not counts[votes[lo][1]]:
                del counts[votes[lo][1]]
            lo += 1
        scored.append((len(counts), votes[(lo + hi) // 2][0]))
    scored.sort(key=lambda s: -s[0])
    peaks: list[float] = []
    for _n, shift in scored:
        if all(abs(shift - p) > 20.0 for p in peaks):
            peaks.append(shift)
            if len(peaks) >= most:
                break
    return peaks


def _matches(shift: float, photos: list[Stop], motion: TrackMotion) -> list[float]:
    """Residuals (photo middle - shift - track middle) of the closed photo stops that line up
    with a closed track stop at ``shift``."""
    starts = [q.start for q in motion.stops]
    out = []
    for p in photos:
        if not p.closed:
            continue
        want = p.middle - shift
        i = bisect_left(starts, want - 3600)
        best = None
        for q in motion.stops[i : bisect_right(starts, want + 1)]:
            r = want - q.middle
            if q.closed and abs(r) <= MATCH_TOLERANCE_S and (best is None or abs(r) < abs(best)):
                best = r
        if best is not None:
            out.append(best)
    return out


def _contradictions(
    shift: float,
    clues: Sequence[PhotoClue],
    alike: Sequence[bool | None],
    photos: list[Stop],
    motion: TrackMotion,
) -> int:
    """Photo stops where the track surely moves, and track stops where the photos all move."""
    n = 0
    for p in photos:
        if p.length >= 8.0:
            share = motion.moving_share(p.start - shift + 2, p.end - shift - 2)
            if share is not None and share > 0.5:
                n += 1
    times = [c.seconds - shift for c in clues]
    for q in motion.stops:
        if q.length < 12.0:
            continue
        i, j = bisect_left(times, q.start + 2), bisect_right(times, q.end - 2)
        pairs = [alike[k] for k in range(i, j - 1) if alike[k] is not None]
        if len(pairs) >= 2 and pairs.count(False) > len(pairs) / 2:
            n += 1
    return n


def _inside(shift: float, clues: Sequence[PhotoClue], motion: TrackMotion) -> float:
    times = [c.seconds - shift for c in clues]
    inside = 0
    for a, b in motion.segments:
        inside += bisect_right(times, b + 1) - bisect_left(times, a - 1)
    return inside / len(times) if times else 0.0


def _evaluate(
    shift: float,
    clues: Sequence[PhotoClue],
    alike: Sequence[bool | None],
    photos: list[Stop],
    motion: TrackMotion,
) -> Candidate:
    """A candidate shift refined to the mean of its matched stops, and scored there."""
    for _ in range(3):
        residuals = _matches(shift, photos, motion)
        if not residuals:
            break
        shift += sorted(residuals)[len(residuals) // 2]
    residuals = _matches(shift, photos, motion)
    if residuals:
        mean = sum(residuals) / len(residuals)
        shift += mean
        spread = math.sqrt(sum((r - mean) ** 2 for r in residuals) / len(residuals))
    else:
        spread = 0.0
    return Candidate(
        shift,
        len(residuals),
        _contradictions(shift, clues, alike, photos, motion),
        _inside(shift, clues, motion),
        spread,
        breaks_in_both(shift, photo_breaks(clues), motion),
    )


# -- zone and offset --------------------------------------------------------------------------


def split_shift(
    shift: float, lon: float, zone_s: float | None = None, offset_s: float | None = None
) -> tuple[int, float]:
    """The zone (seconds east of UTC) and clock offset whose sum is ``shift``: the real zone
    nearest to it, the track's longitude breaking ties; a given zone or offset is kept.

    >>> split_shift(7200 - 3, 13.4)
    (7200, -3.0)
    >>> split_shift(3600 + 7, 13.4)
    (3600, 7.0)
    >>> split_shift(19800 + 5, 77.0)
    (19800, 5.0)
    >>> split_shift(7200 + 60, 13.4, zone_s=3600)
    (3600, 3660.0)
    """
    if zone_s is not None:
        return int(zone_s), float(shift - zone_s)
    target = shift - (offset_s or 0.0)
    solar = lon / 15.0 * 3600

    def cost(zone: int) -> float:
        rare = 0.0 if zone // 60 in REAL_ZONES_MIN else 1.0
        far = 0.0 if abs(zone - solar) <= 3.5 * 3600 else 0.5
        return abs(target - zone) / ZONE_STEP_S + rare + far

    zones = range(-12 * 3600, 14 * 3600 + 1, ZONE_STEP_S)
    zone = min(zones, key=cost)
    return zone, float(round(shift - zone, 1))


def _label(zone: int | None, offset: float) -> dict[str, Any]:
    return {
        "tz": None if zone is None else format_offset(timedelta(seconds=zone)),
        "time_offset": offset,
    }


def behind_text(offset: float) -> str:
    """``camera 3 s behind``, ``camera 1 h 0 min 5 s ahead``, ``camera clock right``.

    >>> behind_text(-3.0), behind_text(3605), behind_text(0.2), behind_text(-7.5)
    ('camera 3 s behind', 'camera 1 h 0 min 5 s ahead', 'camera clock right', 'camera 7.5 s behind')
    """
    s = round(abs(offset), 1)
    if s < 0.5:
        return "camera clock right"
    h, rest = divmod(int(s), 3600)
    m, whole = divmod(rest, 60)
    sec = f"{whole + s - int(s):g}"
    text = f"{h} h {m} min {sec} s" if h else f"{m} min {sec} s" if m else f"{sec} s"
    return f"camera {text} {'ahead' if offset > 0 else 'behind'}"


# -- the finder -------------------------------------------------------------------------------


@dataclass
class FinderInput:
    """The photos (any order) and what is already known (a zone or offset the user gave)."""

    clues: list[PhotoClue]
    zone_s: float | None = None  # the zone given, seconds east of UTC
    offset_s: float | None = None  # the clock offset given
    max_gap: float = 60.0
    notes: list[str] = field(default_factory=list)


def _kind(clues: Sequence[PhotoClue]) -> tuple[list[PhotoClue], bool]:
    """The photos of the usual kind (naive times, or times with their own zone): a shift is the
    same for all of one kind only."""
    own = [c for c in clues if c.from_file]
    naive = [c for c in clues if not c.from_file]
    chosen, from_file = (own, True) if len(own) > len(naive) else (naive, False)
    return sorted(chosen, key=lambda c: c.seconds), from_file


def _cannot(photos: int, reason: str, **more: Any) -> ClockAnswer:
    return ClockAnswer(None, None, more.pop("confidence", 0.0), photos, reason=reason, **more)


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _shift_range(job: FinderInput) -> tuple[float, float]:
    if job.zone_s is not None:  # only the clock's error is left: any size within a day
        return job.zone_s - 26 * 3600, job.zone_s + 26 * 3600
    extra = job.offset_s or 0.0
    return SHIFT_RANGE_S[0] + extra, SHIFT_RANGE_S[1] + extra


def find_clock(job: FinderInput, track: Track | None) -> ClockAnswer:
    """The zone and offset at which the photos agree with the track, or why it cannot tell."""
    clues, from_file = _kind(job.clues)
    n = len(clues)
    if n < 3:
        return _cannot(n, f"{n} photo(s) with a camera time: too few to compare with a track")
    if track is None or len(track) < 2:
        return _cannot(n, "no GPX track to compare the photos with")
    with_picture = sum(1 for c in clues if c.picture is not None)
    if with_picture < 3:
        return _cannot(n, "no picture could be read from the photos, so no stop can be seen")
    motion = track_motion(track, job.max_gap)
    alike = neighbours_alike(clues)
    stops = photo_stops(clues, alike)
    counts = {"photo_stops": len(stops), "track_stops": len(motion.stops)}
    span = f"photos {_when(clues[0].seconds)} to {_when(clues[-1].seconds)} camera time"
    if not any(s.closed for s in stops):
        edges = f"; {len(stops)} only next to a break, whose edge is not seen" if stops else ""
        return _cannot(
            n,
            "no stop in the photos: no run of alike photos lasting "
            f"{MIN_PHOTO_STOP_S:g} s between moving ones{edges}, so nothing fixes the clock "
            f"({span})",
            **counts,
        )
    if not motion.stops:
        return _cannot(
            n, f"the track never stands still for {MIN_TRACK_STOP_S:g} s or more", **counts
        )
    low, high = _shift_range(job)
    peaks = _peaks(_votes(stops, motion.stops, low, high))
    candidates = sorted(
        (_evaluate(s, clues, alike, stops, motion) for s in peaks), key=lambda c: -c.score
    )
    candidates = [c for c in candidates if low <= c.shift <= high]
    zone_given = None if from_file else job.zone_s
    if not candidates or candidates[0].matched == 0:
        return _cannot(
            n,
            "the photos' stops line up with none of the track's at any zone and offset "
            f"({span}; track {_when(track.start)} to {_when(track.end)} UTC)",
            **counts,
        )
    best = candidates[0]
    runner = next((c for c in candidates[1:] if abs(c.shift - best.shift) > 10.0), None)
    describe = _describer(motion.lon, zone_given, job.offset_s, from_file)
    if best.inside < 0.2:
        return _cannot(
            n,
            f"the photos fall outside the track for every candidate ({span}; track "
            f"{_when(track.start)} to {_when(track.end)} UTC)",
            best=describe(best),
            **counts,
        )
    others = [c for c in candidates[1:] if abs(c.shift - best.shift) > 10.0]
    confidence = _confidence(best, others)
    zone, offset = split_shift(best.shift, motion.lon, zone_given, job.offset_s)
    offset = round(offset, 1)
    breaks = f", {best.breaks} break(s) in both" if best.breaks else ""
    evidence = (
        f"{best.matched} of {len(stops)} photo stops line up with the track's "
        f"{len(motion.stops)} (spread {best.spread:.1f} s){breaks}, {best.contradictions} "
        f"contradiction(s), {best.inside:.0%} of the photos inside the track"
    )
    answer: dict[str, Any] = {
        "photos": n,
        "shift": best.shift,
        "stops_matched": best.matched,
        "inside": best.inside,
        "zone_from_file": from_file,
        "evidence": evidence,
        "runner_up": describe(runner) if runner is not None else None,
        **counts,
    }
    if runner is not None and runner.score >= best.score - 0.5:
        return _cannot(
            n,
            f"two candidates fit equally well: {_say(describe(best))} and {_say(describe(runner))}",
            confidence=confidence,
            best=describe(best),
            **{k: v for k, v in answer.items() if k != "photos"},
        )
    if confidence < CONFIDENT:
        weak = "only one stop lines up" if best.weight < 2 else "the evidence is weak"
        return _cannot(
            n,
            f"{weak} (confidence {confidence:.2f} < {CONFIDENT}): {evidence}",
            confidence=confidence,
            best=describe(best),
            **{k: v for k, v in answer.items() if k != "photos"},
        )
    tz = None if from_file else format_offset(timedelta(seconds=zone))
    time_offset = round(best.shift, 1) if from_file else offset
    return ClockAnswer(tz, time_offset, confidence, **answer)


def _describer(lon: float, zone_s: float | None, offset_s: float | None, from_file: bool) -> Any:
    def describe(c: Candidate | None) -> dict[str, Any] | None:
        if c is None:
            return None
        if from_file:
            out = _label(None, round(c.shift, 1))
        else:
            zone, offset = split_shift(c.shift, lon, zone_s, offset_s)
            out = _label(zone, round(offset, 1))
        out.update(stops_matched=c.matched, contradictions=c.contradictions)
        return out

    return describe


def _say(c: dict[str, Any] | None) -> str:
    if c is None:
        return "none"
    zone = f"zone {c['tz']}, " if c.get("tz") else ""
    return f"{zone}{behind_text(c['time_offset'])}"


def _confidence(best: Candidate, others: Sequence[Candidate]) -> float:
    """How sure: the best shift's share of the weight of all shifts tried (each weighs
    exp(2·score), and NULL_SHIFTS more stand for the shifts no stop votes for), times what it
    rests on: more matched stops, no contradictions, a tight fit, photos inside the track."""
    weights = sum(math.exp(2.0 * (c.score - best.score)) for c in others)
    share = 1.0 / (1.0 + weights + NULL_SHIFTS * math.exp(-2.0 * best.score))
    evidence = 1.0 - 0.2**best.weight
    consistency = best.weight / (best.weight + best.contradictions)
    tight = 1.0 if best.spread <= 1.5 else 1.5 / best.spread
    inside = min(1.0, best.inside / 0.5)
    return max(0.0, min(1.0, share * evidence * consistency * tight * inside))
