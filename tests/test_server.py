"""The embedded server over real HTTP on 127.0.0.1: uploads, finishing, search, thumbnails,
faults, persistence and the ``server`` command."""

from __future__ import annotations

import asyncio
import doctest
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import piexif
import pytest
from PIL import Image

from daemon.server import ServerConfig, ServerThread, running_server
from daemon.server import config as config_module
from daemon.server import faults as faults_module
from daemon.server import runner as runner_module
from daemon.server import store as store_module
from daemon.server import validate as validate_module
from daemon.server.runner import RunningServer

TOKEN = "test-token-abcdef123456"
AUTH = {"Authorization": f"OAuth {TOKEN}"}
REPO = Path(__file__).resolve().parents[1]


# -- building what clients send -----------------------------------------------------------------


def description(
    lat: float = 52.5, lon: float = 13.4, when: str = "2024_05_01_10_00_00_000", **extra: Any
) -> dict[str, Any]:
    return {"MAPLatitude": lat, "MAPLongitude": lon, "MAPCaptureTime": when, **extra}


def tagged_jpeg(
    desc: dict[str, Any] | str | None, size: tuple[int, int] = (320, 240), seed: int = 0
) -> bytes:
    """A real JPEG with ``desc`` (JSON-encoded when a dict) as EXIF ImageDescription."""
    image = Image.new("RGB", size, ((seed * 37) % 256, (seed * 91) % 256, (seed * 13) % 256))
    image.putpixel((seed % size[0], 0), (255, 255, 255))
    plain = io.BytesIO()
    image.save(plain, "JPEG", quality=90)
    if desc is None:
        return plain.getvalue()
    text = desc if isinstance(desc, str) else json.dumps(desc, separators=(",", ":"))
    exif = piexif.dump({"0th": {piexif.ImageIFD.ImageDescription: text.encode()}})
    out = io.BytesIO()
    piexif.insert(exif, plain.getvalue(), out)
    return out.getvalue()


def image_key(data: bytes) -> str:
    return f"mly_tools_{hashlib.md5(data).hexdigest()}.jpg"


def manifest(handles: list[str]) -> bytes:
    body = {"image_handles": handles, "upload_type": "images", "version": "1"}
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


@asynccontextmanager
async def serving(tmp_path: Path, **settings: Any) -> AsyncIterator[RunningServer]:
    settings.setdefault("data_dir", tmp_path / "data")
    async with running_server(ServerConfig(**settings)) as server:
        yield server


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    async with serving(tmp_path) as srv:
        yield srv


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=AUTH) as session:
        yield session


async def probe(http: aiohttp.ClientSession, srv: RunningServer, key: str) -> int:
    async with http.get(f"{srv.upload_url}/{key}") as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["offset"]


