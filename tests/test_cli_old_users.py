"""The command line as users of the old scripts and cron jobs meet it: old flag spellings,
duplicates that are no error, a mistyped flag, a closed pipe."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from daemon.cli import build_parser
from daemon.journal import Journal
from daemon.server import ServerConfig, ServerThread
from tests.jpegs import make_jpeg, write_gpx
from tests.test_upload_cmd import START, TOKEN, daemon, geotagged

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(data_dir=tmp_path / "server", tokens=(TOKEN,))) as srv:
        yield srv


def standing_still(folder: Path, seed: int = 0) -> None:
    """Four photos along a street, then three taken at a red light (duplicates); another
    ``seed``, other pictures (new content, not a photo uploaded before)."""
    geotagged(folder, 4, 48.1, seed=10 + seed)
    for i in range(3):
        make_jpeg(
            folder / f"IMG_{4 + i:04d}.jpg",
            size=(160, 120),
            seed=40 + seed + i,
            capture_time=START + timedelta(seconds=8 + 2 * i),
            offset="+00:00",
            lat=48.1 + 3 * 0.0001,
            lon=11.5,
            direction=0.0,
        )


def test_old_flag_spellings_are_accepted_as_ours(tmp_path: Path, server: ServerThread) -> None:
    photos = tmp_path / "ride"
    geotagged(photos, 3, 48.1, seed=0)
    old = daemon(tmp_path, server, "interpolate-direction", str(photos), "--offset_angle", "5")
    assert old.returncode == 0 and "usage:" not in old.stderr, old.stderr
    dry = daemon(tmp_path, server, "upload", str(tmp_path), "--upload_subfolders", "--dry-run")
    assert dry.returncode != 2 and "unrecognized" not in dry.stderr, dry.stderr
    pre = daemon(
        tmp_path, server, "process-and-upload", str(tmp_path / "no"), "--remove_duplicates"
    )
    assert "does not exist" in pre.stderr and "unrecognized" not in pre.stderr, pre.stderr
    down = daemon(
        tmp_path,
        server,
        "download",
        "1",
        "2",
        "3",
        "4",
        "--max_results=10",
        "--image_size=640",
        token=None,
    )
    assert "unrecognized" not in down.stderr, down.stderr
    assert down.stderr.count("image size 640 is not offered; using 1024") == 1


def test_duplicates_are_never_an_error(tmp_path: Path, server: ServerThread) -> None:
    photos = tmp_path / "ride"
    standing_still(photos)
    processed = daemon(tmp_path, server, "process", str(photos))
    assert processed.returncode == 0 and " 3 duplicates" in processed.stdout, processed.stdout
    uploaded = daemon(tmp_path, server, "upload", str(photos))
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    assert server.stats()["images"] == 4
    both = tmp_path / "ride2"
    standing_still(both)
    done = daemon(tmp_path, server, "process-and-upload", str(both))
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_mistyped_flag_shows_the_command_usage_and_the_flag_it_meant(
    tmp_path: Path, server: ServerThread
) -> None:
    typo = daemon(tmp_path, server, "geotag", str(tmp_path), "x.gpx", "--time-ofset", "2")
    assert typo.returncode == 2
    assert "usage: mapillary-daemon geotag" in typo.stderr
    assert "did you mean --time-offset?" in typo.stderr
    # Before the positional arguments, where argparse would take "2" for PATH and complain
    # of a missing GPX instead.
    first = daemon(tmp_path, server, "geotag", "--time-ofset", "2", str(tmp_path), "x.gpx")
    assert first.returncode == 2 and "did you mean --time-offset?" in first.stderr, first.stderr
    alone = daemon(tmp_path, server, "geotag", "--time-ofset", "2")
    assert alone.returncode == 2 and "did you mean --time-offset?" in alone.stderr, alone.stderr
    assert "usage: mapillary-daemon geotag" in alone.stderr


def test_status_into_a_closed_pipe_prints_no_traceback(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite3"
    Journal.open(journal).close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "status", "--journal", str(journal)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # as `| head -0` does, before it writes
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 0 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_run_once_without_a_token_exits_2_like_upload(tmp_path: Path, server: ServerThread) -> None:
    inbox = tmp_path / "inbox"
    geotagged(inbox, 3, 48.1, seed=60)
    work = tmp_path / "work"
    args = ["--journal", str(work / "j.sqlite3"), "--spool", str(work / "spool")]
    args += ["--watch", str(inbox), "--tz", "+00:00", "--settle-seconds", "0.3"]
    done = daemon(
        tmp_path, server, "run", "--once", *args, "--batch-quiet-seconds", "1", token=None
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert server.stats()["images"] == 0


def test_process_names_reasons_in_words_and_counts_one_photo_singular(
    tmp_path: Path, server: ServerThread
) -> None:
    photos = tmp_path / "ride"
    geotagged(photos, 3, 48.1, seed=70)
    make_jpeg(photos / "IMG_0009.jpg", size=(160, 120), seed=79, capture_time=START)
    done = daemon(tmp_path, server, "process", str(photos))
    assert "set aside, no position: 1" in done.stdout, done.stdout
    assert "Mapillary" not in done.stdout.replace("mapillary_image_description", "")
    split = daemon(tmp_path, server, "sequence-split", str(photos), "100000")
    assert "(1 photos)" not in split.stdout + split.stderr
    # With a GPX track: the photo outside it is labelled as geotag labels it.
    timed = tmp_path / "timed"
    timed.mkdir()
    for i, seconds in enumerate((0, 2, 4, 3600)):
        make_jpeg(
            timed / f"IMG_{i:04d}.jpg",
            size=(160, 120),
            seed=100 + i,
            capture_time=START + timedelta(seconds=seconds),
            offset="+00:00",
        )
    track = [(START + timedelta(seconds=t), 48.1 + t * 1e-5, 11.5, None) for t in range(10)]
    gpx = write_gpx(tmp_path / "track.gpx", track)
    outside = daemon(tmp_path, server, "process", str(timed), "--gpx", str(gpx))
    assert "set aside, outside the GPX track: 1" in outside.stdout, outside.stdout
    tagged = daemon(tmp_path, server, "geotag", str(timed), str(gpx))
    assert "set aside, outside the GPX track: 1" in tagged.stdout, tagged.stdout
    assert "Error" not in outside.stdout + tagged.stdout


def test_help_pages_explain_every_argument(tmp_path: Path, server: ServerThread) -> None:
    shown = daemon(tmp_path, server, "config", "--help").stdout
    assert "(default: None)" not in shown
    split = " ".join(daemon(tmp_path, server, "sequence-split", "--help").stdout.split())
    assert "in metres (100.0)" in split and "1.5 times the usual interval" in split


def test_upload_subfolders_after_split_and_process_sends_all_and_complains_of_nothing(
    tmp_path: Path, server: ServerThread
) -> None:
    photos = tmp_path / "ride"
    geotagged(photos, 4, 48.1, seed=80)
    assert daemon(tmp_path, server, "sequence-split", str(photos), "5").returncode == 0
    assert (photos / "0").is_dir() and (photos / "1").is_dir()
    assert daemon(tmp_path, server, "process", str(photos)).returncode == 0
    done = daemon(tmp_path, server, "upload", str(photos), "--upload-subfolders")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no Mapillary description" not in done.stdout + done.stderr
    assert server.stats()["images"] == 4


PLURAL_OF_ONE = re.compile(r"\b1 (photos|images|sequences|duplicates|files)\b")


def test_one_photo_is_counted_in_the_singular_by_the_old_scripts_commands(
    tmp_path: Path, server: ServerThread
) -> None:
    one = tmp_path / "one"
    geotagged(one, 1, 48.1, seed=90)
    stop = tmp_path / "stop"
    geotagged(stop, 5, 48.2, seed=91)
    make_jpeg(  # a second photo where the last one was taken: one duplicate
        stop / "IMG_0005.jpg",
        size=(160, 120),
        seed=96,
        capture_time=START + timedelta(seconds=10),
        offset="+00:00",
        lat=48.2 + 4 * 0.0001,
        lon=11.5,
        direction=0.0,
    )
    runs = [
        ("add-tags", str(one)),
        ("process", str(one), "--desc-path", str(tmp_path / "one.json")),
        ("interpolate-direction", str(one)),
        ("remove-duplicates", str(stop), "--window", "0", "--dry-run"),
        ("sequence-split", str(one), "100", "--dry-run"),
    ]
    for args in runs:
        done = daemon(tmp_path, server, *args)
        said = done.stdout + done.stderr
        assert done.returncode == 0 and not PLURAL_OF_ONE.search(said), (args, said)
        assert "(1 photo)" in said or "1 image" in said or "1 duplicate" in said, (args, said)


def test_every_argument_of_every_command_is_explained_and_run_names_its_defaults() -> None:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    unexplained = []
    for name, command in commands.choices.items():
        for action in command._actions:
            text = (action.help or "").strip()
            if not isinstance(action, argparse._HelpAction) and (
                not text or text.startswith("(") or text.startswith("default")
            ):
                unexplained.append((name, action.option_strings or action.dest))
    assert unexplained == []
    run = commands.choices["run"]
    switches = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._HelpAction)
    silent = [
        a.option_strings
        for a in run._actions
        if not isinstance(a, switches) and not re.search(r"\(.*\)", a.help or "")
    ]
    assert silent == [], "run options that do not say their default"
