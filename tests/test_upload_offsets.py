"""Uploads against a second, independently written server that behaves like the real service.

Not the embedded server (``daemon.server``): a small aiohttp app defined here, with the real
service's habits the issue names: it keeps part of a body it received before failing, answers a
wrong offset with a plain 400 ("offset 0 != 691"), and rate limits with 429 or a 400
``RequestRateLimitedError`` marked ``retriable: false`` carrying a ``backoff``. The real sequence
uploader sends two queued sequences through it; every image must arrive once, both sequences
finish, and the bytes sent twice stay within what the server lost plus one request.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest
from aiohttp import web

from daemon.journal import AsyncJournal, SequenceState
from daemon.mapillary import RetryPolicy
from daemon.upload.client import UploadClient
from daemon.upload.worker import SequenceUploader
from tests.test_upload_worker import described_folder, queue_folder

TOKEN = "offsets-test-token-" + "z" * 10
FAST = RetryPolicy(max_attempts=5, max_delay=0.02, jitter=0.0)


@dataclass
class LikeTheService:
    """Holds bytes per key; ``faults`` are consumed by the POSTs carrying a body, in order:
    "half500" keeps half the body and answers 500, "ratelimit429"/"ratelimit400" refuse it."""

    faults: list[str] = field(default_factory=list)
    held: dict[str, bytes] = field(default_factory=dict)
    received: int = 0  # body bytes read off the wire
    lost: int = 0  # body bytes read and thrown away
    probes: int = 0
    posts: int = 0
    clusters: dict[str, list[str]] = field(default_factory=dict)

    async def probe(self, request: web.Request) -> web.StreamResponse:
        self.probes += 1
        return web.json_response({"offset": len(self.held.get(request.match_info["key"], b""))})

    async def post(self, request: web.Request) -> web.StreamResponse:
        self.posts += 1
        key = request.match_info["key"]
        offset = int(request.headers["Offset"])
        data = await request.read()
        self.received += len(data)
        held = self.held.get(key, b"")
        if offset != len(held):
            self.lost += len(data)
            return web.json_response(
                {"error": {"message": f"offset {offset} != {len(held)}"}}, status=400
            )
        fault = self.faults.pop(0) if self.faults and data else None
        if fault == "half500":
            kept = len(data) // 2
            self.held[key] = held + data[:kept]
            self.lost += len(data) - kept
            return web.json_response({"error": {"message": "internal"}}, status=500)
        if fault == "reset":  # the service lost the session: it holds nothing for the key
            self.lost += len(held) + len(data)
            self.held.pop(key, None)
            return web.json_response({"error": {"message": "session reset"}}, status=503)
        if fault == "outage":
            self.lost += len(data)
            return web.json_response({"error": {"message": "unavailable"}}, status=503)
        if fault in ("ratelimit429", "ratelimit400"):
            self.lost += len(data)
            reply = {
                "debug_info": {"type": "RequestRateLimitedError", "retriable": False, "backoff": 30}
            }
            return web.json_response(reply, status=429 if fault == "ratelimit429" else 400)
        self.held[key] = held + data
        return web.json_response({"h": f"h:{key}"})

    async def finish(self, request: web.Request) -> web.StreamResponse:
        payload = await request.json()
        manifest = json.loads(self.held[payload["file_handle"].removeprefix("h:")])
        cluster = f"cluster-{payload['file_handle']}"
        self.clusters[cluster] = manifest["image_handles"]
        return web.json_response({"cluster_id": cluster})


@pytest.fixture
async def service() -> AsyncIterator[tuple[LikeTheService, str, str]]:
    state = LikeTheService()
    app = web.Application(client_max_size=64 * 2**20)
    app.add_routes(
        [
            web.get("/up/{key}", state.probe),
            web.post("/up/{key}", state.post),
            web.post("/graph/finish_upload", state.finish),
        ]
    )
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield state, f"{base}/graph", f"{base}/up"
    finally:
        await runner.cleanup()


async def upload_two_sequences(
    tmp_path: Path,
    service: tuple[LikeTheService, str, str],
    faults: list[str],
    policy: RetryPolicy = FAST,
) -> tuple[LikeTheService, AsyncJournal, list[str], int]:
    state, graph, up = service
    state.faults = faults
    total = 0
    uuids: list[str] = []
    journal = await AsyncJournal.open(tmp_path / "journal.sqlite3")
    for seed in (1, 2):
        folder = tmp_path / f"card{seed}"
        paths = described_folder(folder, 3, seed=seed, size=(320, 240))
        total += sum(p.stat().st_size for p in paths)
        uuids += await journal.run(partial(queue_folder, folder=folder))
    async with UploadClient(TOKEN, graph, up, policy=policy, concurrency=1) as client:
        await SequenceUploader(journal, client).upload_all(uuids)
    return state, journal, uuids, total


def assert_each_image_once(state: LikeTheService, journal: AsyncJournal, uuids: list[str]) -> None:
    for uuid in uuids:
        row = journal.journal.get_sequence(uuid)
        assert row is not None and row.state == SequenceState.FINISHED, (uuid, row)
    handles = [h for hs in state.clusters.values() for h in hs]
    assert len(handles) == 6 and len(set(handles)) == 6 and len(state.clusters) == 2


async def test_bodies_half_kept_on_500_are_resumed_after_a_probe_and_both_sequences_finish(
    tmp_path: Path, service: tuple[LikeTheService, str, str]
) -> None:
    state, journal, uuids, _total = await upload_two_sequences(tmp_path, service, ["half500"] * 3)
    try:
        assert_each_image_once(state, journal, uuids)
        stored = sum(len(b) for b in state.held.values())
        resent = state.received - stored
        biggest = max(len(b) for b in state.held.values())
        assert resent <= state.lost + biggest, (resent, state.lost)
        assert resent == state.lost  # exactly the halves the server threw away
    finally:
        await journal.aclose()


async def test_rate_limits_marked_not_retriable_are_retried_after_their_backoff(
    tmp_path: Path, service: tuple[LikeTheService, str, str]
) -> None:
    faults = ["ratelimit429", "ratelimit400", "half500", "ratelimit400"]
    state, journal, uuids, _total = await upload_two_sequences(tmp_path, service, faults)
    try:
        assert_each_image_once(state, journal, uuids)
        assert state.faults == []
        stored = sum(len(b) for b in state.held.values())
        assert state.received - stored == state.lost
    finally:
        await journal.aclose()


async def test_a_session_reset_to_offset_0_and_an_outage_resend_only_what_was_lost(
    tmp_path: Path, service: tuple[LikeTheService, str, str]
) -> None:
    faults = ["half500", "reset", "outage", "outage", "half500", "reset"]
    real = RetryPolicy(max_delay=0.02, jitter=0.0)  # the real budget of failures in a row
    state, journal, uuids, _total = await upload_two_sequences(tmp_path, service, faults, real)
    try:
        assert_each_image_once(state, journal, uuids)
        assert state.faults == []
        stored = sum(len(b) for b in state.held.values())
        assert state.received - stored == state.lost
    finally:
        await journal.aclose()