async def post(
    http: aiohttp.ClientSession,
    srv: RunningServer,
    key: str,
    body: Any,
    offset: int = 0,
    **hdr: str,
) -> tuple[int, dict[str, Any]]:
    headers = {"Offset": str(offset), "X-Entity-Name": key, **hdr}
    async with http.post(f"{srv.upload_url}/{key}", data=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def put_object(http: aiohttp.ClientSession, srv: RunningServer, key: str, data: bytes) -> str:
    offset = await probe(http, srv, key)
    status, body = await post(http, srv, key, data[offset:], offset)
    assert status == 200, body
    return body["h"]


async def finish(
    http: aiohttp.ClientSession,
    srv: RunningServer,
    handle: str,
    file_type: str = "mly_bundle_manifest",
) -> tuple[int, dict[str, Any]]:
    payload = {"file_handle": handle, "file_type": file_type}
    async with http.post(f"{srv.graph_url}/finish_upload", json=payload) as resp:
        return resp.status, await resp.json()


async def upload_sequence(
    http: aiohttp.ClientSession, srv: RunningServer, images: list[bytes], name: str = "aa"
) -> str:
    handles = [await put_object(http, srv, image_key(data), data) for data in images]
    manifest_handle = await put_object(http, srv, f"uuid_{name}.json", manifest(handles))
    status, body = await finish(http, srv, manifest_handle)
    assert status == 200, body
    return body["cluster_id"]


def walk(n: int, start_seed: int = 0) -> list[bytes]:
    """``n`` distinct photos a second apart going north-east from (52.5, 13.4)."""
    return [
        tagged_jpeg(
            description(
                52.5 + i * 0.001,
                13.4 + i * 0.001,
                f"2024_05_01_10_00_{i:02d}_000",
                MAPFilename=f"IMG_{start_seed + i:04d}.jpg",
                MAPCompassHeading={"TrueHeading": 45.0, "MagneticHeading": 44.0},
            ),
            seed=start_seed + i,
        )
        for i in range(n)
    ]


async def admin(http: aiohttp.ClientSession, srv: RunningServer, what: str) -> Any:
    async with http.get(f"{srv.base_url}/_admin/{what}") as resp:
        assert resp.status == 200
        return await resp.json()


# -- pure helpers -------------------------------------------------------------------------------


def test_doctests() -> None:
    modules = (config_module, faults_module, store_module, validate_module, runner_module)
    for module in modules:
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_settings_out_of_range_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fail_rate"):
        ServerConfig(fail_rate=1.5)
    with pytest.raises(ValueError, match="outage"):
        ServerConfig(outage=(3.0, 0.0))
    assert TOKEN not in repr(ServerConfig(tokens=(TOKEN,)))


# -- the upload service -------------------------------------------------------------------------


async def test_a_body_cut_by_the_client_is_kept_and_resumed_from_the_offset(server, http) -> None:
    data = tagged_jpeg(description(), size=(800, 600), seed=1)
    key = image_key(data)
    assert await probe(http, server, key) == 0

    async def crashes_midway() -> AsyncIterator[bytes]:
        yield data[:3000]
        await asyncio.sleep(0.05)
        raise RuntimeError("the client died")

    with pytest.raises(aiohttp.ClientError):
        await post(http, server, key, crashes_midway())
    for _ in range(100):  # the server notices the cut connection asynchronously
        if await probe(http, server, key) == 3000:
            break
        await asyncio.sleep(0.02)
    assert await probe(http, server, key) == 3000

    status, body = await post(http, server, key, data[3000:], offset=3000)
    assert status == 200 and body["h"]
    assert (server.store.root / "objects" / key).read_bytes() == data
    assert await probe(http, server, key) == len(data)
    # Probing a complete object and posting nothing gives the same handle again.
    assert await post(http, server, key, b"", offset=len(data)) == (200, body)


async def test_a_wrong_offset_is_a_retriable_412_and_changes_nothing(server, http) -> None:
    data = tagged_jpeg(description(), seed=2)
    key = image_key(data)
    status, body = await post(http, server, key, data[100:], offset=100)
    assert status == 412
    assert body["debug_info"]["retriable"] is True
    assert body["debug_info"]["type"] == "OffsetInvalidError"
    assert await probe(http, server, key) == 0
    assert (await put_object(http, server, key, data)).strip()


async def test_chunked_and_content_length_bodies_store_the_same_bytes(server, http) -> None:
    data = os.urandom(700_000)
    keys = ("uuid_chunked.bin", "uuid_sized.bin")

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 65_000):
            yield data[start : start + 65_000]

    assert (await post(http, server, keys[0], chunks()))[0] == 200
    assert (await post(http, server, keys[1], data))[0] == 200
    for key in keys:
        assert (server.store.root / "objects" / key).read_bytes() == data
    assert server.stats()["bytes_received"] == 2 * len(data)


async def test_content_that_does_not_match_its_md5_key_is_refused_for_good(server, http) -> None:
    data = tagged_jpeg(description(), seed=3)
    key = f"mly_tools_{hashlib.md5(b'something else').hexdigest()}.jpg"
    status, body = await post(http, server, key, data)
    assert status == 400
    assert body["debug_info"]["retriable"] is False
    assert "MD5" in body["debug_info"]["message"]
    assert await probe(http, server, key) == 0  # refused bytes are not kept


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (description(lat=95.0), "MAPLatitude 95.0 is outside"),
        (description(lon=-181.0), "MAPLongitude -181.0 is outside"),
        (description(when="2024-05-01 10:00:00"), "is not YYYY_MM_DD_HH_MM_SS_mmm"),
        ({"MAPLatitude": 1.0, "MAPLongitude": 2.0}, "MAPCaptureTime is missing"),
        ("not json at all", "not JSON"),
        (None, "no Mapillary description"),
    ],
)
async def test_an_image_with_a_bad_description_is_refused(server, http, content, reason) -> None:
    data = tagged_jpeg(content, seed=4)
    status, body = await post(http, server, image_key(data), data)
    assert status == 400, body
    assert body["debug_info"]["retriable"] is False
    assert reason in body["debug_info"]["message"]
    assert server.stats()["images"] == 0


