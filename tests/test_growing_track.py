"""Photos just past the end of a GPS log still being written wait for its next fixes instead of
taking its last one; once the log is finished (closing tags, or no growth for a while) the
usual one-second edge rule applies again. Real JPEGs, the daemon's own log writer, the GPX
library and the batch planning as the processing stage runs them."""

from __future__ import annotations

import dataclasses
import math
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.core.geo import distance_m
from daemon.intake.gpsd import Fix
from daemon.intake.gpslog import TrackWriter
from daemon.journal import FileRow, FileState
from daemon.media.gpx import Track, merge
from daemon.media.nmea import load_track
from daemon.pipeline import PipelineOptions
from daemon.pipeline.plan import BatchPlan
from daemon.runtime.process import GROWING_SECONDS, GpxLibrary, plan_records, read_rows
from tests.jpegs import make_jpeg

T0 = datetime(2024, 6, 1, 7, 0, 0, tzinfo=UTC).timestamp()
LAT, LON = 52.52, 13.40
SPEED = 10.0  # m/s due east
DEG_PER_M = 1.0 / (111_320.0 * math.cos(math.radians(LAT)))
OPTIONS = PipelineOptions(tz="UTC")


def truth(t: float) -> tuple[float, float]:
    return LAT, LON + SPEED * (t - T0) * DEG_PER_M


def log_fixes(writer: TrackWriter, first: int, last: int) -> None:
    for s in range(first, last + 1):
        writer.add(Fix(T0 + s, *truth(T0 + s), 34.0, 3), 9)
    writer.flush()


def photo(folder: Path, seconds: float) -> FileRow:
    """A camera photo without GPS taken ``seconds`` after T0 (camera clock in UTC)."""
    when = datetime.fromtimestamp(T0 + seconds, UTC).replace(tzinfo=None)
    path = make_jpeg(
        folder / f"P{seconds * 10:05.0f}.JPG",
        capture_time=when.replace(microsecond=0),
        subsec=f"{when.microsecond // 1000:03d}",
        seed=int(seconds * 10),
    )
    st = path.stat()
    return FileRow(
        hash=path.name,
        state=FileState.IMPORTED,
        reason=None,
        source_kind="watch",
        source_root=str(folder),
        spool_path=None,
        size=st.st_size,
        mtime=st.st_mtime,
        metadata={},
        sequence_id=None,
        seq_index=None,
        handle=None,
        created_at=st.st_mtime,
        updated_at=st.st_mtime,
        paths=(str(path),),
    )


def plan(library: GpxLibrary, rows: list[FileRow]) -> tuple[BatchPlan, Track | None]:
    """The batch as the processing stage plans it: the library's track of the moment."""
    track = library.build(*library.snapshot())
    records, failed = read_rows(rows, OPTIONS.tz)
    assert not failed
    return plan_records("/photos", rows, records, track, OPTIONS, 3600.0), track


def placed(result: BatchPlan) -> dict[str, float]:
    """Photo → metres from where it really was, of the photos described."""
    out = {}
    for c in result.changes:
        meta = c.fields.get("metadata", {})
        if c.state == FileState.DESCRIBED and "lat" in meta:  # not a duplicate's name only
            when = datetime.fromisoformat(meta["capture_time"]).timestamp()
            out[c.hash] = distance_m(meta["lat"], meta["lon"], *truth(when))
    return out


def waiting(result: BatchPlan) -> dict[str, str]:
    return {
        c.hash: c.reason or "" for c in result.changes if c.state == FileState.WAITING_FOR_POSITION
    }


def register(library: GpxLibrary, log: Path) -> None:
    library.add(f"gpsd:{log}:{log.stat().st_size}", str(log))  # as the GPS stage does


