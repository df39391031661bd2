"""The upload client against real HTTP servers on 127.0.0.1.

Most stories run against the embedded server (``daemon.server``) with its fault injection. A tiny
aiohttp app defined here is used only for reply shapes the embedded server does not produce
(Graph-style 400 auth errors, JSON ``backoff`` hints).
"""

from __future__ import annotations

import asyncio
import doctest
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from PIL import Image

from daemon.core import config
from daemon.mapillary import AuthError, RejectedError, RetriesExhausted, RetryPolicy
from daemon.mapillary import http as http_module
from daemon.mapillary import retry as retry_module
from daemon.mapillary import upload_service as upload_service_module
from daemon.mapillary.upload_service import session_key
from daemon.media.exif import tagged_bytes
from daemon.server import ServerConfig, running_server
from daemon.upload import throttle as throttle_module
from daemon.upload.client import UploadClient
from daemon.upload.events import EventBus, UploadEvent
from daemon.upload.throttle import Throttle

FAST = RetryPolicy(max_attempts=6, max_delay=0.02, jitter=0.0)
TOKEN = "test-token-" + "x" * 12


def test_doctests() -> None:
    for module in (retry_module, throttle_module, upload_service_module, http_module):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


# -- a tiny scripted server for reply shapes the embedded server cannot produce -----------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse | None]]


@dataclass
class Script:
    """Stores uploads like the service does; ``faults`` replies first, one per request, in order."""

    faults: list[tuple[str, Handler]] = field(default_factory=list)
    objects: dict[str, bytes] = field(default_factory=dict)
    log: list[tuple[float, str, str]] = field(default_factory=list)
    finished: dict[str, str] = field(default_factory=dict)

    async def dispatch(self, request: web.Request, kind: str) -> web.StreamResponse:
        self.log.append((time.monotonic(), request.method, kind))
        for index, (wanted, handler) in enumerate(self.faults):
            if wanted == kind:
                del self.faults[index]
                reply = await handler(request)
                if reply is not None:
                    return reply
                break
        return await getattr(self, kind)(request)

    async def probe(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"offset": len(self.objects.get(request.match_info["key"], b""))})

    async def upload(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        held = self.objects.get(key, b"")
        if int(request.headers["Offset"]) != len(held):
            return web.json_response(
                {"debug_info": {"retriable": True, "type": "OffsetInvalidError"}}, status=412
            )
        self.objects[key] = held + await request.read()
        return web.json_response({"h": f"handle-{key}"})

    async def finish(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        cluster = self.finished.setdefault(body["file_handle"], f"cluster-{len(self.finished)}")
        return web.json_response({"cluster_id": cluster})

    async def me(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"id": "42", "username": "scripted"})

    def count(self, kind: str) -> int:
        return sum(1 for _, _, k in self.log if k == kind)


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[Script, str, str]]:
    script = Script()
    app = web.Application(client_max_size=64 * 2**20)

    def route(kind: str) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await script.dispatch(request, kind)

        return handle

    app.add_routes(
        [
            web.get("/up/{key}", route("probe")),
            web.post("/up/{key}", route("upload")),
            web.post("/graph/finish_upload", route("finish")),
            web.get("/graph/me", route("me")),
        ]
    )
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}"
    try:
        yield script, f"{base}/graph", f"{base}/up"
    finally:
        await runner.cleanup()


