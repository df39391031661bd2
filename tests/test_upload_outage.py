"""A 10-minute outage of the upload service, in server time, must not dead-end an upload.

The second, independently written server of ``tests.test_upload_offsets`` (bodies kept in
part on a 5xx, 400 on a wrong offset) goes down in the middle of the second sequence: the POST
that starts the outage keeps half its body and answers 500, then every request (probe, POST,
finish_upload) is answered 503 for 600 seconds of server time.

Time is compressed by ``SCALE``: the server's clock runs that many times faster than the wall
clock, and so do the client's waits (the real retry policy: 10 failures in a row, backoff
doubling to 16 s, jitter; and between passes the daemon's own pass backoff, 2 s doubling to
``OFFLINE_BACKOFF_MAX``). The outage therefore outlasts the client's retry budget several
times over, exactly as 10 real minutes would, in a few seconds. Each pass that gives up leaves
its sequences pending (never failed); the next pass resumes from the offset the server holds.
``tests/bench/bench_outage.py`` runs the same story at any scale, up to real time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from daemon.journal import AsyncJournal, SequenceState
from daemon.mapillary import RetriesExhausted, RetryPolicy
from daemon.runtime.uploading import OFFLINE_BACKOFF_MAX
from daemon.upload.client import UploadClient
from daemon.upload.worker import SequenceUploader
from tests.test_upload_offsets import TOKEN, LikeTheService, assert_each_image_once
from tests.test_upload_worker import described_folder, queue_folder

SCALE = 200.0  # server seconds per wall-clock second: 600 s of outage take 3 s
OUTAGE_S = 600.0


@dataclass(frozen=True)
class Compressed(RetryPolicy):
    """The real retry policy, every wait shortened by ``scale`` (the server's clock is faster
    by as much), so that its budget is spent against the outage as in real time."""

    scale: float = 1.0

    def delay(
        self,
        n: int,
        headers: Any = None,
        body: Any = None,
        now: float | None = None,
        rng: Any = None,
    ) -> float:
        return super().delay(n, headers, body, now, rng) / self.scale


@dataclass
class Outage:
    """Down for ``length`` server seconds from the first 500 the service answers."""

    service: LikeTheService
    scale: float
    length: float
    started: float | None = None  # server time
    ended: float | None = None
    refused: int = 0
    bodies: int = 0  # POSTs that carried a body into the outage

    def now(self) -> float:
        return time.monotonic() * self.scale

    def down(self) -> bool:
        if self.started is None or self.ended is not None:
            return False
        if self.now() - self.started >= self.length:
            self.ended = self.now()
            return False
        return True

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if self.down():
            self.refused += 1
            data = await request.read()
            if data:
                self.bodies += 1
                self.service.received += len(data)
                self.service.lost += len(data)
            return web.json_response({"error": {"message": "service unavailable"}}, status=503)
        response = await handler(request)
        if response.status == 500 and self.started is None:
            self.started = self.now()
        return response


@dataclass
class Figures:
    passes: int
    passes_given_up: int
    refused: int
    bodies_into_outage: int
    received: int
    stored: int
    lost: int
    biggest: int
    outage_s: float  # server seconds it lasted
    wall_s: float


@pytest.fixture
async def down_for_a_while() -> AsyncIterator[tuple[LikeTheService, Outage, str, str]]:
    async with serve(SCALE, OUTAGE_S) as served:
        yield served


class serve:
    """The service behind the outage on 127.0.0.1 (async context: state, outage, urls)."""

    def __init__(self, scale: float, length: float) -> None:
        self.state = LikeTheService()
        self.outage = Outage(self.state, scale, length)
        self.runner: web.AppRunner | None = None

    async def __aenter__(self) -> tuple[LikeTheService, Outage, str, str]:
        app = web.Application(client_max_size=64 * 2**20, middlewares=[self.outage.middleware])
        app.add_routes(
            [
                web.get("/up/{key}", self.state.probe),
                web.post("/up/{key}", self.state.post),
                web.post("/graph/finish_upload", self.state.finish),
            ]
        )
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self.state, self.outage, f"{base}/graph", f"{base}/up"

    async def __aexit__(self, *exc: object) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def ride_out(
    tmp_path: Path, served: tuple[LikeTheService, Outage, str, str], outage_on: bool = True
) -> tuple[Figures, AsyncJournal, list[str]]:
    """Two sequences of 3 photos sent through the outage, pass after pass, as the daemon
    does; every pass leaves what it could not send pending. ``outage_on`` False: the same
    upload without one (the bench's baseline)."""
    state, outage, graph, up = served
    if not outage_on:
        outage.length = 0.0
    state.faults = ["", "", "", "", "half500"]  # 3 photos, a manifest, then the 2nd sequence
    journal = await AsyncJournal.open(tmp_path / "journal.sqlite3")
    uuids: list[str] = []
    for seed in (1, 2):
        folder = tmp_path / f"card{seed}"
        described_folder(folder, 3, seed=seed, size=(320, 240))
        uuids += await journal.run(partial(queue_folder, folder=folder))
    policy = Compressed(scale=outage.scale)
    began = time.monotonic()
    passes = given_up = 0
    backoff = 2.0  # the daemon's pass backoff (daemon.runtime.uploading)
    async with UploadClient(TOKEN, graph, up, policy=policy, concurrency=1) as client:
        uploader = SequenceUploader(journal, client)
        while pending := [
            u for u in uuids if journal.journal.get_sequence(u).state != SequenceState.FINISHED
        ]:
            assert passes < 100, "the upload never got through"
            passes += 1
            try:
                await uploader.upload_all(pending)
            except RetriesExhausted:
                given_up += 1
                await asyncio.sleep(backoff / outage.scale)
                backoff = min(backoff * 2, OFFLINE_BACKOFF_MAX)
            failed = [u for u in uuids if journal.journal.get_sequence(u).state == "failed"]
            assert failed == [], "an outage failed a sequence: a dead end"
    stored = sum(len(b) for b in state.held.values())
    figures = Figures(
        passes=passes,
        passes_given_up=given_up,
        refused=outage.refused,
        bodies_into_outage=outage.bodies,
        received=state.received,
        stored=stored,
        lost=state.lost,
        biggest=max(len(b) for b in state.held.values()),
        outage_s=(outage.ended or outage.now()) - (outage.started or 0.0),
        wall_s=time.monotonic() - began,
    )
    return figures, journal, uuids


async def test_a_ten_minute_outage_is_ridden_out_and_every_photo_arrives_once(
    tmp_path: Path, down_for_a_while: tuple[LikeTheService, Outage, str, str]
) -> None:
    state, outage, _graph, _up = down_for_a_while
    figures, journal, uuids = await ride_out(tmp_path, down_for_a_while)
    try:
        assert outage.started is not None and outage.ended is not None
        assert figures.outage_s >= OUTAGE_S
        # The outage outlasted the client's retry budget more than once (as 10 real minutes
        # do: 10 tries over about two minutes), and the passes went on regardless.
        assert figures.passes_given_up >= 2, figures
        assert figures.refused > 2 * RetryPolicy().max_attempts, figures
        assert_each_image_once(state, journal, uuids)
        resent = figures.received - figures.stored
        assert resent <= figures.lost + figures.biggest, figures
        # After the failed POST every try began with a probe: no body went into the outage.
        assert figures.bodies_into_outage == 0, figures
    finally:
        await journal.aclose()