async def test_a_cut_off_jpeg_is_refused(server, http) -> None:
    data = tagged_jpeg(description(), seed=5)[:-200]
    status, body = await post(http, server, image_key(data), data)
    assert status == 400 and "not a usable JPEG" in body["debug_info"]["message"]


async def test_keys_that_are_not_plain_names_are_refused(server, http) -> None:
    for key in ("a..b.jpg", ".hidden"):
        status, body = await post(http, server, key, b"x")
        assert status == 400, key
        assert "plain file name" in body["debug_info"]["message"]


# -- finishing ----------------------------------------------------------------------------------


async def test_a_manifest_becomes_one_ordered_sequence_and_finishing_twice_is_harmless(
    server, http
) -> None:
    images = walk(3)
    handles = [await put_object(http, server, image_key(d), d) for d in images]
    manifest_handle = await put_object(http, server, "uuid_0123.json", manifest(handles))
    first = await finish(http, server, manifest_handle)
    again = await finish(http, server, manifest_handle)
    assert first[0] == again[0] == 200
    assert first[1]["cluster_id"] == again[1]["cluster_id"]
    assert first[1]["cluster_id"].isdigit()
    stats = server.stats()
    assert (stats["sequences"], stats["images"], stats["duplicate_sequences"]) == (1, 3, 0)

    (sequence,) = (await admin(http, server, "sequences"))["sequences"]
    assert sequence["cluster_id"] == first[1]["cluster_id"]
    assert [i["filename"] for i in sequence["images"]] == [
        "IMG_0000.jpg",
        "IMG_0001.jpg",
        "IMG_0002.jpg",
    ]
    assert [i["md5"] for i in sequence["images"]] == [hashlib.md5(d).hexdigest() for d in images]
    assert sequence["images"][1]["lat"] == pytest.approx(52.501)
    assert sequence["images"][1]["lon"] == pytest.approx(13.401)
    assert sequence["images"][2]["captured_at"] - sequence["images"][0]["captured_at"] == 2000
    assert all(i["id"].isdigit() for i in sequence["images"])


async def test_concurrent_finishes_of_one_handle_make_one_sequence(server, http) -> None:
    handles = [await put_object(http, server, image_key(d), d) for d in walk(2)]
    manifest_handle = await put_object(http, server, "uuid_77.json", manifest(handles))
    replies = await asyncio.gather(*(finish(http, server, manifest_handle) for _ in range(6)))
    assert {status for status, _ in replies} == {200}
    assert len({body["cluster_id"] for _, body in replies}) == 1
    assert server.stats()["sequences"] == 1


async def test_uploading_the_same_photos_again_is_counted_as_duplicates(server, http) -> None:
    images = walk(3)
    first = await upload_sequence(http, server, images, name="first")
    second = await upload_sequence(http, server, images, name="second")
    assert first != second
    stats = server.stats()
    assert (stats["sequences"], stats["images"]) == (2, 6)
    assert (stats["duplicate_sequences"], stats["duplicate_images"]) == (1, 3)
    # One photo shared with the others, in a different sequence: one more duplicate image only.
    await upload_sequence(http, server, [images[0], *walk(1, start_seed=50)], name="third")
    stats = server.stats()
    assert (stats["duplicate_sequences"], stats["duplicate_images"]) == (1, 4)


async def test_finishing_what_cannot_be_resolved_is_a_graph_error(server, http) -> None:
    status, body = await finish(http, server, "bm90LWEtaGFuZGxl")
    assert status == 400 and body["error"]["code"] == 100
    data = walk(1)[0]
    key = image_key(data)
    handle = await put_object(http, server, key, data)
    assert (await finish(http, server, handle, "camm"))[0] == 400
    # A manifest naming an image whose upload is no longer complete.
    manifest_handle = await put_object(http, server, "uuid_bad.json", manifest([handle]))
    (server.store.root / "objects" / key).write_bytes(data[:100])
    status, body = await finish(http, server, manifest_handle)
    assert status == 400 and "upload incomplete" in body["error"]["message"]
    not_json = await put_object(http, server, "uuid_nojson.json", b"{nope")
    status, body = await finish(http, server, not_json)
    assert status == 400 and "not JSON" in body["error"]["message"]
    assert server.stats()["sequences"] == 0