def reply(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.json_response(body, status=status, headers=headers)

    return handler


async def test_graph_style_not_authorized_400_stops_without_retrying(scripted) -> None:
    script, graph, upload = scripted
    script.faults.append(
        ("probe", reply(400, {"debug_info": {"type": "NotAuthorizedError", "message": "nope"}}))
    )
    events: list[UploadEvent] = []
    bus = EventBus()
    bus.subscribe(events.append)
    async with UploadClient(TOKEN, graph, upload, policy=FAST, events=bus) as client:
        with pytest.raises(AuthError, match="token was refused") as caught:
            await send_image(client, os.urandom(1000))
    assert TOKEN not in str(caught.value)
    assert script.count("probe") == 1 and script.count("upload") == 0
    assert [e.kind for e in events] == ["start", "failed"]


async def test_oauth_code_190_on_finish_is_an_auth_error(scripted) -> None:
    script, graph, upload = scripted
    body = {
        "error": {"message": "Invalid OAuth access token", "type": "OAuthException", "code": 190}
    }
    script.faults.append(("finish", reply(400, body)))
    async with UploadClient(TOKEN, graph, upload, policy=FAST) as client:
        with pytest.raises(AuthError, match="Invalid OAuth access token"):
            await client.finish_upload("some-handle")
    assert script.count("finish") == 1 and not script.finished


async def test_json_backoff_hint_on_a_retriable_4xx_is_honoured(scripted) -> None:
    script, graph, upload = scripted
    script.faults.append(
        ("upload", reply(400, {"debug_info": {"retriable": True, "type": "Busy", "backoff": 400}}))
    )
    retries: list[UploadEvent] = []
    bus = EventBus()
    bus.subscribe(lambda e: retries.append(e) if e.kind == "retry" else None)
    data = os.urandom(50_000)
    async with UploadClient(TOKEN, graph, upload, policy=FAST, events=bus) as client:
        await client.upload_bytes(session_key(data), data)
    posts = [t for t, m, k in script.log if k == "upload"]
    assert len(posts) == 2 and posts[1] - posts[0] >= 0.38
    assert [(e.delay, e.attempt) for e in retries] == [(0.4, 1)]
    assert "HTTP 400" in (retries[0].reason or "")


async def test_throttle_paces_concurrent_takers_to_the_rate() -> None:
    throttle = Throttle(2_000_000, burst=0.05)
    sent = 0

    async def worker() -> None:
        nonlocal sent
        for _ in range(10):
            await throttle.acquire(50_000)
            sent += 50_000

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(4)))
    elapsed = time.monotonic() - started
    # 2 MB at 2 MB/s: about 1 s, less one burst and the first chunk.
    assert sent == 2_000_000 and 0.85 <= elapsed <= 1.5


async def test_a_server_that_is_not_there_is_an_outage_not_a_crash(unused_tcp_port: int) -> None:
    base = f"http://127.0.0.1:{unused_tcp_port}"
    policy = RetryPolicy(max_attempts=3, max_delay=0.01, jitter=0.0)
    async with UploadClient(TOKEN, f"{base}/graph", f"{base}/up", policy=policy) as client:
        with pytest.raises(RetriesExhausted, match="connection error"):
            await client.upload_bytes("k.jpg", b"x" * 100)
        with pytest.raises(RetriesExhausted):
            await client.finish_upload("h")


# -- against the embedded server ------------------------------------------------------------------


def tagged_jpeg(folder: Path, index: int, size: int = 64) -> bytes:
    """A real JPEG (noise, so it does not compress) carrying a valid Mapillary description."""
    path = folder / f"IMG_{index:04d}.jpg"
    picture = Image.frombytes("RGB", (size, size), os.urandom(size * size * 3))
    picture.save(path, "JPEG", quality=95)
    description = {
        "MAPLatitude": round(48.1 + index * 1e-4, 7),
        "MAPLongitude": round(11.5 + index * 1e-4, 7),
        "MAPCaptureTime": f"2024_06_01_10_00_{index % 60:02d}_000",
        "MAPCompassHeading": {"TrueHeading": 90.0, "MagneticHeading": 90.0},
        "MAPOrientation": 1,
        "MAPDeviceMake": "Test",
        "MAPDeviceModel": "Noise",
        "MAPFilename": path.name,
    }
    return tagged_bytes(path, json.dumps(description, separators=(",", ":"), sort_keys=True))


async def send_image(client: UploadClient, data: bytes, **kwargs: Any) -> str:
    """One image under its deterministic session key, as the sequence uploader sends it."""
    return await client.upload_bytes(session_key(data), data, **kwargs)


async def send_sequence(client: UploadClient, images: list[bytes]) -> str:
    """Images, manifest, finish: the protocol's whole sequence; returns the cluster id."""
    handles = await asyncio.gather(*(send_image(client, d) for d in images))
    return await client.finish_upload(await client.upload_manifest(handles))


def collect(bus: EventBus, kind: str) -> list[UploadEvent]:
    seen: list[UploadEvent] = []
    bus.subscribe(lambda e: seen.append(e) if e.kind == kind else None)
    return seen


