"""One HTTP session for the daemon's life: a second upload pass reuses the first one's
connection (keep-alive) instead of opening a new session per pass.

The real daemon as a subprocess; the server is a small aiohttp app on 127.0.0.1 in a thread of
its own, which notes the client address of every request.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.daemon_proc import DaemonProc, new_daemon, wait_for
from tests.test_upload_cmd import geotagged


class Counting:
    """Stores uploads, finishes sequences, and remembers each request's client address."""

    def __init__(self) -> None:
        self.held: dict[str, bytes] = {}
        self.peers: list[tuple[str, int]] = []
        self.finished = 0
        self.loop = asyncio.new_event_loop()
        self.base = ""
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _note(self, request: web.Request) -> None:
        self.peers.append(request.transport.get_extra_info("peername")[:2])  # type: ignore[union-attr]

    async def probe(self, request: web.Request) -> web.StreamResponse:
        self._note(request)
        return web.json_response({"offset": len(self.held.get(request.match_info["key"], b""))})

    async def post(self, request: web.Request) -> web.StreamResponse:
        self._note(request)
        key = request.match_info["key"]
        self.held[key] = self.held.get(key, b"") + await request.read()
        return web.json_response({"h": key})

    async def finish(self, request: web.Request) -> web.StreamResponse:
        self._note(request)
        payload = await request.json()
        json.loads(self.held[payload["file_handle"]])
        self.finished += 1
        return web.json_response({"cluster_id": f"c{self.finished}"})

    async def me(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"id": "1", "username": "k"})

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application(client_max_size=64 * 2**20)
        app.add_routes(
            [
                web.get("/up/{key}", self.probe),
                web.post("/up/{key}", self.post),
                web.post("/graph/finish_upload", self.finish),
                web.get("/graph/me", self.me),
            ]
        )
        runner = web.AppRunner(app)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())

    def start(self) -> Counting:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture
def counting() -> Iterator[Counting]:
    server = Counting().start()
    try:
        yield server
    finally:
        server.stop()


def test_two_upload_passes_share_one_kept_alive_connection(
    tmp_path: Path, counting: Counting, daemons: list[DaemonProc]
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    endpoints = {
        "MAPILLARY_GRAPH_API_ENDPOINT": f"{counting.base}/graph",
        "MAPILLARY_UPLOAD_ENDPOINT": f"{counting.base}/up",
    }
    d = new_daemon(
        daemons, tmp_path / "work", endpoints, "--watch", str(inbox), "--concurrency", "1"
    )
    d.start().wait_event("root_watched", 15)
    geotagged(inbox / "ride1", 3, 48.1, seed=0)
    wait_for("the first sequence", lambda: counting.finished >= 1, 60, every=0.2)
    first = set(counting.peers)
    geotagged(inbox / "ride2", 3, 48.3, seed=50)
    wait_for("the second sequence", lambda: counting.finished >= 2, 60, every=0.2)
    assert len(counting.peers) > len(first) + 3  # the second pass did talk to the server
    assert set(counting.peers) == first, "the second pass opened a new connection"
