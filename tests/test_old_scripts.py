"""Every invocation the old scripts documented, run as our `mapillary-daemon` with the same
arguments: the installed command as a real subprocess, on real JPEGs and GPX files in the
test's folder, uploads and downloads against the embedded server on 127.0.0.1.

``ROWS`` is the README's table "For users of the old scripts", row for row: the old
invocation, our command (the template each story runs, placeholders filled in, ``[...]``
parts left out or put in), and the exit codes the story shows. The last test reads the README
and fails when the table and ``ROWS`` differ, so neither can drift from the other.
"""

from __future__ import annotations

import doctest
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import piexif
import pytest

from daemon.core import words
from daemon.core.geo import angle_diff_deg, distance_m
from daemon.server import ServerConfig, ServerThread
from tests.jpegs import make_jpeg, write_gpx
from tests.test_cli_old_users import standing_still
from tests.test_upload_cmd import START, TOKEN, geotagged

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BINARY = Path(sys.executable).with_name("mapillary-daemon")  # pip install -e . puts it there
SECTION = "### For users of the old scripts"
PASSWORD = "old-script-password-7c1e55"


@dataclass(frozen=True)
class Row:
    ours: str  # one command, or "`a`, then `b`" in the README (two commands, in order)
    codes: tuple[int, ...]


ROWS: dict[str, Row] = {
    "add_fix_dates.py PATH '2014-11-27 13:01:01' 2": Row(
        "fix-dates PATH '2014-11-27 13:01:01' 2", (0, 2)
    ),
    "add_mapillary_tag_from_exif PATH [sequence_id]": Row("add-tags PATH [sequence_id]", (0, 1)),
    "add_project.py PATH project_name": Row("add-project PATH project_name", (0, 1)),
    "geotag_from_gpx.py PATH gpx_file --time-offset N": Row(
        "geotag PATH gpx_file --time-offset N", (0, 1)
    ),
    "interpolate_direction.py PATH --offset_angle N": Row(
        "interpolate-direction PATH --offset_angle N", (0, 2)
    ),
    "remove_duplicates.py [-d M] SRC [DUP]": Row("remove-duplicates [-d M] SRC [DUP]", (0, 2)),
    "remove_duplicates.py -h": Row("remove-duplicates -h", (0,)),
    "sequence_split.py PATH cutoff_distance [cutoff_time]": Row(
        "sequence-split PATH cutoff_distance [cutoff_time]", (0, 2)
    ),
    "upload.py PATH [--upload_subfolders]": Row("upload PATH [--upload_subfolders]", (0, 1, 2)),
    "NUMBER_THREADS=2 MAX_ATTEMPTS=100 upload.py PATH": Row(
        "NUMBER_THREADS=2 MAX_ATTEMPTS=100 upload PATH", (0, 2)
    ),
    "upload_with_authentication.py PATH": Row("authenticate`, then `upload PATH", (0, 2)),
    "upload_with_preprocessing.py PATH [--remove_duplicates]": Row(
        "process-and-upload PATH [--remove_duplicates]", (0, 2)
    ),
    "download_images.py min_lat max_lat min_lon max_lon [--max_results=N] [--image_size=S]": Row(
        "download min_lat max_lat min_lon max_lon [--max_results=N] [--image_size=S]", (0, 2)
    ),
}


