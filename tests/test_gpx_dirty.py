"""GPX files as loggers in vehicles leave them: cut off, with a bad fix, with XML errors mid-file,
with odd times; and every corpus file read like gpxpy reads it."""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.media.gpx import GpxError, load_gpx, parse_time
from tests.corpus import CORPUS
from tests.jpegs import gpx_text

SHARED = CORPUS
GPX_CORPUS = SHARED / "gpx"
T0 = datetime(2024, 6, 1, 8, 0, 0, tzinfo=UTC)


def points(n: int) -> list:
    return [(T0 + timedelta(seconds=i), 52.5 + i * 1e-4, 13.4, 100.0 + i) for i in range(n)]


def write(tmp_path: Path, text: str | bytes, name: str = "t.gpx") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p


def test_a_gpxlogger_log_cut_by_a_power_loss_keeps_every_complete_point(tmp_path: Path) -> None:
    text = gpx_text(points(20))
    cut = text[: text.index("</trkpt>", text.index('lat="52.501500000"')) + 3]  # mid-tag
    track = load_gpx(write(tmp_path, cut))
    assert track.truncated and len(track) == 15
    assert track.notes == [
        f"{tmp_path / 't.gpx'}: ends mid-write; its points up to the cut were used"
    ]


@pytest.mark.parametrize(
    "attrs",
    ['lat="52.5010" lon="180.0000001"', 'lat="NaN" lon="13.4"', 'lat="inf" lon="13.4"'],
)
def test_one_bad_fix_drops_only_that_point(tmp_path: Path, attrs: str) -> None:
    text = gpx_text(points(10)).replace('lat="52.500100000" lon="13.400000000"', attrs)
    track = load_gpx(write(tmp_path, text))
    assert len(track) == 9
    assert track.notes == [f"{tmp_path / 't.gpx'}: points dropped: 1 bad coordinates"]


@pytest.mark.parametrize("ele", ["inf", "1e999", "-Infinity", "nan"])
def test_non_finite_elevations_are_missing(tmp_path: Path, ele: str) -> None:
    text = gpx_text(points(3)).replace("<ele>101.000</ele>", f"<ele>{ele}</ele>")
    track = load_gpx(write(tmp_path, text))
    assert len(track) == 3 and math.isnan(track.eles[1]) and track.eles[2] == 102.0
    pos = track.position_at(track.times[1])
    assert pos is not None and pos.ele is None


def _xml_error_cases() -> dict[str, tuple[bytes, int]]:
    text = gpx_text(points(10))
    lines = text.splitlines(keepends=True)
    nbsp = (
        "".join(lines[:8])
        + lines[8].replace("<ele>", "<name>a&nbsp;b</name><ele>")
        + "".join(lines[9:])
    )
    latin = ("".join(lines[:8]) + lines[8].replace("<ele>", "<name>caf\xe9</name><ele>")).encode(
        "latin-1"
    ) + "".join(lines[9:]).encode()
    second = gpx_text([(t + timedelta(hours=1), la, lo, e) for t, la, lo, e in points(10)])
    in_tag = "".join(lines[:8]) + lines[8].replace("<trkpt ", "<trkpt & ") + "".join(lines[9:])
    return {
        "nbsp": (nbsp.encode(), 9),
        "a point's start tag": (in_tag.encode(), 9),
        "latin-1 byte": (latin, 9),
        "two logs joined with cat": ((text + second).encode(), 15),
    }


@pytest.mark.parametrize("case", sorted(_xml_error_cases()))
def test_an_xml_error_mid_file_keeps_the_points_around_it_and_names_file_and_line(
    tmp_path: Path, case: str
) -> None:
    data, line = _xml_error_cases()[case]
    track = load_gpx(write(tmp_path, data))
    expected = 20 if case.startswith("two") else 9  # the bad point itself is lost
    assert len(track) == expected
    assert not track.truncated
    assert len(track.notes) == 1
    note = track.notes[0]
    assert note.startswith(f"{tmp_path / 't.gpx'}: XML error at line {line}: "), note
    if case.startswith("two"):  # the error is the second log's <?xml>, in no point
        assert "dropped" not in note, note
    else:  # the point the error is in, counted (its start tag too)
        assert note.endswith("; points dropped: 1 XML error"), note


def test_times_per_the_gpx_schema() -> None:
    assert (
        parse_time("2014-2-2T2:23:18-02:00")
        == datetime(2014, 2, 2, 4, 23, 18, tzinfo=UTC).timestamp()
    )
    assert parse_time("2014-02-02T02:23:18\u221202:00") == parse_time("2014-2-2T2:23:18-02:00")
    assert parse_time("2024-06-01T08:00:00.250Z") == T0.timestamp() + 0.25
    assert parse_time("2024-06-01T08:00:00") == T0.timestamp()  # no zone: UTC, as GPX says
    for bad in (
        "2024-06-01",
        "08:00:00",
        "2024-06-01 08:00:00",
        "yesterday",
        "2024-13-01T00:00:00Z",
    ):
        assert parse_time(bad) is None, bad