async def test_a_zip_sent_in_pre_2025_chunks_is_finished_with_a_form_body(server, http) -> None:
    images = walk(3)
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as archive:
        for index in (2, 0, 1):  # entry order is not capture order
            archive.writestr(f"{hashlib.md5(images[index]).hexdigest()}.jpg", images[index])
    data = packed.getvalue()
    key = f"mly_tools_{hashlib.md5(data).hexdigest()}.zip"
    headers = {"X-Entity-Length": str(len(data)), "X-Entity-Type": "application/zip"}
    offset = 0
    for start in range(0, len(data), 4096):
        chunk = data[start : start + 4096]
        status, body = await post(http, server, key, chunk, offset, **headers)
        assert status == 200, body
        offset += len(chunk)
    status, body = await post(http, server, key, b"", offset, **headers)
    assert status == 200 and body["h"]
    form = aiohttp.FormData({"file_handle": body["h"], "file_type": "zip"})
    async with http.post(f"{server.graph_url}/finish_upload", data=form) as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["cluster_id"].isdigit()
    (sequence,) = server.sequences()
    assert [i["filename"] for i in sequence["images"]] == [
        "IMG_0000.jpg",
        "IMG_0001.jpg",
        "IMG_0002.jpg",
    ]


# -- graph API: me, images, thumbnails ----------------------------------------------------------


async def test_tokens_are_checked_like_the_graph_api_does(tmp_path: Path) -> None:
    async with serving(tmp_path, tokens=(TOKEN,)) as srv, aiohttp.ClientSession() as anon:
        for headers in ({}, {"Authorization": "OAuth wrong-token"}, {"Authorization": "OAuth "}):
            async with anon.get(f"{srv.graph_url}/me", headers=headers) as resp:
                assert resp.status == 401
                error = (await resp.json())["error"]
                assert (error["type"], error["code"]) == ("OAuthException", 190)
            async with anon.get(f"{srv.upload_url}/uuid_a.bin", headers=headers) as resp:
                assert resp.status == 401
        async with anon.get(f"{srv.graph_url}/me", headers=AUTH) as resp:
            assert resp.status == 200
            me = await resp.json()
        assert me["id"].isdigit() and me["username"]
    async with serving(tmp_path / "open") as srv, aiohttp.ClientSession() as anon:
        async with anon.get(f"{srv.graph_url}/me", headers={"Authorization": "OAuth x"}) as resp:
            assert resp.status == 200
        async with anon.get(f"{srv.graph_url}/me") as resp:
            assert resp.status == 401


async def test_images_search_by_box_time_sequence_and_limit(server, http) -> None:
    await upload_sequence(http, server, walk(6), name="one")  # 52.500..52.505, 13.400..13.405
    url = f"{server.graph_url}/images"
    fields = "id,geometry,captured_at,compass_angle,sequence,thumb_1024_url"

    async def search(**params: str) -> tuple[int, Any]:
        async with http.get(url, params={"fields": fields, **params}) as resp:
            return resp.status, await resp.json()

    status, body = await search(bbox="13.4015,52.5015,13.4035,52.5035")
    assert status == 200
    found = body["data"]
    assert [f["geometry"]["coordinates"] for f in found] == [
        [pytest.approx(13.402), pytest.approx(52.502)],
        [pytest.approx(13.403), pytest.approx(52.503)],
    ]
    first = found[0]
    assert first["id"].isdigit() and first["compass_angle"] == 45.0
    assert first["thumb_1024_url"] == f"{server.base_url}/thumbs/{first['id']}/1024.jpg"
    everything = "13,52,14,53"
    assert len((await search(bbox=everything, limit="4"))[1]["data"]) == 4
    assert len((await search(bbox=everything, limit="50000"))[1]["data"]) == 6
    start = str(first["captured_at"])
    assert len((await search(bbox=everything, start_captured_at=start))[1]["data"]) == 4
    assert (
        len((await search(bbox=everything, end_captured_at="2024-05-01T10:00:01Z"))[1]["data"]) == 2
    )
    other = await upload_sequence(http, server, walk(2, start_seed=20), name="two")
    assert other
    assert len((await search(bbox=everything))[1]["data"]) == 8
    by_sequence = (await search(bbox=everything, sequence_id=first["sequence"]))[1]["data"]
    assert len(by_sequence) == 6
    assert (await search(bbox="13,53,14,52"))[0] == 400
    assert (await search(bbox="13,52,14"))[0] == 400
    async with http.get(f"{server.graph_url}/{first['id']}", params={"fields": "geometry"}) as resp:
        assert (await resp.json())["geometry"]["coordinates"][1] == pytest.approx(52.502)


