"""The official client, mapillary_tools 0.14.7, uploads to our embedded server.

The tool is installed once into its own cached venv (tests/tools.py) and pointed at the server
with the two endpoint variables it reads at import (MAPILLARY_GRAPH_API_ENDPOINT,
MAPILLARY_UPLOAD_ENDPOINT). What the server recorded must be the photos' own positions.
"""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.server import ServerConfig, ServerThread
from tests import tools
from tests.jpegs import make_jpeg, write_gpx

TOKEN = "compat-token-0123456789abcdef"
START = datetime(2024, 6, 1, 10, 0, 0)  # naive camera time; the tool runs with TZ=UTC
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mapillary_tools() -> str:
    tool = tools.mapillary_tools_bin()
    if tool is None:
        pytest.skip(
            f"mapillary_tools {tools.MAPILLARY_TOOLS_VERSION} could not be installed "
            f"(no package registry?): {tools.last_failure}"
        )
    return tool


def _run_tool(tool: str, server: ServerThread, home: Path, photos: Path, *extra: str) -> str:
    """`authenticate`, then `process_and_upload` of ``photos``; the tool's combined output."""
    env = {
        **os.environ,
        **server.environment(),
        "HOME": str(home),
        "TZ": "UTC",
        "MAPILLARY_CONFIG_PATH": str(home / "mt-config"),
        "MAPILLARY_TOOLS_UPLOAD_CACHE_DIR": str(home / "mt-cache"),
        "MAPILLARY_UPLOAD_HISTORY_PATH": str(home / "mt-history"),
        "MAPILLARY_DISABLE_API_LOGGING": "YES",
    }
    login = [tool, "authenticate", "--user_name", "tester", "--jwt", TOKEN]
    done = subprocess.run(login, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    upload = [tool, "process_and_upload", str(photos), "--user_name", "tester", *extra]
    done = subprocess.run(upload, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def _ms(t: datetime) -> int:
    return int(t.replace(tzinfo=UTC).timestamp() * 1000)


def test_geotagged_photos_arrive_through_dropped_connections(
    mapillary_tools: str, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    points = [(48.1 + i * 0.0002, 11.5 + i * 0.0003) for i in range(5)]
    for i, (lat, lon) in enumerate(points):
        make_jpeg(
            photos / f"IMG_{i:04d}.jpg",
            size=(320, 240),
            seed=i,
            capture_time=START + timedelta(seconds=2 * i),
            lat=lat,
            lon=lon,
        )
    config = ServerConfig(data_dir=tmp_path / "data", tokens=(TOKEN,), drop_rate=0.5, seed=1)
    with ServerThread(config) as server:
        _run_tool(mapillary_tools, server, tmp_path / "home", photos)
        stats = server.stats()
        (sequence,) = server.sequences()
    assert (stats["sequences"], stats["images"]) == (1, 5)
    assert stats["duplicate_images"] == stats["duplicate_sequences"] == 0
    assert stats["faults_injected"] >= 1  # the tool did resume dropped bodies
    images = sequence["images"]
    assert [i["filename"] for i in images] == [f"IMG_{i:04d}.jpg" for i in range(5)]
    for image, (lat, lon) in zip(images, points, strict=True):
        assert (image["lat"], image["lon"]) == (
            pytest.approx(lat, abs=1e-6),
            pytest.approx(lon, abs=1e-6),
        )
    assert [i["captured_at"] for i in images] == [
        _ms(START + timedelta(seconds=2 * i)) for i in range(5)
    ]


def test_photos_geotagged_from_a_gpx_track_arrive_at_interpolated_positions(
    mapillary_tools: str, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    # A fix every 2 s; each photo is taken half-way between two fixes.
    fixes = [
        (START + timedelta(seconds=2 * k), 52.5 + k * 0.0001, 13.4 - k * 0.0002, 40.0 + k)
        for k in range(8)
    ]
    write_gpx(tmp_path / "track.gpx", fixes)
    for i in range(6):
        make_jpeg(
            photos / f"DSC{i:03d}.jpg",
            size=(320, 240),
            seed=10 + i,
            capture_time=START + timedelta(seconds=2 * i + 1),
        )
    with ServerThread(ServerConfig(data_dir=tmp_path / "data", tokens=(TOKEN,))) as server:
        gpx = ["--geotag_source", "gpx", "--geotag_source_path", str(tmp_path / "track.gpx")]
        _run_tool(mapillary_tools, server, tmp_path / "home", photos, *gpx)
        stats = server.stats()
        (sequence,) = server.sequences()
    assert (stats["sequences"], stats["images"]) == (1, 6)
    images = sequence["images"]
    assert [i["filename"] for i in images] == [f"DSC{i:03d}.jpg" for i in range(6)]
    for i, image in enumerate(images):
        (_, lat0, lon0, _), (_, lat1, lon1, _) = fixes[i], fixes[i + 1]
        assert image["lat"] == pytest.approx((lat0 + lat1) / 2, abs=1e-6)
        assert image["lon"] == pytest.approx((lon0 + lon1) / 2, abs=1e-6)
        assert image["captured_at"] == _ms(START + timedelta(seconds=2 * i + 1))
