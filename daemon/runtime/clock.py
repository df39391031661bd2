"""The daemon's camera clock: the zone and offset a batch's photos are placed with, and what the
photos themselves say about them (``Runtime.clock``, the log, `status`).

With ``tz = "auto"`` or ``time_offset = "auto"`` each batch's clock is found from its photos
(:mod:`daemon.pipeline.clock`) and used only when confident; otherwise its photos wait, with the
reason, for a track that tells (never a guess). With given values the finder still looks, and
when it is confident the photos fit other values it says which, once per batch, leaving the
given values in use.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import tzinfo
from typing import Any

from daemon.media.gpx import Track
from daemon.media.tiny import photo_clues
from daemon.pipeline.clock import (
    ClockAnswer,
    FinderInput,
    behind_text,
    find_clock,
    is_auto,
    needs_clock,
    placed,
    read_again,
    reading_zone,
    zone_seconds,
)
from daemon.pipeline.dates import capture_order, parse_zone
from daemon.pipeline.records import NO_POSITION, ImageRecord

AGREE_S = 2.0  # given values within this of what the photos say agree with them
MIN_PHOTOS = 20  # fewer photos than this are not worth a check of given values
# A check of given values reads this many photos' tiny pictures at most (about an hour of
# shooting, plenty of stops): a 50,000-photo card is not read twice to confirm what it uses.
CHECK_PHOTOS = 2000
# Any zone and clock together move camera times by less than this: a track farther than this
# from every photo cannot fit them at any setting, so the check reads no picture for it.
REACH_S = 30 * 3600


@dataclass
class BatchClock:
    """What a batch is placed with, and what ``Runtime.clock`` says about it."""

    records: list[ImageRecord]
    tz: str | None  # what the records' naive times are read in (None: this machine's zone)
    time_offset: float
    state: dict[str, Any]
    event: tuple[str, dict[str, Any]] | None = None  # a log line to say (name, fields)


def _source(tz: str | None, time_offset: float | str) -> str:
    if is_auto(tz) or is_auto(time_offset):
        return "auto"
    return "config" if tz or time_offset else "default"


def initial_state(tz: str | None, time_offset: float | str) -> dict[str, Any]:
    """``Runtime.clock`` before any batch: the values set (auto ones still unknown)."""
    return {
        "tz": None if is_auto(tz) else tz,
        "time_offset": None if is_auto(time_offset) else float(time_offset),
        "source": _source(tz, time_offset),
        "suggestion": None,
    }


def offset_text(time_offset: float | str) -> str:
    """A time_offset setting for a summary line: ``-3 s`` or ``auto``."""
    return "auto (found from the photos)" if is_auto(time_offset) else f"{float(time_offset):g} s"


def clock_news(state: dict[str, Any] | None) -> str | None:
    """What `run --once` adds to its summary: the clock found, or what the photos say.

    >>> clock_news({"tz": "+02:00", "time_offset": -3.0, "source": "auto", "confidence": 0.95})
    'camera clock found from the photos: zone +02:00, camera 3 s behind (confidence 0.95)'
    >>> clock_news({"tz": None, "time_offset": 0.0, "source": "default", "suggestion": None})
    """
    if not state:
        return None
    hint = state.get("suggestion")
    if hint:
        return f"camera clock: {hint.get('reason')}"
    if state.get("source") == "auto" and state.get("tz") is not None:
        offset = behind_text(state.get("time_offset") or 0.0)
        return (
            f"camera clock found from the photos: zone {state['tz']}, {offset} "
            f"(confidence {state.get('confidence', 0.0):.2f})"
        )
    return None


def _shown(answer: ClockAnswer, photos: int, reason: str) -> dict[str, Any]:
    return {
        "tz": answer.tz,
        "time_offset": answer.time_offset,
        "confidence": round(answer.confidence, 3),
        "photos": photos,
        "reason": reason,
    }


def _wait(records: list[ImageRecord], reason: str) -> list[ImageRecord]:
    """Photos whose true time is unknown wait as photos without a position do."""
    why = f"waiting for the camera clock: {reason}"
    return [
        r.set_aside(NO_POSITION, why) if r.ok and r.time_source != "gps" else r for r in records
    ]


def settle_batch(
    records: list[ImageRecord],
    tz: str | None,
    time_offset: float | str,
    track: Track | None,
    max_gap: float,
) -> BatchClock:
    """The batch's clock (blocking: reads the photos' tiny pictures; call from a worker thread).
    ``records`` were read in :func:`reading_zone` of ``tz``."""
    read_in = reading_zone(tz)
    zone_auto, offset_auto = is_auto(tz), is_auto(time_offset)
    source = _source(tz, time_offset)
    if not (zone_auto or offset_auto):
        state = initial_state(tz, time_offset)
        if track is None or len(records) < MIN_PHOTOS:
            return BatchClock(records, tz, float(time_offset), state)
        return _check(records, read_in, tz, float(time_offset), track, max_gap, state)
    # A zone given: the photos are read in it, each at its own date, only the clock is left.
    if not needs_clock(records):  # every time from a GPS stamp: nothing waits for the clock
        offset = 0.0 if offset_auto else float(time_offset)
        return BatchClock(
            records, "UTC" if zone_auto else tz, offset, initial_state(tz, time_offset)
        )
    clues = photo_clues(records, read_in, zone_known=not zone_auto)
    known_zone = None if zone_auto else 0.0
    known_offset = None if offset_auto else float(time_offset)
    job = FinderInput(clues, zone_s=known_zone, offset_s=known_offset, max_gap=max_gap)
    answer = find_clock(job, track)
    if not answer.found:
        state = {
            "tz": None if zone_auto else tz,
            "time_offset": None if offset_auto else known_offset,
            "source": source,
            "suggestion": _shown(answer, len(clues), f"cannot tell: {answer.reason}"),
        }
        fields: dict[str, Any] = {"photos": len(clues), "reason": answer.reason}
        return BatchClock(  # read in UTC, as the finder read them; they wait
            _wait(records, answer.reason), "UTC", 0.0, state, ("camera_clock_unknown", fields)
        )
    records, new_tz, offset = placed(records, read_in, tz, time_offset, answer)
    state = {
        "tz": new_tz,
        "time_offset": offset,
        "source": "auto",
        "confidence": round(answer.confidence, 3),
        "suggestion": None,
    }
    fields = {
        "tz": new_tz,
        "time_offset": offset,
        "camera": behind_text(offset),
        "confidence": round(answer.confidence, 3),
        "photos": len(clues),
        "evidence": answer.evidence,
    }
    return BatchClock(records, new_tz, offset, state, ("camera_clock_found", fields))


def _within_reach(timed: list[ImageRecord], track: Track) -> bool:
    """Whether some setting of zone and clock could put a photo on the track (cheap: times
    only, before any picture is read)."""
    times = [r.capture_time.timestamp() for r in timed if r.capture_time is not None]
    if not times or not len(track):
        return False
    return min(times) - REACH_S <= track.end and track.start <= max(times) + REACH_S


def _check(
    records: list[ImageRecord],
    read_in: tzinfo,
    tz: str | None,
    time_offset: float,
    track: Track,
    max_gap: float,
    state: dict[str, Any],
) -> BatchClock:
    """Given values, checked: a confident answer that places the photos elsewhere is said."""
    timed = capture_order(records)
    if not _within_reach(timed, track):
        return BatchClock(records, tz, time_offset, state)
    clues = [c for c in photo_clues(timed[:CHECK_PHOTOS], read_in) if not c.from_file]
    if len(clues) < MIN_PHOTOS:
        return BatchClock(records, tz, time_offset, state)
    given_zone = zone_seconds(read_in, clues)
    answer = find_clock(FinderInput(clues, max_gap=max_gap), track)
    if not answer.found or answer.shift is None:
        return BatchClock(records, tz, time_offset, state)
    if abs(answer.shift - (given_zone + time_offset)) <= AGREE_S:
        return BatchClock(records, tz, time_offset, state)
    keep_zone = abs(answer.shift - given_zone) <= 1800  # the zone is right, the clock is not
    zone = (tz or answer.tz) if keep_zone else answer.tz
    offset = round(answer.shift - given_zone, 1) if keep_zone else answer.time_offset
    given = f"zone {tz or 'of this machine'}, {behind_text(time_offset)}"
    reason = (
        f"the photos fit zone {zone}, {behind_text(offset or 0.0)} ({answer.evidence}), "
        f"not the {given} in use"
    )
    suggestion = _shown(answer, len(clues), reason) | {"tz": zone, "time_offset": offset}
    state = state | {"suggestion": suggestion}
    fields = {
        "tz": zone,
        "time_offset": offset,
        "confidence": round(answer.confidence, 3),
        "photos": len(clues),
        "in_use": given,
        "hint": "set tz and time_offset to these (or to auto) to place the photos",
    }
    return BatchClock(records, tz, time_offset, state, ("camera_clock_disagrees", fields))


def found_before(
    records: list[ImageRecord], tz: str | None, time_offset: float | str, earlier: BatchClock
) -> BatchClock:
    """A batch whose photos cannot tell (a card's last few photos, planned apart) takes the
    clock found for the earlier photos of its source, saying so (never a guess: found once)."""
    read_in = reading_zone(tz)
    zone_auto = is_auto(tz)
    new_tz = earlier.tz if zone_auto else tz
    offset = earlier.time_offset if is_auto(time_offset) else float(time_offset)
    if zone_auto:
        records = read_again(records, read_in, parse_zone(new_tz)[0])
    state = earlier.state | {"found_for": "the earlier photos of this source"}
    return BatchClock(records, new_tz, offset, state)


def again(
    records: list[ImageRecord], tz: str | None, time_offset: float | str, earlier: BatchClock
) -> BatchClock:
    """The clock settled for these photos a moment ago (a chunk planned again without its held
    tail), kept without reading their pictures twice."""
    return replace(found_before(records, tz, time_offset, earlier), state=earlier.state)
