"""The upload client against real HTTP servers on 127.0.0.1.

Most stories run against the embedded server (``daemon.server``). A tiny aiohttp app defined here
is used only for reply shapes the embedded server does not produce (Graph-style 400 auth errors,
a refused item, a 412 from a concurrent writer, JSON ``backoff`` hints).
"""

from __future__ import annotations

import asyncio
import doctest
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from daemon.upload import client as client_module
from daemon.upload import retry as retry_module
from daemon.upload import throttle as throttle_module
from daemon.upload.client import (
    AuthError,
    RejectedError,
    RetriesExhausted,
    UploadClient,
    Uploader,
    session_key,
)
from daemon.upload.events import EventBus, UploadEvent
from daemon.upload.retry import RetryPolicy
from daemon.upload.throttle import Throttle

FAST = RetryPolicy(max_attempts=6, max_delay=0.02, jitter=0.0)
TOKEN = "test-token-" + "x" * 12


def test_doctests() -> None:
    for module in (retry_module, throttle_module, client_module):
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
    offsets: list[int] = field(default_factory=list)  # the offset each upload POST started at
    bytes_received: int = 0

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
        self.offsets.append(len(held))
        # Keep every byte as it arrives, as the service does, so a dropped body resumes.
        async for chunk in request.content.iter_any():
            self.bytes_received += len(chunk)
            self.objects[key] = self.objects.get(key, b"") + chunk
        return web.json_response({"h": f"handle-{key}"})

    def drop_after(self, nbytes: int) -> Handler:
        """A fault: keep the first ``nbytes`` of the body, then cut the connection."""

        async def handler(request: web.Request) -> web.StreamResponse:
            key = request.match_info["key"]
            self.offsets.append(len(self.objects.get(key, b"")))
            part = await request.content.readexactly(nbytes)
            self.bytes_received += len(part)
            self.objects[key] = self.objects.get(key, b"") + part
            assert request.transport is not None
            request.transport.close()
            raise ConnectionResetError("dropped by the test")

        return handler

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
            await Uploader(client).upload_image(os.urandom(1000))
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


async def test_a_refused_item_fails_once_with_the_servers_message(scripted) -> None:
    script, graph, upload = scripted
    script.faults.append(("upload", reply(422, {"error": {"message": "image has no GPS"}})))
    async with UploadClient(TOKEN, graph, upload, policy=FAST) as client:
        with pytest.raises(RejectedError, match="image has no GPS") as caught:
            await client.upload_bytes("k1.jpg", b"x" * 5000, name="IMG_1.jpg")
    assert caught.value.status == 422 and "IMG_1.jpg" in str(caught.value)
    assert script.count("upload") == 1 and not script.objects


async def test_412_from_a_concurrent_writer_reprobes_at_once(scripted) -> None:
    script, graph, upload = scripted
    data = os.urandom(300_000)
    key = session_key(data)

    async def someone_else_wrote_half(request: web.Request) -> web.StreamResponse:
        await request.read()
        script.objects[key] = data[:100_000]
        return web.json_response(
            {"debug_info": {"retriable": True, "type": "OffsetInvalidError"}}, status=412
        )

    script.faults.append(("upload", someone_else_wrote_half))
    slow = RetryPolicy(max_attempts=3, max_delay=16.0)  # a backoff would take >= 1 s
    started = time.monotonic()
    async with UploadClient(TOKEN, graph, upload, policy=slow) as client:
        handle = await client.upload_bytes(key, data)
    assert time.monotonic() - started < 0.8
    assert handle == f"handle-{key}" and script.objects[key] == data
    assert [k for _, m, k in script.log] == ["probe", "upload", "probe", "upload"]


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


async def test_events_tell_the_whole_story_of_one_upload(scripted) -> None:
    script, graph, upload = scripted
    data = os.urandom(1_000_000)
    events: list[UploadEvent] = []
    progress: list[tuple[int, int]] = []
    bus = EventBus()
    bus.subscribe(events.append)
    bus.subscribe(lambda e: 1 / 0)  # a broken subscriber must not break the upload
    async with UploadClient(TOKEN, graph, upload, events=bus, chunk_size=100_000) as client:
        handle = await Uploader(client).upload_image(
            data, lambda sent, total: progress.append((sent, total)), name="a.jpg"
        )
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and set(kinds[1:-1]) == {"progress"}
    assert events[-1].handle == handle and events[0].name == "a.jpg"
    offsets = [sent for sent, _ in progress]
    assert offsets == sorted(offsets) and offsets[-1] == len(data) and len(offsets) == 11


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


async def test_a_body_dropped_midway_resumes_from_the_servers_offset(scripted) -> None:
    script, graph, upload = scripted
    data = os.urandom(2_000_000)
    script.faults.append(("upload", script.drop_after(700_000)))
    retries: list[UploadEvent] = []
    bus = EventBus()
    bus.subscribe(lambda e: retries.append(e) if e.kind == "retry" else None)
    async with UploadClient(TOKEN, graph, upload, policy=FAST, events=bus) as client:
        handle = await Uploader(client).upload_image(data)
    key = session_key(data)
    assert handle == f"handle-{key}" and script.objects[key] == data
    assert script.offsets == [0, 700_000]
    # Nothing the server kept was sent twice.
    assert script.bytes_received == len(data)
    assert len(retries) == 1 and "connection" in (retries[0].reason or "")