def test_date_only_times_are_refused_and_counted(tmp_path: Path) -> None:
    text = gpx_text(points(5)).replace("2024-06-01T08:00:02.000Z", "2024-06-01", 1)
    track = load_gpx(write(tmp_path, text))
    assert len(track) == 4
    assert track.notes == [f"{tmp_path / 't.gpx'}: points dropped: 1 unreadable time"]


def test_hostile_nesting_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    deep = "<gpx>" + "<a>" * 1_000_000
    with pytest.raises(GpxError, match="nested deeper"):
        load_gpx(write(tmp_path, deep))


def _gpxpy_points(path: Path) -> list[tuple[float, float, float]] | None:
    gpxpy = pytest.importorskip("gpxpy")
    try:
        g = gpxpy.parse(path.read_text(encoding="utf-8"))
    except Exception:
        return None
    out = []
    for trk in g.tracks:
        for seg in trk.segments:
            out += [(p.time.timestamp(), p.latitude, p.longitude) for p in seg.points if p.time]
    for rte in g.routes:
        out += [(p.time.timestamp(), p.latitude, p.longitude) for p in rte.points if p.time]
    return out


@pytest.mark.skipif(not GPX_CORPUS.is_dir(), reason=f"the GPX corpus is not here ({GPX_CORPUS})")
def test_every_corpus_file_parses_like_gpxpy() -> None:
    files = sorted(GPX_CORPUS.glob("*.gpx"))
    assert files
    compared = 0
    for path in files:
        theirs = _gpxpy_points(path)
        if not theirs:
            continue
        ours = load_gpx(path)
        first: dict[float, tuple[float, float]] = {}
        for t, lat, lon in theirs:
            first.setdefault(t, (lat, lon))
        times = sorted(first)
        assert list(ours.times) == pytest.approx(times, abs=1e-5), path.name  # gpxpy: whole µs
        assert list(ours.lats) == pytest.approx([first[t][0] for t in times]), path.name
        assert list(ours.lons) == pytest.approx([first[t][1] for t in times]), path.name
        compared += 1
    assert compared


def test_geotag_with_an_infinite_elevation_tags_the_photo_and_says_what_it_left_out(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    from daemon.media.exif import read_exif
    from tests.jpegs import make_jpeg

    (tmp_path / "p").mkdir()
    photo = make_jpeg(
        tmp_path / "p" / "a.jpg", capture_time=(T0 + timedelta(seconds=3)).replace(tzinfo=None)
    )
    text = gpx_text(points(5)).replace("<ele>102.000</ele>", "<ele>inf</ele>")
    text = text.replace('lat="52.500400000"', 'lat="NaN"')
    gpx = write(tmp_path, text[: -len("</trkseg></trk></gpx>\n")])
    proc = subprocess.run(
        [sys.executable, "-m", "daemon", "geotag", str(photo.parent), str(gpx), "--tz", "UTC"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert "1 bad coordinates" in out and "ends mid-write" in out, out
    info = read_exif(photo)
    assert info.lat == pytest.approx(52.5003, abs=1e-6)


def _write_big_log(path: Path, n: int, error_at: int | None) -> Path:
    """A 1 Hz log of ``n`` points, one of them holding an undefined entity when ``error_at``."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('<?xml version="1.0" encoding="UTF-8"?>\n<gpx version="1.1" creator="t">')
        fh.write("<trk><trkseg>\n")
        t0 = int(T0.timestamp())
        for i in range(n):
            when = datetime.fromtimestamp(t0 + i, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            name = "<name>a&nbsp;b</name>" if i == error_at else ""
            fh.write(
                f'<trkpt lat="{52.5 + i * 1e-6:.7f}" lon="13.4"><ele>100.0</ele>'
                f"<time>{when}</time>{name}</trkpt>\n"
            )
        fh.write("</trkseg></trk></gpx>\n")
    return path


_PEAK_RSS = """\
import resource, sys
from daemon.media.gpx import load_gpx
track = load_gpx(sys.argv[1])
print(len(track), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, track.notes[:1])
"""


def _load_in_child(path: Path) -> tuple[int, int, str]:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=300,
    ).stdout.split(maxsplit=2)
    return int(out[0]), int(out[1]), out[2]


def test_the_rest_after_an_xml_error_mid_file_is_not_held_in_memory(tmp_path: Path) -> None:
    """400,000 points (44 MB) with an entity error in the middle: the 200,000 after it are read
    point by point as the file streams by, so the peak stays that of the clean file (holding
    the rest, as the reader once did, cost it twice over: ~45 MB more)."""
    n = 400_000
    clean = _write_big_log(tmp_path / "clean.gpx", n, None)
    broken = _write_big_log(tmp_path / "broken.gpx", n, n // 2)
    points_clean, rss_clean, _ = _load_in_child(clean)
    points_broken, rss_broken, note = _load_in_child(broken)
    assert points_clean == n
    assert points_broken == n - 1  # only the point holding the error is lost
    assert f"XML error at line {n // 2 + 3}: undefined entity" in note  # point i: line i + 3
    assert rss_broken - rss_clean < 8 * 1024, (rss_clean, rss_broken)  # KiB