async def test_thumbnails_are_jpegs_of_the_asked_width_and_original_is_the_upload(
    server, http
) -> None:
    data = tagged_jpeg(description(), size=(1200, 800), seed=9)
    await upload_sequence(http, server, [data])
    (image,) = server.sequences()[0]["images"]
    sizes = {}
    for size in ("256", "1024", "2048", "original"):
        async with http.get(f"{server.base_url}/thumbs/{image['id']}/{size}.jpg") as resp:
            assert resp.status == 200 and resp.content_type == "image/jpeg"
            body = await resp.read()
        with Image.open(io.BytesIO(body)) as thumb:
            assert thumb.format == "JPEG"
            sizes[size] = thumb.size
        if size == "original":
            assert body == data
    assert sizes == {
        "256": (256, 171),
        "1024": (1024, 683),
        "2048": (1200, 800),  # never enlarged
        "original": (1200, 800),
    }
    assert (server.store.root / "thumbs" / f"{image['id']}_256.jpg").exists()
    async with http.get(f"{server.base_url}/thumbs/{image['id']}/300.jpg") as resp:
        assert resp.status == 404


# -- faults -------------------------------------------------------------------------------------


async def test_a_dropped_body_keeps_the_bytes_received_so_far(tmp_path: Path, http) -> None:
    data = tagged_jpeg(description(), size=(900, 700), seed=11)
    key = image_key(data)
    async with serving(tmp_path, drop_rate=1.0, seed=7) as srv:
        with pytest.raises(aiohttp.ClientError):
            await post(http, srv, key, data)
        held = await probe(http, srv, key)
        assert 0 < held < len(data)
        assert (srv.store.root / "objects" / key).read_bytes() == data[:held]
        assert srv.stats()["faults_injected"] == 1
    async with serving(tmp_path) as srv:  # same folder, no faults: resume where it stopped
        assert await probe(http, srv, key) == held
        status, body = await post(http, srv, key, data[held:], offset=held)
        assert status == 200 and body["h"]


async def test_a_short_chunked_body_is_dropped_too(tmp_path: Path, http) -> None:
    """A chunked body announces no length; the cut still falls strictly inside it."""
    data = tagged_jpeg(description(), size=(400, 300), seed=12)
    key = "uuid_small.jpg"

    async def chunks(rest: bytes) -> AsyncIterator[bytes]:
        for start in range(0, len(rest), 1000):
            yield rest[start : start + 1000]

    async with serving(tmp_path, drop_rate=1.0, seed=3) as srv:
        held = 0
        for _ in range(3):
            with pytest.raises(aiohttp.ClientError):
                await post(http, srv, key, chunks(data[held:]), offset=held)
            before, held = held, await probe(http, srv, key)
            assert before < held < len(data)
            assert (srv.store.root / "objects" / key).read_bytes() == data[:held]
        assert srv.stats()["faults_injected"] == 3


async def test_an_outage_window_refuses_everything_but_admin_then_ends(tmp_path, http) -> None:
    before_start = time.monotonic()
    async with serving(tmp_path, outage=(0.0, 0.6), seed=1) as srv:
        outcomes = []
        for _ in range(8):
            try:
                async with http.get(f"{srv.upload_url}/uuid_x.bin") as resp:
                    outcomes.append(resp.status)
            except aiohttp.ClientConnectionError:
                outcomes.append("reset")
        assert set(outcomes) <= {503, "reset"} and 200 not in outcomes
        assert (await admin(http, srv, "stats"))["faults_injected"] >= 8
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            try:
                async with http.get(f"{srv.upload_url}/uuid_x.bin") as resp:
                    if resp.status == 200:
                        break
            except aiohttp.ClientConnectionError:
                continue
        else:
            pytest.fail("the outage did not end")
        assert time.monotonic() - before_start >= 0.6


async def test_the_rate_limit_answers_429_with_retry_after(tmp_path, http) -> None:
    async with serving(tmp_path, rate_limit=3) as srv:
        replies = []
        for _ in range(8):
            async with http.get(f"{srv.upload_url}/uuid_x.bin") as resp:
                replies.append((resp.status, resp.headers.get("Retry-After"), await resp.json()))
        statuses = [status for status, _, _ in replies]
        assert statuses[:3] == [200, 200, 200] and 429 in statuses
        for status, retry_after, body in replies:
            if status == 429:
                assert retry_after is not None and int(retry_after) >= 1
                assert body["debug_info"]["type"] == "RequestRateLimitedError"
        assert srv.stats()["faults_injected"] == statuses.count(429)