@dataclass
class Story:
    """One row's story: runs its command as the user would, records the exit codes seen."""

    row: Row
    tmp: Path
    server: ServerThread
    seen: set[int] = field(default_factory=set)

    def env(self, token: str | None, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAPILLARY")}
        env.update(
            self.server.environment(),
            HOME=str(self.tmp / "home"),
            XDG_CONFIG_HOME=str(self.tmp / "config"),
            XDG_STATE_HOME=str(self.tmp / "state"),
            XDG_DATA_HOME=str(self.tmp / "data"),
        )
        if token is not None:
            env["MAPILLARY_TOKEN"] = token
        return {**env, **extra}

    def run(
        self,
        values: dict[str, str],
        expect: int,
        *,
        optional: bool = False,
        step: int = 0,
        token: str | None = TOKEN,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """The row's command (``step`` of "`a`, then `b`"), its placeholders replaced by
        ``values``, with its ``[...]`` parts when ``optional``; it must exit ``expect``."""
        argv = command_line(self.row.ours.split("`, then `")[step], values, optional)
        variables = {}
        while argv and re.fullmatch(r"[A-Z_]+=\S*", argv[0]):
            name, _, value = argv.pop(0).partition("=")
            variables[name] = value
        done = subprocess.run(
            [str(BINARY), *argv],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env(token, {**variables, **(env or {})}),
            cwd=self.tmp,
            timeout=120,
        )
        assert TOKEN not in done.stdout + done.stderr, "a token was printed"
        assert PASSWORD not in done.stdout + done.stderr, "the old password was printed"
        assert done.returncode == expect, (argv, done.stdout, done.stderr)
        self.seen.add(done.returncode)
        return done

    def mly(self, *args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
        """One of our commands that is not the row's (to prepare what the row works on)."""
        done = subprocess.run(
            [str(BINARY), *args],
            capture_output=True,
            text=True,
            env=self.env(token, {}),
            cwd=self.tmp,
            timeout=120,
        )
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done


def command_line(template: str, values: dict[str, str], optional: bool) -> list[str]:
    """
    >>> command_line("upload PATH [--upload_subfolders]", {"PATH": "/x y"}, False)
    ['upload', '/x y']
    >>> command_line("remove-duplicates [-d M] SRC [DUP]", {"M": "3", "SRC": "a", "DUP": "b"}, True)
    ['remove-duplicates', '-d', '3', 'a', 'b']
    >>> command_line("download [--max_results=N]", {"N": "2"}, True)
    ['download', '--max_results=2']
    """
    text = re.sub(r"\[([^]]*)\]", r"\1" if optional else "", template)
    out = []
    for word in shlex.split(text):
        name, eq, value = word.partition("=")
        if eq and value in values:
            word = f"{name}={values[value]}"
        out.append(values.get(word, word))
    return out


STORIES: dict[str, Callable[[Story], None]] = {}


def story(old: str) -> Callable[[Callable[[Story], None]], Callable[[Story], None]]:
    def register(fn: Callable[[Story], None]) -> Callable[[Story], None]:
        STORIES[old] = fn
        return fn

    return register


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(data_dir=tmp_path / "server", tokens=(TOKEN,))) as srv:
        yield srv


@pytest.mark.parametrize("old", list(ROWS))
def test_the_old_invocation_works_as_our_command(
    old: str, tmp_path: Path, server: ServerThread
) -> None:
    if not BINARY.exists():
        pytest.fail(f"{BINARY} is missing: install the package (pip install -e .)")
    s = Story(ROWS[old], tmp_path, server)
    STORIES[old](s)
    assert s.seen == set(s.row.codes), f"the story showed exit codes {s.seen}, the row says so"


# -- EXIF read back with piexif, not through our reader ------------------------------------------


def ratio(v: tuple[int, int]) -> float:
    return v[0] / v[1]


def exif_of(path: Path) -> dict[str, Any]:
    return piexif.load(str(path))


def described(path: Path) -> dict[str, Any]:
    raw = exif_of(path)["0th"].get(piexif.ImageIFD.ImageDescription)
    return json.loads(raw) if raw else {}


def latlon(path: Path) -> tuple[float, float] | None:
    gps = exif_of(path)["GPS"]
    if piexif.GPSIFD.GPSLatitude not in gps:
        return None

    def deg(v: tuple[tuple[int, int], ...]) -> float:
        d, m, sec = (ratio(x) for x in v)
        return d + m / 60 + sec / 3600

    return deg(gps[piexif.GPSIFD.GPSLatitude]), deg(gps[piexif.GPSIFD.GPSLongitude])


def heading(path: Path) -> float:
    return ratio(exif_of(path)["GPS"][piexif.GPSIFD.GPSImgDirection])


def undated(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [make_jpeg(folder / n, size=(96, 64), seed=i) for i, n in enumerate(names)]


# -- the stories, one per row ----------------------------------------------------------------------


@story("add_fix_dates.py PATH '2014-11-27 13:01:01' 2")
def fix_dates(s: Story) -> None:
    photos = s.tmp / "timelapse"
    undated(photos, ["IMG_2.jpg", "IMG_10.jpg", "IMG_1.jpg"])
    s.run({"PATH": str(photos)}, 0)
    taken = {
        p.name: exif_of(p)["Exif"][piexif.ExifIFD.DateTimeOriginal].decode()
        for p in photos.iterdir()
    }
    # Natural order (1, 2, 10), 2 s apart, as the old script numbered them.
    assert taken == {
        "IMG_1.jpg": "2014:11:27 13:01:01",
        "IMG_2.jpg": "2014:11:27 13:01:03",
        "IMG_10.jpg": "2014:11:27 13:01:05",
    }
    s.run({"PATH": str(s.tmp / "nowhere")}, 2)


@story("add_mapillary_tag_from_exif PATH [sequence_id]")
def add_tags(s: Story) -> None:
    old_env = {
        "MAPILLARY_USERNAME": "alice",
        "MAPILLARY_EMAIL": "alice@example.org",
        "MAPILLARY_PASSWORD": PASSWORD,
    }
    photos = s.tmp / "ride"
    geotagged(photos, 3, 48.1, seed=1)
    done = s.run({"PATH": str(photos)}, 0, env=old_env)
    assert "MAPILLARY_PASSWORD is not used" in done.stdout, done.stdout
    descriptions = [described(p) for p in sorted(photos.glob("*.jpg"))]
    assert {d["MAPSettingsUsername"] for d in descriptions} == {"alice"}
    assert {d["MAPSettingsEmail"] for d in descriptions} == {"alice@example.org"}
    assert len({d["MAPSequenceUUID"] for d in descriptions}) == 1
    for p in photos.glob("*.jpg"):
        assert PASSWORD.encode() not in p.read_bytes()
    # The old script's second argument: one sequence id for every photo. A photo without a
    # position is set aside (exit 1) and left as it was.
    again = s.tmp / "ride2"
    geotagged(again, 2, 48.2, seed=5)
    bare = make_jpeg(again / "IMG_0009.jpg", size=(96, 64), seed=9, capture_time=START)
    before = bare.read_bytes()
    uuid = "5d3f1c9e-8a7b-4c2d-9e1f-0a1b2c3d4e5f"
    done = s.run({"PATH": str(again), "sequence_id": uuid}, 1, optional=True, env=old_env)
    assert "IMG_0009.jpg" in done.stderr + done.stdout
    assert bare.read_bytes() == before
    assert {described(p)["MAPSequenceUUID"] for p in again.glob("IMG_000[01].jpg")} == {uuid}


@story("add_project.py PATH project_name")
def add_project(s: Story) -> None:
    photos = s.tmp / "ride"
    geotagged(photos, 3, 48.1, seed=11)
    s.mly("add-tags", str(photos), "--username", "alice")
    s.run({"PATH": str(photos), "project_name": "Bike lanes of Berlin"}, 0)
    projects = {described(p)["MAPSettingsProject"] for p in photos.glob("*.jpg")}
    assert projects == {"Bike lanes of Berlin"}
    untagged = make_jpeg(photos / "IMG_0100.jpg", size=(96, 64), seed=99, capture_time=START)
    done = s.run({"PATH": str(photos), "project_name": "Other"}, 1)
    assert "IMG_0100.jpg" in done.stdout + done.stderr
    assert described(untagged) == {}


@story("geotag_from_gpx.py PATH gpx_file --time-offset N")
def geotag(s: Story) -> None:
    photos = s.tmp / "ride"
    photos.mkdir()
    ahead = 30  # the camera clock runs 30 s ahead of GPS time
    truth = []
    for i in range(4):
        when = START + timedelta(seconds=4 * i)
        make_jpeg(
            photos / f"IMG_{i:04d}.jpg",
            size=(96, 64),
            seed=20 + i,
            capture_time=when + timedelta(seconds=ahead),
            offset="+00:00",
        )
        truth.append((48.1 + 4 * i * 0.00001, 11.5))
    track = [(START + timedelta(seconds=t), 48.1 + t * 0.00001, 11.5, 500.0) for t in range(13)]
    gpx = write_gpx(s.tmp / "track.gpx", track)
    values = {"PATH": str(photos), "gpx_file": str(gpx), "N": str(ahead)}
    s.run(values, 0)
    for i, (lat, lon) in enumerate(truth):
        got = latlon(photos / f"IMG_{i:04d}.jpg")
        assert got is not None and distance_m(*got, lat, lon) < 0.5, (i, got)
    late = make_jpeg(
        photos / "IMG_0050.jpg",
        size=(96, 64),
        seed=50,
        capture_time=START + timedelta(hours=2),
        offset="+00:00",
    )
    done = s.run(values, 1)
    assert "IMG_0050.jpg" in done.stderr and "outside the GPX track" in done.stderr + done.stdout
    assert latlon(late) is None


@story("interpolate_direction.py PATH --offset_angle N")
def interpolate_direction(s: Story) -> None:
    photos = s.tmp / "side-camera"
    geotagged(photos, 4, 48.1, seed=30)  # going north
    s.run({"PATH": str(photos), "N": "90"}, 0)
    for p in photos.glob("*.jpg"):
        assert angle_diff_deg(heading(p), 90.0) < 1.0, (p.name, heading(p))
    s.run({"PATH": str(s.tmp / "nowhere"), "N": "90"}, 2)


@story("remove_duplicates.py [-d M] SRC [DUP]")
def remove_duplicates(s: Story) -> None:
    stop = {f"IMG_{i:04d}.jpg" for i in range(3, 7)}  # where the camera stood
    for n, (optional, name) in enumerate(((False, "plain"), (True, "given"))):
        src = s.tmp / name
        standing_still(src, seed=100 * n)
        dup = s.tmp / f"{name}-dups"
        s.run({"M": "3", "SRC": str(src), "DUP": str(dup)}, 0, optional=optional)
        moved_to = dup if optional else src / "duplicates"
        moved = {p.name for p in moved_to.glob("*.jpg")}
        kept = {p.name for p in src.glob("*.jpg")}
        assert len(moved) >= 2 and moved <= stop, moved
        assert len(moved | kept) == 7 and not moved & kept
    s.run({"M": "3", "SRC": str(s.tmp / "nowhere"), "DUP": str(s.tmp / "d")}, 2)


@story("remove_duplicates.py -h")
def remove_duplicates_help(s: Story) -> None:
    shown = s.run({}, 0).stdout
    assert "usage: mapillary-daemon remove-duplicates" in shown
    assert "-d METERS" in shown and "SRC [DUPLICATE_DIR]" in shown


@story("sequence_split.py PATH cutoff_distance [cutoff_time]")
def sequence_split(s: Story) -> None:
    for optional in (False, True):
        photos = s.tmp / f"ride-{optional}"
        geotagged(photos, 3, 48.1, seed=40)
        for i in range(3):  # five minutes later, further up the same street
            make_jpeg(
                photos / f"IMG_{10 + i:04d}.jpg",
                size=(96, 64),
                seed=50 + i,
                capture_time=START + timedelta(minutes=5, seconds=2 * i),
                offset="+00:00",
                lat=48.1 + (3 + i) * 0.0001,
                lon=11.5,
            )
        cutoffs = {"cutoff_distance": "100", "cutoff_time": "60"}
        s.run({"PATH": str(photos), **cutoffs}, 0, optional=optional)
        groups = sorted(sorted(p.name for p in d.glob("*.jpg")) for d in photos.iterdir())
        assert groups == [
            ["IMG_0000.jpg", "IMG_0001.jpg", "IMG_0002.jpg"],
            ["IMG_0010.jpg", "IMG_0011.jpg", "IMG_0012.jpg"],
        ], groups
        assert sorted(d.name for d in photos.iterdir()) == ["0", "1"]
    s.run({"PATH": str(photos), "cutoff_distance": "0"}, 2)


@story("upload.py PATH [--upload_subfolders]")
def upload(s: Story) -> None:
    ride = s.tmp / "rides" / "monday"
    geotagged(ride, 3, 48.1, seed=60)
    s.mly("process", str(ride))
    s.run({"PATH": str(ride)}, 2, token=None)  # no token: exit 2, nothing sent
    assert s.server.stats()["images"] == 0
    s.run({"PATH": str(ride)}, 0)
    assert s.server.stats()["images"] == 3 and s.server.stats()["sequences"] == 1
    tuesday = s.tmp / "rides" / "tuesday"
    geotagged(tuesday, 2, 48.3, seed=70)
    make_jpeg(tuesday / "IMG_0099.jpg", size=(96, 64), seed=79, capture_time=START)
    processed = subprocess.run(
        [str(BINARY), "process", str(tuesday)], env=s.env(None, {}), capture_output=True
    )
    assert processed.returncode == 1  # the photo without a position is marked an error
    done = s.run({"PATH": str(s.tmp / "rides")}, 1, optional=True)
    assert "IMG_0099.jpg" in done.stderr, done.stderr
    assert s.server.stats()["images"] == 5 and s.server.stats()["sequences"] == 2


@story("NUMBER_THREADS=2 MAX_ATTEMPTS=100 upload.py PATH")
def upload_threads(s: Story) -> None:
    ride = s.tmp / "ride"
    geotagged(ride, 5, 48.1, seed=80)
    s.mly("process", str(ride))
    s.run({"PATH": str(ride)}, 0)
    assert s.server.stats()["images"] == 5
    shown = subprocess.run(
        [str(BINARY), "config", "show"],
        capture_output=True,
        text=True,
        env=s.env(None, {"NUMBER_THREADS": "2", "MAX_ATTEMPTS": "100"}),
        cwd=s.tmp,
        timeout=60,
    ).stdout
    assert "concurrency = 2" in shown and "max_attempts = 100" in shown, shown
    done = s.run({"PATH": str(ride), "NUMBER_THREADS=2": "NUMBER_THREADS=0"}, 2)
    assert "NUMBER_THREADS" in done.stderr, done.stderr


@story("upload_with_authentication.py PATH")
def upload_with_authentication(s: Story) -> None:
    ride = s.tmp / "ride"
    geotagged(ride, 3, 48.1, seed=90)
    s.mly("process", str(ride))
    refused = s.run({}, 2, token=None, stdin="not-the-token\n")
    assert "nothing saved" in refused.stderr, refused.stderr
    s.run({}, 0, token=None, stdin=TOKEN + "\n")
    s.run({"PATH": str(ride)}, 0, step=1, token=None)  # the stored token, no MAPILLARY_TOKEN
    assert s.server.stats()["images"] == 3


@story("upload_with_preprocessing.py PATH [--remove_duplicates]")
def upload_with_preprocessing(s: Story) -> None:
    for n, optional in enumerate((False, True)):
        ride = s.tmp / f"ride{n}"
        standing_still(ride, seed=100 * n)
        done = s.run({"PATH": str(ride)}, 0, optional=optional)
        assert "3 duplicates" in done.stdout, done.stdout
        assert s.server.stats()["images"] == 4 * (n + 1)
    s.run({"PATH": str(s.tmp / "nowhere")}, 2, optional=True)


@story("download_images.py min_lat max_lat min_lon max_lon [--max_results=N] [--image_size=S]")
def download(s: Story) -> None:
    ride = s.tmp / "ride"
    geotagged(ride, 3, 48.1, seed=100)
    s.mly("process-and-upload", str(ride))
    box = {"min_lat": "48.09", "max_lat": "48.11", "min_lon": "11.49", "max_lon": "11.51"}
    s.run(box, 0)
    assert len(list((s.tmp / "mapillary_images").rglob("*.jpg"))) == 3
    out = s.tmp / "mapillary_images"
    for p in out.rglob("*.jpg"):
        p.unlink()
    for size, said in (("640", True), ("320", True), ("2048", False)):
        done = s.run({**box, "N": "2", "S": size}, 0, optional=True)
        notice = f"image size {size} is not offered; using 1024"
        assert done.stderr.count(notice) == (1 if said else 0), (size, done.stderr)
        assert len(list(out.rglob("*.jpg"))) == 2
        for p in out.rglob("*.jpg"):
            p.unlink()
    s.run({**box, "N": "2", "S": "640"}, 2, optional=True, token=None)


# -- the README's table is this module's ROWS --------------------------------------------------


def readme_rows() -> dict[str, Row]:
    text = README.read_text(encoding="utf-8")
    assert SECTION in text
    section = text.split(SECTION, 1)[1].split("\n#", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) != 3 or not cells[0].startswith("`"):
            continue
        old = cells[0].split("`")[1]
        ours = cells[1].strip("`")
        codes = tuple(int(c) for c in re.findall(r"(?:^|; )(\d)\b", cells[2]))
        rows[old] = Row(ours, codes)
    return rows


def test_the_readme_table_lists_exactly_the_tested_invocations() -> None:
    assert readme_rows() == ROWS
    assert set(STORIES) == set(ROWS)


def test_doctests() -> None:
    for module in (sys.modules[__name__], words):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
