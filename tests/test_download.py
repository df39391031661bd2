"""`download`: the images of a box from a real HTTP server on 127.0.0.1, to real files.

The embedded server answers the searches and serves the thumbnails; thousands of images are put
into its store with ``Store.seed_sequence`` (uploading each would take minutes), a few real
photos are uploaded through the upload client for the EXIF round trip. A tiny aiohttp app
defined here plays a malicious server. The command runs as a real subprocess; EXIF is read back
with piexif directly, not through our reader.
"""

from __future__ import annotations

import asyncio
import doctest
import io
import json
import os
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import piexif
import pytest
from aiohttp import web
from PIL import Image

import daemon.commands.download as command_module
from daemon.download import box as box_module
from daemon.download import fetch as fetch_module
from daemon.download import index as index_module
from daemon.download import search as search_module
from daemon.download.box import Box
from daemon.download.job import Listener, Options, download_box
from daemon.download.search import LIMIT, BoxSearch, Filters
from daemon.mapillary import AuthError, RetryPolicy
from daemon.mapillary.upload_service import session_key
from daemon.media.exif import tagged_bytes
from daemon.server import ServerConfig, running_server
from daemon.server.store import Store
from daemon.upload.client import UploadClient
from tests import jpegs

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "download-test-token-" + "y" * 8
FAST = RetryPolicy(max_attempts=4, max_delay=0.01, jitter=0.0)
START = datetime(2024, 6, 1, 10, 0, 0, tzinfo=UTC)
BOX = Box(11.0, 48.0, 11.2, 48.2)  # W, S, E, N


def test_doctests() -> None:
    for module in (box_module, search_module, fetch_module, index_module, command_module):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


# -- helpers ---------------------------------------------------------------------------------------


def small_jpeg(seed: int = 0, size: tuple[int, int] = (48, 32)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (seed * 37 % 256, 90, 160)).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def noise_jpeg(size: tuple[int, int]) -> bytes:
    """A JPEG that does not compress, so its thumbnail is big enough to be cut mid-body."""
    buf = io.BytesIO()
    Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def description(lat: float, lon: float, i: int, heading: float | None = None) -> dict[str, Any]:
    moment = START + timedelta(seconds=i, milliseconds=i % 1000)
    out: dict[str, Any] = {
        "MAPLatitude": round(lat, 7),
        "MAPLongitude": round(lon, 7),
        "MAPCaptureTime": moment.strftime("%Y_%m_%d_%H_%M_%S_")
        + f"{moment.microsecond // 1000:03d}",
    }
    if heading is not None:
        out["MAPCompassHeading"] = {"TrueHeading": heading, "MagneticHeading": heading}
    return out


def seed(store: Store, points: list[tuple[float, float]], data: bytes | None = None) -> list[str]:
    """Put one image per (lat, lon) into the store; returns their ids in order."""
    data = data or small_jpeg()
    entries = [
        (data, description(lat, lon, i, float(i % 360))) for i, (lat, lon) in enumerate(points)
    ]
    sequence = store.seed_sequence(entries)
    return list(sequence.image_ids)