async def test_a_sequence_reaches_the_embedded_server_once(tmp_path: Path) -> None:
    images = [tagged_jpeg(tmp_path, i) for i in range(3)]
    async with running_server(ServerConfig(data_dir=tmp_path / "srv")) as server:
        async with UploadClient(TOKEN, server.graph_url, server.upload_url) as client:
            cluster = await send_sequence(client, images)
            account = await client.me()
        sequences = server.sequences()
        stats = server.stats()
    assert [s["cluster_id"] for s in sequences] == [cluster]
    assert stats["images"] == 3 and stats["faults_injected"] == 0
    assert account["username"] and account["id"]


async def test_settings_reach_the_wire_organization_included(tmp_path: Path) -> None:
    images = [tagged_jpeg(tmp_path, i) for i in range(2)]
    async with running_server(ServerConfig(data_dir=tmp_path / "srv")) as server:
        conf = tmp_path / "config.toml"
        conf.write_text('organization_id = "1234"\nconcurrency = 2\n')
        # The endpoints come the way a user sets them: mapillary_tools' environment variables.
        env = {**server.environment(), "MAX_ATTEMPTS": "3"}
        settings = config.load(conf, env=env)
        client = UploadClient.from_settings(settings, TOKEN)
        async with client:
            cluster = await send_sequence(client, images)
        sequences = server.sequences()
    assert client.policy.max_attempts == 3 and client.concurrency == 2
    assert [(s["cluster_id"], s["organization_id"]) for s in sequences] == [(cluster, "1234")]


async def test_dropped_bodies_resume_and_never_resend_what_the_server_kept(tmp_path: Path) -> None:
    data = tagged_jpeg(tmp_path, 1, size=700)  # about 1 MB
    # Every POST is cut at a random point inside its body: only resuming gets it through, and
    # each cut is progress, so a budget of two failures in a row is enough.
    config = ServerConfig(data_dir=tmp_path / "srv", drop_rate=1.0, seed=7)
    bus = EventBus()
    retries = collect(bus, "retry")
    tight = RetryPolicy(max_attempts=2, max_delay=0.01, jitter=0.0)
    async with running_server(config) as server:
        async with UploadClient(
            TOKEN, server.graph_url, server.upload_url, policy=tight, events=bus
        ) as client:
            handle = await send_image(client, data)
        stats = server.stats()
        held = server.store.held(session_key(data))
    assert handle and held == len(data)
    assert len(retries) >= 2 and stats["faults_injected"] == len(retries)
    # The server read every byte of the image exactly once: each retry resumed at the offset
    # it reported, so only bytes still in flight at a cut (never read) were sent again.
    assert stats["bytes_received"] == len(data)


async def test_two_writers_of_one_image_meet_a_412_and_both_get_the_handle(tmp_path: Path) -> None:
    data = tagged_jpeg(tmp_path, 2, size=900)
    # A capped server keeps the first body in flight while the second writer arrives.
    config = ServerConfig(data_dir=tmp_path / "srv", bandwidth=4_000_000)
    bus = EventBus()
    retries = collect(bus, "retry")
    slow = RetryPolicy(max_attempts=4, max_delay=16.0)
    async with running_server(config) as server:
        async with (
            UploadClient(
                TOKEN, server.graph_url, server.upload_url, policy=slow, events=bus
            ) as one,
            UploadClient(
                TOKEN, server.graph_url, server.upload_url, policy=slow, events=bus
            ) as two,
        ):
            key = session_key(data)
            started = time.monotonic()
            handles = await asyncio.gather(one.upload_bytes(key, data), two.upload_bytes(key, data))
            elapsed = time.monotonic() - started
        stats = server.stats()
    assert handles[0] == handles[1]
    assert [r.delay for r in retries] == [0.0] and "HTTP 412" in (retries[0].reason or "")
    assert stats["bytes_received"] == len(data) and elapsed < 1.0 + len(data) / 4_000_000


async def test_rate_limited_requests_wait_for_retry_after(tmp_path: Path) -> None:
    data = tagged_jpeg(tmp_path, 3)
    config = ServerConfig(data_dir=tmp_path / "srv", rate_limit=1.0)  # the probe takes it all
    bus = EventBus()
    retries = collect(bus, "retry")
    async with running_server(config) as server:
        async with UploadClient(
            TOKEN, server.graph_url, server.upload_url, policy=FAST, events=bus
        ) as client:
            started = time.monotonic()
            await client.upload_bytes(session_key(data), data)
            elapsed = time.monotonic() - started
        stats = server.stats()
    assert [r.delay for r in retries] == [1.0] and "HTTP 429" in (retries[0].reason or "")
    assert 0.95 <= elapsed <= 3.0
    assert stats["requests"] == 3  # probe, refused POST, POST: no extra probe after a 429