def test_photos_past_the_end_of_the_own_log_wait_and_are_placed_when_it_grows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    writer = TrackWriter(tmp_path / "gps")
    log_fixes(writer, 0, 20)
    assert writer.path is not None
    log = writer.path
    library = GpxLibrary()
    register(library, log)
    inside = [photo(photos, s) for s in (2.5, 6.5, 10.5, 14.5, 18.5)]
    past = [photo(photos, s) for s in (20.2, 20.9)]  # 2 and 9 m past the last fix at 10 m/s

    first, track = plan(library, inside + past)
    assert track is not None and track.open_ends == {T0 + 20}
    near = placed(first)
    assert set(near) == {r.hash for r in inside}
    assert max(near.values()) < 0.5, near
    held = waiting(first)
    assert set(held) == {r.hash for r in past}
    assert all("the GPS log is still being written" in why for why in held.values()), held
    assert "07:00:20 UTC" in held[past[0].hash]
    assert "gpx_points_left_out" not in capsys.readouterr().out  # no end yet: no news

    # The next batch of fixes: the library hears of the growth, the waiting photos come again.
    log_fixes(writer, 21, 40)
    register(library, log)
    again = [r for r in past if r.hash in held]
    second, _ = plan(library, again)
    late = placed(second)
    assert set(late) == {r.hash for r in past}
    assert max(late.values()) < 0.5, late

    # The receiver goes quiet (parked): once the log has not grown for GROWING_SECONDS, a photo
    # just past its end takes the last fix, as for any finished track.
    parked = [photo(photos, 40.5)]
    third, _ = plan(library, parked)
    assert set(waiting(third)) == {parked[0].hash}
    assert not library.note_finished_logs()  # written just now: still growing
    old = log.stat().st_mtime - GROWING_SECONDS - 1
    os.utime(log, (old, old))
    version = library.version
    assert library.note_finished_logs() and library.version == version + 1
    fourth, track = plan(library, parked)
    said = capsys.readouterr().out  # no longer written: its missing end is said
    assert "gpx_points_left_out" in said and "ends mid-write" in said, said
    assert track is not None and track.open_ends == frozenset()
    edge = placed(fourth)
    assert set(edge) == {parked[0].hash}
    assert 4.5 < edge[parked[0].hash] < 5.5  # the last fix, 0.5 s (5 m) behind the truth


def test_a_finished_log_places_a_photo_just_past_its_end_at_once(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    writer = TrackWriter(tmp_path / "gps")
    log_fixes(writer, 0, 10)
    writer.close()  # a clean stop: its closing tags
    assert writer.path is not None
    library = GpxLibrary()
    register(library, writer.path)
    rows = [photo(photos, 4.5), photo(photos, 10.6)]
    result, track = plan(library, rows)
    assert track is not None and not track.can_grow and track.open_ends == frozenset()
    assert not waiting(result)
    assert set(placed(result)) == {r.hash for r in rows}


def test_an_nmea_log_has_no_end_marker_so_only_its_age_finishes_it(tmp_path: Path) -> None:
    def sentence(body: str) -> str:
        check = 0
        for c in body:
            check ^= ord(c)
        return f"${body}*{check:02X}\r\n"

    lines = []
    for s in range(11):
        lat, lon = truth(T0 + s)
        deg = int(lon)
        pos = f"{int(lat)}{(lat - int(lat)) * 60:09.6f},N,{deg:03d}{(lon - deg) * 60:09.6f},E"
        lines.append(sentence(f"GNRMC,0700{s:02d}.00,A,{pos},19.4,90.0,010624,,,A"))
    log = tmp_path / "gpsd.nmea"
    log.write_text("".join(lines), encoding="ascii")
    assert load_track(log).can_grow
    photos = tmp_path / "photos"
    photos.mkdir()
    library = GpxLibrary()
    library.add("nmea", str(log))
    rows = [photo(photos, 10.5)]
    result, _ = plan(library, rows)
    assert set(waiting(result)) == {rows[0].hash}
    old = log.stat().st_mtime - GROWING_SECONDS - 1
    os.utime(log, (old, old))
    assert library.note_finished_logs()
    result, _ = plan(library, rows)
    assert set(placed(result)) == {rows[0].hash}


def test_no_position_is_taken_past_an_open_end_by_extrapolation_or_across_to_another_log() -> None:
    own = Track.from_points((T0 + s, *truth(T0 + s), None) for s in range(11))
    phone = Track.from_points((T0 + s, *truth(T0 + s), None) for s in (14, 18, 22))
    live = merge([own, phone])
    growing = dataclasses.replace(live, open_ends=frozenset({T0 + 10}))
    assert live.position_at(T0 + 10.5) is not None  # finished: the 1 s edge rule
    for t in (T0 + 10.5, T0 + 12.0):  # past the own log's last fix, before the phone's next
        assert growing.position_at(t) is None and growing.growing_past(t) == T0 + 10
    at = growing.position_at(T0 + 10)
    assert at is not None and distance_m(at.lat, at.lon, *truth(T0 + 10)) < 0.01
    assert growing.position_at(T0 + 16) is not None and growing.growing_past(T0 + 16) is None
    assert growing.position_at(T0 + 5.5) is not None and growing.growing_past(T0 + 5.5) is None