async def test_the_fail_rate_mixes_server_errors_and_counts_them(tmp_path, http) -> None:
    async with serving(tmp_path, fail_rate=0.5, seed=42) as srv:
        statuses = []
        for _ in range(40):
            async with http.get(f"{srv.graph_url}/me") as resp:
                statuses.append(resp.status)
        assert set(statuses) <= {200, 500, 502, 503}
        assert 200 in statuses and len(set(statuses) - {200}) >= 2
        assert srv.stats()["faults_injected"] == sum(s != 200 for s in statuses)
        assert srv.stats()["requests"] == 40


async def test_latency_and_the_bandwidth_cap_slow_requests_down(tmp_path, http) -> None:
    async with serving(tmp_path, latency_ms=150) as srv:
        started = time.monotonic()
        await probe(http, srv, "uuid_x.bin")
        assert time.monotonic() - started >= 0.15
    data = os.urandom(400_000)
    async with serving(tmp_path / "capped", bandwidth=1_000_000) as srv:
        started = time.monotonic()
        await put_object(http, srv, "uuid_capped.bin", data)
        # The first read goes at once; everything after waits for its share of the line.
        assert time.monotonic() - started >= (len(data) - 65_536) / 1_000_000


# -- persistence and running it -----------------------------------------------------------------


async def test_state_survives_a_restart_on_the_same_folder(tmp_path: Path, http) -> None:
    images = walk(3)
    async with serving(tmp_path) as srv:
        handles = [await put_object(http, srv, image_key(d), d) for d in images]
        manifest_handle = await put_object(http, srv, "uuid_keep.json", manifest(handles))
        cluster = (await finish(http, srv, manifest_handle))[1]["cluster_id"]
        before = srv.sequences()
    # A finish torn by a crash mid-append leaves half a line; it is dropped on start.
    with open(tmp_path / "data" / store_module.LOG_NAME, "a") as log:
        log.write('{"sequence": {"id": "x"')
    async with serving(tmp_path) as srv:
        assert srv.sequences() == before
        assert (await finish(http, srv, manifest_handle))[1]["cluster_id"] == cluster
        assert srv.stats()["sequences"] == 1
        image_id = before[0]["images"][0]["id"]
        async with http.get(f"{srv.base_url}/thumbs/{image_id}/256.jpg") as resp:
            assert resp.status == 200
        # New ids continue after the old ones.
        await upload_sequence(http, srv, walk(1, start_seed=30), name="later")
        newest = srv.sequences()[-1]
        assert newest["cluster_id"] != cluster
        assert int(newest["images"][0]["id"]) > int(before[0]["images"][-1]["id"])


def test_the_thread_variant_serves_synchronous_callers(tmp_path: Path) -> None:
    import urllib.request

    with ServerThread(ServerConfig(data_dir=tmp_path)) as srv:
        request = urllib.request.Request(f"{srv.graph_url}/me", headers=AUTH)
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert json.loads(resp.read())["id"].isdigit()
        assert srv.stats()["requests"] == 1


def test_the_server_command_prints_its_urls_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    import urllib.request

    data_dir = tmp_path / "srv"
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "server", "--data", str(data_dir), "--token", TOKEN],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first.startswith("serving on http://127.0.0.1:"), first
        base = first.removeprefix("serving on ")
        env_lines = [proc.stdout.readline().strip() for _ in range(2)]
        assert env_lines == [
            f"export MAPILLARY_GRAPH_API_ENDPOINT={base}/graph",
            f"export MAPILLARY_UPLOAD_ENDPOINT={base}/mapillary_public_uploads",
        ]
        request = urllib.request.Request(f"{base}/graph/me", headers=AUTH)
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.status == 200
        with urllib.request.urlopen(f"{base}/_admin/stats", timeout=5) as resp:
            assert json.loads(resp.read())["requests"] == 1
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert TOKEN not in out + err + first
    assert str(data_dir) in err
    assert (data_dir / "objects").is_dir()


def test_the_server_command_refuses_bad_settings(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "server", "--outage", "soon", "--data", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "outage 'soon' is not START_S:DURATION_S" in result.stderr