async def test_server_errors_are_each_retried_once_and_the_sequence_finishes(
    tmp_path: Path,
) -> None:
    images = [tagged_jpeg(tmp_path, i) for i in range(4)]
    config = ServerConfig(data_dir=tmp_path / "srv", fail_rate=0.4, seed=3)
    bus = EventBus()
    retries = collect(bus, "retry")
    patient = RetryPolicy(max_attempts=12, max_delay=0.02, jitter=0.0)  # a probe per retry
    async with running_server(config) as server:
        async with UploadClient(
            TOKEN, server.graph_url, server.upload_url, policy=patient, events=bus
        ) as client:
            cluster = await send_sequence(client, images)
        stats = server.stats()
        sequences = server.sequences()
    assert stats["faults_injected"] >= 1 and len(retries) == stats["faults_injected"]
    assert all(r.reason and r.reason.startswith("HTTP 5") for r in retries)
    assert [s["cluster_id"] for s in sequences] == [cluster] and stats["images"] == 4


async def test_an_outage_longer_than_the_budget_raises_retriable(tmp_path: Path) -> None:
    config = ServerConfig(data_dir=tmp_path / "srv", outage=(0.0, 60.0), seed=1)
    policy = RetryPolicy(max_attempts=4, max_delay=0.02, jitter=0.0)
    async with running_server(config) as server:
        async with UploadClient(
            TOKEN, server.graph_url, server.upload_url, policy=policy
        ) as client:
            with pytest.raises(RetriesExhausted, match="gave up after 4 failed attempts") as caught:
                await send_image(client, tagged_jpeg(tmp_path, 4), name="IMG_4.jpg")
        stats = server.stats()
    assert caught.value.retriable and "IMG_4.jpg" in str(caught.value)
    # aiohttp may itself repeat a GET once on a kept-alive connection that was cut, so the
    # server can count more faults than our attempts; none of them let a byte through.
    assert stats["faults_injected"] >= 4 and stats["requests"] == stats["faults_injected"]
    assert stats["bytes_received"] == 0


async def test_a_short_outage_is_waited_out(tmp_path: Path) -> None:
    config = ServerConfig(data_dir=tmp_path / "srv", outage=(0.0, 0.6), seed=2)
    policy = RetryPolicy(max_attempts=10, max_delay=0.2, jitter=0.0)
    data = tagged_jpeg(tmp_path, 5)
    async with running_server(config) as server:
        async with UploadClient(
            TOKEN, server.graph_url, server.upload_url, policy=policy
        ) as client:
            handle = await send_image(client, data)
        assert server.store.held(session_key(data)) == len(data) and handle


async def test_a_token_the_server_does_not_know_stops_with_auth_error(tmp_path: Path) -> None:
    config = ServerConfig(data_dir=tmp_path / "srv", tokens=("the-right-token",))
    async with running_server(config) as server:
        async with UploadClient(TOKEN, server.graph_url, server.upload_url, policy=FAST) as client:
            with pytest.raises(AuthError) as caught:
                await send_image(client, tagged_jpeg(tmp_path, 6))
            with pytest.raises(AuthError):
                await client.me()
        stats = server.stats()
    assert TOKEN not in str(caught.value) and "authenticate" in str(caught.value)
    assert stats["requests"] == 2 and stats["bytes_received"] == 0


async def test_a_file_the_server_refuses_fails_with_its_reason(tmp_path: Path) -> None:
    not_a_photo = b"this is not a JPEG at all" * 100
    async with running_server(ServerConfig(data_dir=tmp_path / "srv")) as server:
        async with UploadClient(TOKEN, server.graph_url, server.upload_url, policy=FAST) as client:
            with pytest.raises(RejectedError, match="refused by the server: HTTP 400") as caught:
                await send_image(client, not_a_photo, name="notes.jpg")
        stats = server.stats()
    assert "notes.jpg" in str(caught.value) and "JPEG" in str(caught.value)
    assert stats["requests"] == 2  # probe and one POST: no retry