async def test_failures_that_make_progress_do_not_use_up_the_budget(scripted) -> None:
    script, graph, upload = scripted
    data = os.urandom(1_000_000)
    script.faults.extend(("upload", script.drop_after(150_000)) for _ in range(5))
    tight = RetryPolicy(max_attempts=2, max_delay=0.01, jitter=0.0)
    async with UploadClient(TOKEN, graph, upload, policy=tight) as client:
        await client.upload_bytes(session_key(data), data)
    assert script.objects[session_key(data)] == data
    assert script.offsets == [0, 150_000, 300_000, 450_000, 600_000, 750_000]


async def test_429_waits_as_long_as_retry_after_says(scripted) -> None:
    script, graph, upload = scripted
    script.faults.append(("upload", reply(429, {"error": "slow down"}, {"Retry-After": "1"})))
    data = os.urandom(200_000)
    async with UploadClient(TOKEN, graph, upload, policy=FAST) as client:
        await client.upload_bytes(session_key(data), data)
    posts = [t for t, m, k in script.log if k == "upload"]
    assert len(posts) == 2 and 0.95 <= posts[1] - posts[0] <= 3.0


async def test_a_burst_of_5xx_is_retried_with_backoff_then_succeeds(scripted) -> None:
    script, graph, upload = scripted
    for status in (500, 502, 503):
        script.faults.append(("upload", reply(status, {"error": {"message": f"oops {status}"}})))
    events: list[UploadEvent] = []
    bus = EventBus()
    bus.subscribe(events.append)
    data = os.urandom(300_000)
    async with UploadClient(TOKEN, graph, upload, policy=FAST, events=bus) as client:
        await client.upload_bytes(session_key(data), data)
    retries = [e for e in events if e.kind == "retry"]
    assert [e.attempt for e in retries] == [1, 2, 3]
    assert [e.reason for e in retries] == [
        "HTTP 500: oops 500",
        "HTTP 502: oops 502",
        "HTTP 503: oops 503",
    ]
    assert events[-1].kind == "end" and script.objects[session_key(data)] == data


async def test_an_outage_longer_than_the_budget_gives_up_retriably(scripted) -> None:
    script, graph, upload = scripted
    script.faults.extend(("probe", reply(503, {"error": "down"})) for _ in range(20))
    policy = RetryPolicy(max_attempts=4, max_delay=0.02, jitter=0.0)
    async with UploadClient(TOKEN, graph, upload, policy=policy) as client:
        with pytest.raises(RetriesExhausted, match="gave up after 4 failed attempts") as caught:
            await Uploader(client).upload_image(os.urandom(10_000), name="IMG_9.jpg")
    assert caught.value.retriable and "IMG_9.jpg" in str(caught.value)
    assert script.count("probe") == 4 and script.count("upload") == 0


async def test_a_server_that_is_not_there_is_an_outage_not_a_crash(unused_tcp_port: int) -> None:
    base = f"http://127.0.0.1:{unused_tcp_port}"
    policy = RetryPolicy(max_attempts=3, max_delay=0.01, jitter=0.0)
    async with UploadClient(TOKEN, f"{base}/graph", f"{base}/up", policy=policy) as client:
        with pytest.raises(RetriesExhausted, match="connection error"):
            await client.upload_bytes("k.jpg", b"x" * 100)
        with pytest.raises(RetriesExhausted):
            await client.finish_upload("h")


async def test_a_401_stops_at_once_and_says_so(scripted) -> None:
    script, graph, upload = scripted
    script.faults.append(("upload", reply(401, {"error": {"message": "bad token"}})))
    async with UploadClient(TOKEN, graph, upload, policy=FAST) as client:
        with pytest.raises(AuthError, match="run 'mapillary-daemon authenticate'"):
            await Uploader(client).upload_image(os.urandom(100_000))
    assert script.count("upload") == 1


async def test_finish_upload_is_retried_after_a_5xx_and_makes_one_sequence(scripted) -> None:
    script, graph, upload = scripted
    script.faults.append(("finish", reply(502, {"error": "bad gateway"})))
    images = [os.urandom(50_000 + i) for i in range(3)]
    async with UploadClient(TOKEN, graph, upload, policy=FAST, organization_id="99") as client:
        uploader = Uploader(client)
        cluster = await uploader.upload_sequence(
            [(f"{i}.jpg", (lambda d=d: d)) for i, d in enumerate(images)]
        )
    assert script.count("finish") == 2
    assert list(script.finished.values()) == [cluster]
    manifest_keys = [k for k in script.objects if k.startswith("uuid_")]
    assert len(manifest_keys) == 1 and manifest_keys[0].endswith(".json")
    manifest = json.loads(script.objects[manifest_keys[0]])
    assert manifest == {
        "image_handles": [f"handle-{session_key(d)}" for d in images],
        "upload_type": "images",
        "version": "1",
    }


async def test_the_bandwidth_cap_is_shared_by_all_workers(scripted) -> None:
    script, graph, upload = scripted
    images = [os.urandom(500_000) for _ in range(3)]
    cap = Throttle(1_000_000, burst=0.05)
    async with UploadClient(TOKEN, graph, upload, throttle=cap, concurrency=3) as client:
        uploader = Uploader(client)
        started = time.monotonic()
        await asyncio.gather(*(uploader.upload_image(d) for d in images))
        elapsed = time.monotonic() - started
    assert script.bytes_received == 1_500_000
    # 1.5 MB at 1 MB/s: about 1.5 s (less one burst and one chunk), loosely bounded above.
    assert 1.1 <= elapsed <= 3.0
