"""`upload` and `process-and-upload` as a user runs them: subprocesses against our server.

Each story starts the embedded server on 127.0.0.1 and points the command at it with
MAPILLARY_GRAPH_API_ENDPOINT / MAPILLARY_UPLOAD_ENDPOINT and MAPILLARY_TOKEN, with config, state
and journal in the test's own folder. Every run's output is checked for the token.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from daemon.server import ServerConfig, ServerThread
from tests.daemon_proc import user_env
from tests.jpegs import make_jpeg, write_gpx

TOKEN = "secret-upload-token-5f2c9a1e77"
BAD_TOKEN = "wrong-token-0badc0ffee9911"
START = datetime(2024, 6, 1, 10, 0, 0)
CLUSTER_LINE = re.compile(r"^sequence (\S+): (\d+) images, cluster (\S+)$", re.M)


@pytest.fixture
def server(tmp_path: Path):
    with ServerThread(ServerConfig(data_dir=tmp_path / "server", tokens=(TOKEN,))) as srv:
        yield srv


def daemon(
    tmp_path: Path, server: ServerThread, *args: str, token: str | None = TOKEN
) -> subprocess.CompletedProcess[str]:
    """``mapillary-daemon ARGS`` with this test's own config/state and the server's endpoints."""
    done = subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        capture_output=True,
        text=True,
        env=user_env(tmp_path, server.environment(), token),
        cwd=tmp_path,
        timeout=120,
    )
    for secret in (TOKEN, BAD_TOKEN):
        assert secret not in done.stdout + done.stderr, "a token was printed"
    return done


def geotagged(folder: Path, count: int, lat0: float, seed: int) -> list[tuple[float, float]]:
    """``count`` photos 11 m apart going north, 2 s apart, with EXIF GPS; their positions."""
    folder.mkdir(parents=True, exist_ok=True)
    points = []
    for i in range(count):
        lat, lon = lat0 + i * 0.0001, 11.5
        make_jpeg(
            folder / f"IMG_{i:04d}.jpg",
            size=(160, 120),
            seed=seed + i,
            capture_time=START + timedelta(seconds=2 * i),
            offset="+00:00",
            lat=lat,
            lon=lon,
            direction=0.0,
        )
        points.append((lat, lon))
    return points


def mapillary_tools_folder(folder: Path, groups: list[int], lat0: float, seed: int) -> list[str]:
    """Photos described the way mapillary_tools 0.14 writes its description file: one compact
    list, absolute ``filename``, ``filesize``/``md5sum``, and sequences named "0", "1", ...
    per folder. Returns the file names in order."""
    folder.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, Any]] = []
    names = []
    index = 0
    for seq, count in enumerate(groups):
        for _ in range(count):
            path = make_jpeg(folder / f"DSC{index:04d}.JPG", size=(160, 120), seed=seed + index)
            when = START + timedelta(minutes=10 * seq, seconds=2 * index)
            entries.append(
                {
                    "MAPCaptureTime": when.strftime("%Y_%m_%d_%H_%M_%S_000"),
                    "MAPCompassHeading": {"MagneticHeading": 90.0, "TrueHeading": 90.0},
                    "MAPDeviceMake": "TestCam",
                    "MAPDeviceModel": "T1",
                    "MAPFilename": path.name,
                    "MAPLatitude": lat0,
                    "MAPLongitude": 8.0 + index * 0.0001,
                    "MAPOrientation": 1,
                    "MAPSequenceUUID": str(seq),
                    "filename": str(path.resolve()),
                    "filesize": path.stat().st_size,
                    "filetype": "image",
                    "md5sum": None,
                }
            )
            names.append(path.name)
            index += 1
    desc = folder / "mapillary_image_description.json"
    desc.write_text(json.dumps(entries, separators=(",", ":"), sort_keys=True))
    return names


def clusters(stdout: str) -> dict[str, tuple[int, str]]:
    """``{sequence uuid: (images, cluster id)}`` from the per-sequence result lines."""
    return {m[1]: (int(m[2]), m[3]) for m in CLUSTER_LINE.finditer(stdout)}


def positions(sequence: dict[str, Any]) -> list[tuple[float, float]]:
    return [(i["lat"], i["lon"]) for i in sequence["images"]]


def approx(points: list[tuple[float, float]]) -> list[Any]:
    return [(pytest.approx(a, abs=1e-6), pytest.approx(b, abs=1e-6)) for a, b in points]


def test_a_processed_folder_uploads_once_and_prints_its_cluster(tmp_path, server) -> None:
    photos = tmp_path / "ride"
    points = geotagged(photos, 5, 48.1, seed=0)
    assert daemon(tmp_path, server, "process", str(photos)).returncode == 0
    done = daemon(tmp_path, server, "upload", str(photos))
    assert done.returncode == 0, done.stderr
    (sequence,) = server.sequences()
    assert clusters(done.stdout) == {next(iter(clusters(done.stdout))): (5, sequence["cluster_id"])}
    assert "1 sequence (5 images) finished, 0 failed" in done.stdout
    assert [i["filename"] for i in sequence["images"]] == [f"IMG_{i:04d}.jpg" for i in range(5)]
    assert positions(sequence) == approx(points)
    before = server.stats()
    assert (before["sequences"], before["images"]) == (1, 5)

    again = daemon(tmp_path, server, "upload", str(photos))
    assert again.returncode == 0, again.stderr
    assert server.stats() == before  # not one request
    assert "nothing to upload (5 already uploaded)" in again.stdout
    assert "upload: 5 photos already uploaded, not sent again" in again.stdout
    assert len(again.stdout.splitlines()) == 2  # a summary, not a line per photo
    assert clusters(again.stdout) == {}


def test_photos_tagged_by_add_tags_upload_from_their_exif(tmp_path, server) -> None:
    photos = tmp_path / "tagged"
    points = geotagged(photos, 4, 48.2, seed=10)
    tag = daemon(tmp_path, server, "add-tags", str(photos), "--tz", "+00:00")
    assert tag.returncode == 0, tag.stderr
    assert not (photos / "mapillary_image_description.json").exists()
    done = daemon(tmp_path, server, "upload", str(photos))
    assert done.returncode == 0, done.stderr
    (sequence,) = server.sequences()
    assert positions(sequence) == approx(points)
    assert list(clusters(done.stdout).values()) == [(4, sequence["cluster_id"])]


def test_a_folder_described_by_mapillary_tools_uploads_its_sequences(tmp_path, server) -> None:
    photos = tmp_path / "mt"
    names = mapillary_tools_folder(photos, [3, 2], 47.0, seed=20)
    # mapillary_tools records a photo it could not use as an error entry; we skip it, saying why.
    desc = photos / "mapillary_image_description.json"
    entries = json.loads(desc.read_text())
    entries.append(
        {
            "error": {"type": "MapillaryGeoTaggingError", "message": "no GPS in the image"},
            "filename": str((photos / "nogps.jpg").resolve()),
            "filetype": "image",
        }
    )
    desc.write_text(json.dumps(entries))
    make_jpeg(photos / "nogps.jpg", size=(160, 120), seed=99)
    done = daemon(tmp_path, server, "upload", str(photos))
    assert done.returncode == 1, done.stderr  # something was set aside
    assert "nogps.jpg: set aside by process: no GPS in the image" in done.stderr
    found = sorted(server.sequences(), key=lambda s: s["images"][0]["filename"])
    assert [[i["filename"] for i in s["images"]] for s in found] == [names[:3], names[3:]]
    assert sorted(n for n, _ in clusters(done.stdout).values()) == [2, 3]
    assert {c for _, c in clusters(done.stdout).values()} == {s["cluster_id"] for s in found}


def test_upload_subfolders_takes_every_described_folder_below(tmp_path, server) -> None:
    rides = tmp_path / "rides"
    geotagged(rides / "a", 3, 48.3, seed=30)
    assert daemon(tmp_path, server, "process", str(rides / "a")).returncode == 0
    geotagged(rides / "b" / "inner", 3, 48.4, seed=40)
    assert daemon(tmp_path, server, "add-tags", str(rides / "b"), "--tz", "+00:00").returncode == 0
    # mapillary_tools names the sequences of every folder "0", "1", ...: two folders, two rides.
    mapillary_tools_folder(rides / "c", [2], 47.1, seed=50)
    mapillary_tools_folder(rides / "d", [2], 47.2, seed=60)

    alone = daemon(tmp_path, server, "upload", str(rides))
    assert server.stats()["sequences"] == 0, alone.stdout
    done = daemon(tmp_path, server, "upload", str(rides), "--upload-subfolders")
    assert done.returncode == 0, done.stderr
    stats = server.stats()
    assert (stats["sequences"], stats["images"]) == (4, 10)
    assert sorted(n for n, _ in clusters(done.stdout).values()) == [2, 2, 3, 3]
    folders = {Path(i["filename"]).stem[:3] for s in server.sequences() for i in s["images"]}
    assert folders == {"IMG", "DSC"}
    lats = sorted(round(s["images"][0]["lat"], 1) for s in server.sequences())
    assert lats == [47.1, 47.2, 48.3, 48.4]


def test_a_dry_run_sends_nothing_and_a_real_run_still_sends_everything(tmp_path, server) -> None:
    photos = tmp_path / "ride"
    geotagged(photos, 3, 48.5, seed=70)
    assert daemon(tmp_path, server, "process", str(photos)).returncode == 0
    mapillary_tools_folder(photos / "more", [2, 2], 47.3, seed=80)
    dry = daemon(tmp_path, server, "upload", str(photos), "--upload-subfolders", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "7 photos in 3 sequences would be uploaded" in dry.stdout
    assert server.stats()["requests"] == 0
    done = daemon(tmp_path, server, "upload", str(photos), "--upload-subfolders")
    assert done.returncode == 0, done.stderr
    assert (server.stats()["sequences"], server.stats()["images"]) == (3, 7)


def test_a_bad_token_stops_with_a_clear_message_and_keeps_everything_queued(
    tmp_path, server
) -> None:
    photos = tmp_path / "ride"
    geotagged(photos, 4, 48.6, seed=90)
    assert daemon(tmp_path, server, "process", str(photos)).returncode == 0
    refused = daemon(tmp_path, server, "upload", str(photos), token=BAD_TOKEN)
    assert refused.returncode == 2
    assert "token was refused" in refused.stderr
    assert "stays queued" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert server.stats()["sequences"] == 0

    missing = daemon(tmp_path, server, "upload", str(photos), token=None)
    assert missing.returncode == 2
    assert "no access token" in missing.stderr

    done = daemon(tmp_path, server, "upload", str(photos))
    assert done.returncode == 0, done.stderr
    assert "not sent again" not in done.stdout  # they were queued, never sent
    assert (server.stats()["sequences"], server.stats()["images"]) == (1, 4)


def test_a_sequence_queued_from_a_parent_folder_is_uploaded_from_its_own_folder(
    tmp_path, server
) -> None:
    rides = tmp_path / "rides"
    geotagged(rides / "a", 3, 48.7, seed=100)
    geotagged(rides / "b", 3, 48.8, seed=110)
    for sub in ("a", "b"):
        assert daemon(tmp_path, server, "process", str(rides / sub)).returncode == 0
    refused = daemon(tmp_path, server, "upload", str(rides), "--upload-subfolders", token=BAD_TOKEN)
    assert refused.returncode == 2  # both folders are queued now, nothing is sent

    one = daemon(tmp_path, server, "upload", str(rides / "a"))
    assert one.returncode == 0, one.stderr
    (sequence,) = server.sequences()
    assert round(sequence["images"][0]["lat"], 1) == 48.7
    rest = daemon(tmp_path, server, "upload", str(rides), "--upload-subfolders")
    assert rest.returncode == 0, rest.stderr
    assert (server.stats()["sequences"], server.stats()["images"]) == (2, 6)
    assert server.stats()["duplicate_images"] == 0


def test_process_and_upload_places_photos_on_a_gpx_track(tmp_path, server) -> None:
    photos = tmp_path / "ride"
    photos.mkdir()
    fixes = [(START + timedelta(seconds=k), 52.5 + k * 0.00005, 13.4, 35.0) for k in range(0, 40)]
    track = write_gpx(tmp_path / "track.gpx", fixes)
    for i in range(6):
        make_jpeg(
            photos / f"P{i:03d}.jpg",
            size=(160, 120),
            seed=200 + i,
            capture_time=START + timedelta(seconds=5 * i + 2),
        )
    done = daemon(
        tmp_path, server, "process-and-upload", str(photos), "--gpx", str(track), "--tz", "+00:00"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (sequence,) = server.sequences()
    want = [(52.5 + (5 * i + 2) * 0.00005, 13.4) for i in range(6)]
    assert positions(sequence) == approx(want)
    assert list(clusters(done.stdout).values()) == [(6, sequence["cluster_id"])]
    before = server.stats()
    again = daemon(
        tmp_path, server, "process-and-upload", str(photos), "--gpx", str(track), "--tz", "+00:00"
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert server.stats() == before


def test_a_token_stored_by_authenticate_is_used_by_upload(tmp_path, server) -> None:
    photos = tmp_path / "ride"
    geotagged(photos, 3, 48.9, seed=300)
    assert daemon(tmp_path, server, "process", str(photos), token=None).returncode == 0
    secret = tmp_path / "token.txt"
    secret.write_text(TOKEN + "\n")
    wrong = tmp_path / "wrong.txt"
    wrong.write_text(BAD_TOKEN + "\n")
    refused = daemon(tmp_path, server, "authenticate", "--token-file", str(wrong), token=None)
    assert refused.returncode == 2 and "nothing saved" in refused.stderr
    login = daemon(tmp_path, server, "authenticate", "--token-file", str(secret), token=None)
    assert login.returncode == 0, login.stderr
    stored = next((tmp_path / "config").rglob("tokens.toml"))
    assert stored.stat().st_mode & 0o777 == 0o600
    done = daemon(tmp_path, server, "upload", str(photos), token=None)
    assert done.returncode == 0, done.stderr
    assert (server.stats()["sequences"], server.stats()["images"]) == (1, 3)


def test_a_photo_that_cannot_be_sent_is_named_in_every_run_and_blocks_nothing(
    tmp_path, server
) -> None:
    photos = tmp_path / "mt"
    names = mapillary_tools_folder(photos, [3, 2], 47.4, seed=400)
    cut = photos / names[1]
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])  # a card pulled mid-write
    first = daemon(tmp_path, server, "upload", str(photos))
    assert first.returncode == 1
    assert names[1] in first.stderr and "truncated JPEG" in first.stderr
    got = [[i["filename"] for i in s["images"]] for s in server.sequences()]
    assert names[3:] in got  # the other sequence is not held back
    assert names[1] not in sum(got, [])
    before = server.stats()
    assert before["duplicate_images"] == 0
    for _ in range(2):  # reruns say it again, send nothing, and never trip over the journal
        again = daemon(tmp_path, server, "upload", str(photos))
        assert again.returncode == 1, again.stderr
        assert names[1] in again.stderr and "not sent again" in again.stdout
        assert server.stats() == before