async def test_finish_upload_survives_a_5xx_window_and_makes_one_sequence(tmp_path: Path) -> None:
    images = [tagged_jpeg(tmp_path, i) for i in range(2)]
    # The outage opens after the images are up; finish_upload runs into it and must retry.
    config = ServerConfig(data_dir=tmp_path / "srv", outage=(1.5, 0.5), seed=4)
    policy = RetryPolicy(max_attempts=20, max_delay=0.1, jitter=0.0)
    bus = EventBus()
    retries = collect(bus, "retry")
    started = time.monotonic()
    async with running_server(config) as server:
        async with UploadClient(
            TOKEN, server.graph_url, server.upload_url, policy=policy, events=bus
        ) as client:
            handles = [await send_image(client, d) for d in images]
            manifest = await client.upload_manifest(handles)
            assert time.monotonic() - started < 1.5, "too slow to reach finish before the outage"
            await asyncio.sleep(1.6 - (time.monotonic() - started))
            cluster = await client.finish_upload(manifest)
            again = await client.finish_upload(manifest)  # a retry after a lost reply
        sequences = server.sequences()
    assert [r.key for r in retries] and {r.key for r in retries} == {"finish_upload"}
    assert again == cluster and [s["cluster_id"] for s in sequences] == [cluster]


async def test_the_client_cap_paces_uploads_to_the_embedded_server(tmp_path: Path) -> None:
    images = [tagged_jpeg(tmp_path, i, size=500) for i in range(3)]
    total = sum(len(d) for d in images)
    cap = Throttle(total / 1.5, burst=0.05)  # the whole lot should take about 1.5 s
    async with running_server(ServerConfig(data_dir=tmp_path / "srv")) as server:
        async with UploadClient(
            TOKEN, server.graph_url, server.upload_url, throttle=cap, concurrency=3
        ) as client:
            started = time.monotonic()
            await asyncio.gather(*(send_image(client, d) for d in images))
            elapsed = time.monotonic() - started
        assert server.stats()["bytes_received"] == total
    assert 1.1 <= elapsed <= 3.0


async def test_events_tell_the_whole_story_of_one_upload(tmp_path: Path) -> None:
    data = tagged_jpeg(tmp_path, 9, size=700)
    events: list[UploadEvent] = []
    progress: list[tuple[int, int]] = []
    bus = EventBus()
    bus.subscribe(events.append)
    bus.subscribe(lambda e: 1 / 0)  # a broken subscriber must not break the upload
    async with (
        running_server(ServerConfig(data_dir=tmp_path / "srv")) as server,
        UploadClient(
            TOKEN, server.graph_url, server.upload_url, events=bus, chunk_size=100_000
        ) as client,
    ):
        handle = await send_image(
            client,
            data,
            on_progress=lambda sent, total: progress.append((sent, total)),
            name="a.jpg",
        )
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and set(kinds[1:-1]) == {"progress"}
    assert events[-1].handle == handle and events[0].name == "a.jpg"
    offsets = [sent for sent, _ in progress]
    chunks = -(-len(data) // 100_000)
    assert offsets == sorted(offsets) and offsets[-1] == len(data) and len(offsets) == chunks + 1
    assert all(total == len(data) for _, total in progress)


async def test_a_fresh_post_meets_a_412_where_a_killed_run_left_bytes_and_resumes(
    tmp_path: Path,
) -> None:
    data = tagged_jpeg(tmp_path, 3, size=700)
    once = RetryPolicy(max_attempts=1, max_delay=0.01, jitter=0.0)
    # A first run is cut mid-body and gives up: the server keeps a prefix of the image.
    dropping = ServerConfig(data_dir=tmp_path / "srv", drop_rate=1.0, seed=3)
    async with running_server(dropping) as server:
        async with UploadClient(TOKEN, server.graph_url, server.upload_url, policy=once) as c:
            with pytest.raises(RetriesExhausted):
                await send_image(c, data)
        kept = server.store.held(session_key(data))
    assert 0 < kept < len(data)
    # The next run starts at 0 without a probe (it never sent this key, as far as it knows):
    # the server refuses with 412 before reading the body, and the client resumes at `kept`.
    bus = EventBus()
    retries = collect(bus, "retry")
    async with running_server(ServerConfig(data_dir=tmp_path / "srv")) as server:
        async with UploadClient(TOKEN, server.graph_url, server.upload_url, events=bus) as c:
            handle = await send_image(c, data, fresh=True)
        held = server.store.held(session_key(data))
        received = server.stats()["bytes_received"]
    assert handle and held == len(data)
    assert len(retries) == 1 and "412" in (retries[0].reason or "")
    assert received == len(data) - kept  # nothing the first run delivered was read again