def grid(box: Box, n: int, columns: int) -> list[tuple[float, float]]:
    """``n`` points spread over the inside of ``box``, row by row."""
    rows = -(-n // columns)
    dlat = (box.north - box.south) / (rows + 1)
    dlon = (box.east - box.west) / (columns + 1)
    return [
        (box.south + dlat * (1 + i // columns), box.west + dlon * (1 + i % columns))
        for i in range(n)
    ]


async def mly(cwd: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """The command as a subprocess; the test's own server keeps serving while it runs."""
    full = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CONFIG_HOME": str(cwd / ".config")}
    full = {k: v for k, v in full.items() if not k.startswith(("MAPILLARY_", "NUMBER_THREADS"))}
    full.update(env)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "daemon",
        *args,
        cwd=cwd,
        env=full,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=240)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def server_env(server: Any, token: str = TOKEN) -> dict[str, str]:
    return {**server.environment(), "MAPILLARY_TOKEN": token}


def corners(box: Box) -> list[str]:
    return [str(box.south), str(box.north), str(box.west), str(box.east)]


def files_in(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in folder.iterdir() if p.is_file()}


def index_of(folder: Path) -> dict[str, dict[str, Any]]:
    collection = json.loads((folder / "images.geojson").read_text())
    assert collection["type"] == "FeatureCollection"
    features = collection["features"]
    by_id = {f["properties"]["id"]: f for f in features}
    assert len(by_id) == len(features), "an image listed twice"
    return by_id


def ratio(value: tuple[int, int]) -> float:
    return value[0] / value[1]


def gps_latlon(gps: dict[int, Any]) -> tuple[float, float]:
    g = piexif.GPSIFD

    def degrees(v: Any, ref: bytes, negative: bytes) -> float:
        d, m, s = (ratio(x) for x in v)
        return -(d + m / 60 + s / 3600) if ref == negative else d + m / 60 + s / 3600

    return (
        degrees(gps[g.GPSLatitude], gps[g.GPSLatitudeRef], b"S"),
        degrees(gps[g.GPSLongitude], gps[g.GPSLongitudeRef], b"W"),
    )


class Recorder(Listener):
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self.done_ids: list[str] = []

    def done(self, image: Any, fetched: bool) -> None:
        self.done_ids.append(image.id)

    def failed(self, line: str, reason: str) -> None:
        self.lines.append((line, reason))


# -- searching: splitting, no image twice, --max-results --------------------------------------------


async def test_a_box_over_the_limit_is_split_until_every_image_is_found_once(
    tmp_path: Path,
) -> None:
    # 4,500 images: 2,400 crowd the north-east quadrant (so it is split again after the whole
    # box), 60 sit exactly on the lines where quadrants meet (returned by two boxes each).
    north_east = Box(11.1, 48.1, 11.2, 48.2)
    points = grid(north_east, 2400, 60) + grid(BOX, 2040, 51)
    points += [(48.1, 11.0 + 0.2 * (i + 1) / 31) for i in range(30)]
    points += [(48.0 + 0.2 * (i + 1) / 31, 11.1) for i in range(30)]
    outside = [(48.25, 11.05), (47.99, 11.1)]
    async with running_server(ServerConfig(data_dir=tmp_path / "srv")) as server:
        ids = seed(server.store, points + outside)
        async with __import__("aiohttp").ClientSession() as http:
            search = BoxSearch(http, server.graph_url, TOKEN, "256", policy=FAST)
            result = await search.run(BOX)
    found = [image.id for image in result.images]
    assert len(found) == len(set(found)) == len(points)
    assert set(found) == set(ids[: len(points)])
    assert (result.splits, result.searches) == (2, 9)
    assert not result.failed and not result.bad


async def test_max_results_is_exact_across_splits_and_in_the_command(tmp_path: Path) -> None:
    async with running_server(ServerConfig(data_dir=tmp_path / "srv")) as server:
        ids = set(seed(server.store, grid(BOX, 2300, 50)))
        async with __import__("aiohttp").ClientSession() as http:
            for wanted in (1, 1999, 2000, 2001, 2299, 2300, 5000):
                search = BoxSearch(
                    http, server.graph_url, TOKEN, "256", max_results=wanted, policy=FAST
                )
                result = await search.run(BOX)
                got = [image.id for image in result.images]
                assert len(got) == len(set(got)) == min(wanted, 2300), wanted
                assert set(got) <= ids
        code, out, err = await mly(
            tmp_path, server_env(server), "download", *corners(BOX), "--max-results", "7",
            "--out", "seven", "--image-size", "256",
        )  # fmt: skip
    assert code == 0, err
    names = sorted(files_in(tmp_path / "seven"))
    assert len(names) == 8 and "images.geojson" in names
    assert set(index_of(tmp_path / "seven")) == {n[:-4] for n in names if n.endswith(".jpg")}
    assert "download: 7 images, 7 downloaded, 0 set aside" in out


async def test_more_than_2000_images_are_all_downloaded_once_and_a_rerun_fetches_nothing(
    tmp_path: Path,
) -> None:
    points = grid(BOX, 2100, 42)
    async with running_server(ServerConfig(data_dir=tmp_path / "srv")) as server:
        ids = seed(server.store, points)
        env = server_env(server)
        code, out, err = await mly(
            tmp_path, env, "download", *corners(BOX), "--image-size", "256", "--out", "big"
        )
        assert code == 0, err
        before = server.stats()["requests"]
        again, out2, err2 = await mly(
            tmp_path,
            env,
            "download",
            f"--bbox={BOX.param()}",
            "--image-size",
            "256",
            "--out",
            "big",
        )
        after = server.stats()["requests"]
    files = files_in(tmp_path / "big")
    assert set(files) == {f"{i}.jpg" for i in ids} | {"images.geojson"}
    assert not list((tmp_path / "big").glob(".*")) and not list((tmp_path / "big").glob("*.part"))
    assert set(index_of(tmp_path / "big")) == set(ids)
    assert "2100 images, 2100 downloaded, 0 set aside" in out and "split in four" in out
    print(next(line for line in out.splitlines() if "images/s" in line))
    # The rerun only searched (1 + 4 boxes): every file was already there.
    assert again == 0, err2
    assert "2100 images, 0 downloaded" in out2 and "already there from an earlier run: 2100" in out2
    assert after - before == 5


# -- the EXIF of downloads against what was uploaded --------------------------------------------------


async def test_downloads_carry_the_uploaded_position_time_and_heading(tmp_path: Path) -> None:
    photos = []
    for i in range(4):
        path = jpegs.make_jpeg(tmp_path / f"P{i}.jpg", size=(640, 480), seed=i, make="Cam")
        lat, lon = 48.1 + i * 0.0012345, 11.1 - i * 0.0009876
        desc = description(lat, lon, i * 7, heading=[0.0, 89.5, 181.25, 359.9][i])
        desc.update(
            MAPOrientation=1, MAPDeviceMake="Cam", MAPDeviceModel="T1", MAPFilename=path.name
        )
        photos.append((desc, tagged_bytes(path, json.dumps(desc, sort_keys=True))))
    async with running_server(ServerConfig(data_dir=tmp_path / "srv")) as server:
        async with UploadClient(TOKEN, server.graph_url, server.upload_url) as client:
            handles = [await client.upload_bytes(session_key(d), d) for _, d in photos]
            await client.finish_upload(await client.upload_manifest(handles))
        uploaded = {image["md5"]: image["id"] for image in server.sequences()[0]["images"]}
        env = server_env(server)
        results = {}
        for size in ("256", "original"):
            results[size] = await mly(
                tmp_path, env, "download", *corners(BOX), "--image-size", size, "--out", size
            )
    import hashlib

    for size, (code, _, err) in results.items():
        assert code == 0, err
        features = index_of(tmp_path / size)
        assert len(features) == 4
        for desc, data in photos:
            image_id = uploaded[hashlib.md5(data).hexdigest()]
            file = tmp_path / size / f"{image_id}.jpg"
            exif = piexif.load(str(file))
            lat, lon = gps_latlon(exif["GPS"])
            assert abs(lat - desc["MAPLatitude"]) < 1e-7 and abs(lon - desc["MAPLongitude"]) < 1e-7
            heading = desc["MAPCompassHeading"]["TrueHeading"]
            assert ratio(exif["GPS"][piexif.GPSIFD.GPSImgDirection]) == pytest.approx(heading)
            moment = datetime.strptime(desc["MAPCaptureTime"], "%Y_%m_%d_%H_%M_%S_%f")
            e = exif["Exif"]
            assert (
                e[piexif.ExifIFD.DateTimeOriginal] == moment.strftime("%Y:%m:%d %H:%M:%S").encode()
            )
            assert e[piexif.ExifIFD.SubSecTimeOriginal] == moment.strftime("%f")[:3].encode()
            assert e[piexif.ExifIFD.OffsetTimeOriginal] == b"+00:00"
            assert exif["GPS"][piexif.GPSIFD.GPSDateStamp] == moment.strftime("%Y:%m:%d").encode()
            props = features[image_id]["properties"]
            assert props["file"] == file.name and props["compass_angle"] == heading
            assert features[image_id]["geometry"]["coordinates"] == [lon, lat] or (
                features[image_id]["geometry"]["coordinates"]
                == [desc["MAPLongitude"], desc["MAPLatitude"]]
            )
            with Image.open(file) as picture:
                assert picture.width == (256 if size == "256" else 640)
            if size == "original":
                # Only the EXIF segment changed: the picture is the uploaded one, bit for bit.
                assert jpegs.scan_data(file.read_bytes()) == jpegs.scan_data(data)


# -- faults: retries, resumed transfers, reruns ----------------------------------------------------


async def test_thumbnails_cut_mid_body_resume_where_they_stopped(tmp_path: Path) -> None:
    # Every transfer is cut somewhere inside what is left; only Range resumes get a file through.
    points = grid(BOX, 6, 3)
    config = ServerConfig(data_dir=tmp_path / "srv", drop_rate=1.0, seed=3)
    async with running_server(config) as server:
        seed(server.store, points, noise_jpeg((1600, 1200)))
        tight = RetryPolicy(max_attempts=2, max_delay=0.01, jitter=0.0)
        outcome = await download_box(
            server.graph_url, TOKEN, Options(BOX, tmp_path / "out", size="1024"), policy=tight
        )
        sizes = [
            (server.store.root / "thumbs" / f"{image.id}_1024.jpg").stat().st_size
            for image in outcome.fetched
        ]
        faults = server.stats()["faults_injected"]
    assert len(outcome.fetched) == 6 and outcome.failed == 0
    assert faults > 12  # several cuts per image
    # No byte was received twice: each retry asked for the rest only.
    assert outcome.bytes_received == sum(sizes)


async def test_a_rerun_finishes_what_a_failed_run_left_and_skips_what_is_done(
    tmp_path: Path,
) -> None:
    points = grid(BOX, 12, 4)
    data_dir = tmp_path / "srv"
    out = tmp_path / "out"
    once = RetryPolicy(max_attempts=1, max_delay=0.01, jitter=0.0)
    async with running_server(ServerConfig(data_dir=data_dir, drop_rate=0.5, seed=11)) as server:
        ids = seed(server.store, points, noise_jpeg((1400, 1000)))
        recorder = Recorder()
        first = await download_box(
            server.graph_url, TOKEN, Options(BOX, out, size="1024"), policy=once, listener=recorder
        )
    assert 0 < len(first.fetched) < 12 and first.failed == 12 - len(first.fetched)
    assert all(reason == "download failed" for _, reason in recorder.lines)
    assert all("gave up after 1 failed attempts" in line for line, _ in recorder.lines)
    parts = sorted(out.glob("*.jpg.part"))
    assert parts, "a cut transfer keeps what it received"
    held = sum(p.stat().st_size for p in parts)
    async with running_server(ServerConfig(data_dir=data_dir)) as server:
        second = await download_box(
            server.graph_url, TOKEN, Options(BOX, out, size="1024"), policy=FAST
        )
        total = sum(
            (server.store.root / "thumbs" / f"{image.id}_1024.jpg").stat().st_size
            for image in second.fetched
        )
    assert {i.id for i in second.already} == {i.id for i in first.fetched}
    assert len(second.fetched) + len(second.already) == 12 and second.failed == 0
    assert second.bytes_received == total - held  # the parts were resumed, not fetched again
    assert set(index_of(out)) == set(ids) and not list(out.glob("*.part"))
    # A file a power cut left short (no end-of-image marker) is not taken as done.
    short = out / f"{ids[0]}.jpg"
    short.write_bytes(short.read_bytes()[:-100])
    (out / f".{ids[1]}.jpg.tmp").write_bytes(b"left by a crash")
    async with running_server(ServerConfig(data_dir=data_dir)) as server:
        third = await download_box(server.graph_url, TOKEN, Options(BOX, out, "1024"), policy=FAST)
    assert [i.id for i in third.fetched] == [ids[0]] and len(third.already) == 11
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{i}.jpg" for i in ids] + ["images.geojson"]
    )


async def test_the_command_rides_out_server_errors_and_dropped_thumbnails(tmp_path: Path) -> None:
    config = ServerConfig(data_dir=tmp_path / "srv", fail_rate=0.15, drop_rate=0.3, seed=5)
    async with running_server(config) as server:
        ids = seed(server.store, grid(BOX, 30, 6), noise_jpeg((800, 600)))
        code, out, err = await mly(
            tmp_path, server_env(server), "download", *corners(BOX), "--out", "out"
        )
        faults = server.stats()["faults_injected"]
    assert code == 0, err
    assert faults > 3 and set(index_of(tmp_path / "out")) == set(ids)
    assert "30 images, 30 downloaded, 0 set aside" in out


# -- a malicious server -----------------------------------------------------------------------------


GOOD = small_jpeg(1)
SERVED = web.AppKey("served", dict)
HUGE = 3 * 2**20


def malicious_app(truncated: bytes) -> web.Application:
    served = {"huge_bytes": 0}

    async def images(request: web.Request) -> web.Response:
        base = str(request.url.origin())
        point = {"type": "Point", "coordinates": [11.1, 48.1]}

        def entry(image_id: Any, url: str) -> dict[str, Any]:
            return {"id": image_id, "geometry": point, "captured_at": 1717236000000,
                    "compass_angle": 12.5, "sequence": "s", "thumb_1024_url": url}  # fmt: skip

        data = [
            entry("../../x", f"{base}/t/good"),
            entry("12/../../13", f"{base}/t/good"),
            entry("1001", "file:///etc/passwd"),
            entry("1002", "javascript:alert(1)"),
            entry("1003", f"{base}/t/huge"),
            entry("1004", f"{base}/t/html"),
            entry("1005", f"{base}/t/truncated"),
            entry(1006, f"{base}/t/good"),
            entry("1006", f"{base}/t/good"),  # the same image twice
            entry("1007", f"{base}/t/gone"),
            {
                "id": "1008",
                "geometry": {"coordinates": [50.0, 10.0]},
                "thumb_1024_url": f"{base}/t/good",
            },  # fmt: skip
        ]
        return web.json_response({"data": data})

    async def thumb(request: web.Request) -> web.StreamResponse:
        kind = request.match_info["kind"]
        if kind == "good":
            return web.Response(body=GOOD, content_type="image/jpeg")
        if kind == "html":
            return web.Response(text="<html>login</html>", content_type="image/jpeg")
        if kind == "truncated":
            return web.Response(body=truncated, content_type="image/jpeg")
        if kind == "gone":
            return web.json_response({"error": {"message": "URL signature expired"}}, status=403)
        # Endless chunks of a "JPEG" with no length announced.
        response = web.StreamResponse()
        response.content_type = "image/jpeg"
        await response.prepare(request)
        chunk = b"\xff\xd8\xff\xe0" + b"\x00" * (64 * 1024 - 4)
        for _ in range(HUGE // len(chunk) * 4):
            try:
                await response.write(chunk)
            except (ConnectionError, RuntimeError):
                break
            served["huge_bytes"] += len(chunk)
        return response

    app = web.Application()
    app[SERVED] = served
    app.add_routes([web.get("/graph/images", images), web.get("/t/{kind}", thumb)])
    return app


async def test_a_malicious_server_cannot_write_outside_out_nor_keep_bad_files(
    tmp_path: Path,
) -> None:
    truncated = noise_jpeg((300, 200))[:-500]
    app = malicious_app(truncated)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    env = {
        "MAPILLARY_GRAPH_API_ENDPOINT": f"http://127.0.0.1:{port}/graph",
        "MAPILLARY_TOKEN": TOKEN,
    }
    try:
        code, out, err = await mly(
            work, env, "download", *corners(BOX), "--out", "out", "--max-file-mb", "1"
        )
    finally:
        await runner.cleanup()
    assert code == 1
    everything = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    everything = [p for p in everything if ".config" not in p]
    assert everything == ["a/b/out/1006.jpg", "a/b/out/images.geojson"]
    lines = err.splitlines()

    def said(fragment: str) -> bool:
        return any(fragment in line for line in lines)

    assert said("image '../../x': skipped: its id is not digits")
    assert said("image '12/../../13': skipped: its id is not digits")
    assert said("image '1001': skipped: its thumbnail URL 'file:///etc/passwd' is not http(s)")
    assert said("image '1002': skipped: its thumbnail URL 'javascript:alert(1)' is not http(s)")
    assert said("image 1003: the thumbnail is larger than the cap of 1048576 bytes")
    assert said("image 1004: the thumbnail is not a JPEG (it starts with '<html>login</htm')")
    assert said("image 1005: the thumbnail is not a complete JPEG")
    assert said("image 1007: refused by the server: HTTP 403: URL signature expired")
    # The client hung up just past the cap (what the server wrote on meanwhile sits in socket
    # buffers, so only the client's own count tells).
    received = re.search(r"received ([0-9.]+) MB", out)
    assert received and float(received.group(1)) < 1.3 and app[SERVED]["huge_bytes"] > 2**20
    assert "set aside, bad id from server: 2" in out and "set aside, too large: 1" in out
    assert "ignored 1 search results outside the box" in out
    assert list(index_of(work / "out")) == ["1006"]
    assert TOKEN not in out + err


def drip_app(body: bytes) -> web.Application:
    """Images whose thumbnails come at a few bytes a second (with a length, and without one),
    besides good ones."""

    async def images(request: web.Request) -> web.Response:
        base = str(request.url.origin())
        point = {"type": "Point", "coordinates": [11.1, 48.1]}
        kinds = {"1001": "good", "1002": "good", "1003": "drip", "1004": "drip-chunked"}
        data = [
            {"id": image_id, "geometry": point, "captured_at": 1717236000000,
             "thumb_1024_url": f"{base}/t/{kind}"}
            for image_id, kind in kinds.items()
        ]  # fmt: skip
        return web.json_response({"data": data})

    async def thumb(request: web.Request) -> web.StreamResponse:
        kind = request.match_info["kind"]
        if kind == "good":
            return web.Response(body=body, content_type="image/jpeg")
        response = web.StreamResponse()
        response.content_type = "image/jpeg"
        if kind == "drip":
            response.content_length = len(body)
        await response.prepare(request)
        for offset in range(0, min(len(body), 600), 2):  # 2 bytes every 0.1 s, 60 s at most
            try:
                await response.write(body[offset : offset + 2])
            except (ConnectionError, RuntimeError):
                break
            await asyncio.sleep(0.1)
        return response

    app = web.Application()
    app.add_routes([web.get("/graph/images", images), web.get("/t/{kind}", thumb)])
    return app


async def test_a_server_that_drip_feeds_bytes_cannot_hold_a_file_past_its_deadline(
    tmp_path: Path,
) -> None:
    runner = web.AppRunner(drip_app(noise_jpeg((200, 150))), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    env = {
        "MAPILLARY_GRAPH_API_ENDPOINT": f"http://127.0.0.1:{runner.addresses[0][1]}/graph",
        "MAPILLARY_TOKEN": TOKEN,
        "MAPILLARY_DAEMON_MAX_ATTEMPTS": "2",
    }
    started = time.monotonic()
    try:
        code, out, err = await mly(
            tmp_path, env, "download", *corners(BOX), "--out", "out", "--deadline", "1"
        )
    finally:
        await runner.cleanup()
    elapsed = time.monotonic() - started
    assert code == 1, err
    # Two tries of about a second each, and a backoff of about one between them.
    assert elapsed < 30
    for image_id in ("1003", "1004"):
        line = next(line for line in err.splitlines() if f"image {image_id}:" in line)
        assert "gave up after 2 failed attempts, last: too slow: " in line, line
        assert re.search(r"too slow: \d+ bytes in 1\.\d s \(the floor is 50 kB/s", line), line
    # The bytes that came are kept for a rerun to resume; the good images were not held up.
    on_disk = sorted(files_in(tmp_path / "out"))
    assert on_disk == ["1001.jpg", "1002.jpg", "1003.jpg.part", "1004.jpg.part", "images.geojson"]
    assert "4 images, 2 downloaded" in out


# -- usage -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["48.2", "48.1", "11.0", "11.2"], "MIN_LAT 48.2 is above MAX_LAT 48.1"),
        (["48.0", "48.1", "11.0"], "give the box as MIN_LAT MAX_LAT MIN_LON MAX_LON"),
        (["48.0", "48.1", "11.0", "11.1", "--bbox", "1,2,3,4"], "either as MIN_LAT"),
        (["--bbox=1,2,3"], "--bbox '1,2,3' is not four numbers W,S,E,N"),
        (["--bbox=-10,95,-9,96"], "MIN_LAT 95.0 is not within -90..90"),
        (["48.0", "48.1", "11.0", "11.1", "--start", "June"], "--start 'June' is not a date"),
        (
            ["48.0", "48.1", "11.0", "11.1", "--max-results", "0"],
            "--max-results must be at least 1",
        ),
    ],
)
async def test_bad_arguments_exit_2_with_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    code, out, err = await mly(tmp_path, {"MAPILLARY_TOKEN": TOKEN}, "download", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "mapillary_images").exists()


async def test_a_refused_token_stops_with_exit_2_and_no_token_in_sight(tmp_path: Path) -> None:
    async with running_server(ServerConfig(data_dir=tmp_path / "srv", tokens=("right",))) as server:
        seed(server.store, grid(BOX, 3, 3))
        code, out, err = await mly(
            tmp_path, server_env(server, "wrong-secret"), "download", *corners(BOX)
        )
        with pytest.raises(AuthError):
            await download_box(server.graph_url, "wrong", Options(BOX, tmp_path / "x"), policy=FAST)
    assert code == 2 and "the access token was refused" in err and "authenticate" in err
    assert "wrong-secret" not in out + err
    code, _, err = await mly(tmp_path, {}, "download", *corners(BOX))
    assert code == 2 and "no access token" in err


async def test_filters_reach_the_search(tmp_path: Path) -> None:
    async with running_server(ServerConfig(data_dir=tmp_path / "srv")) as server:
        first = seed(server.store, grid(BOX, 10, 5))  # 10:00:00 .. 10:00:09 UTC
        second = seed(server.store, grid(BOX, 3, 3))
        sequence = server.store.images[second[0]].sequence
        env = server_env(server)
        code, out, _ = await mly(
            tmp_path, env, "download", *corners(BOX), "--out", "late", "--image-size", "256",
            "--start", "2024-06-01T10:00:05Z", "--end", "2024-06-01",
        )  # fmt: skip
        code2, _, _ = await mly(
            tmp_path, env, "download", *corners(BOX), "--out", "seq", "--sequence", sequence,
            "--image-size", "256",
        )  # fmt: skip
        async with __import__("aiohttp").ClientSession() as http:
            early = await BoxSearch(
                http, server.graph_url, TOKEN, "256", filters=Filters(end="2024-05-31T23:59:59Z")
            ).run(BOX)
    assert code == 0 and code2 == 0 and early.images == []
    # Seeded image i is captured at 10:00:i; both seeds have images from 10:00:05 on.
    late = set(index_of(tmp_path / "late"))
    assert late == set(first[5:])
    assert set(index_of(tmp_path / "seq")) == set(second)


def test_help_has_examples() -> None:
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "daemon", "download", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert result.returncode == 0
    assert "examples:" in result.stdout and "mapillary-daemon download 48.13" in result.stdout
    assert "Exit codes:" in result.stdout


def test_search_limit_is_the_protocols() -> None:
    assert LIMIT == 2000


async def test_a_terminal_gets_a_progress_bar_and_a_pipe_does_not(tmp_path: Path) -> None:
    import pty

    async with running_server(ServerConfig(data_dir=tmp_path / "srv")) as server:
        seed(server.store, grid(BOX, 40, 8))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CONFIG_HOME": str(tmp_path / ".c")}
        env.update(server_env(server))
        master, slave = pty.openpty()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "daemon", "download", *corners(BOX), "--out", "tty",
            "--image-size", "256", cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE,
            stderr=slave,
        )  # fmt: skip
        os.close(slave)
        out, _ = await asyncio.wait_for(process.communicate(), timeout=120)
        screen = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            screen += chunk
        os.close(master)
        code, piped_out, piped_err = await mly(
            tmp_path, server_env(server), "download", *corners(BOX), "--out", "pipe"
        )
    assert process.returncode == 0 and code == 0
    assert b"download [" in screen and b"] 40/40" in screen and b"#" in screen
    assert "[" not in piped_err and "40 images, 40 downloaded" in piped_out
    assert "40 images, 40 downloaded" in out.decode()
