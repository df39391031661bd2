"""Running the server in-process: an async context manager, and a thread for synchronous code."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from daemon.server.app import GRAPH, STORE, UPLOAD, create_app
from daemon.server.config import ServerConfig
from daemon.server.store import Store

SHUTDOWN_TIMEOUT = 2.0  # seconds in-flight requests get when the server stops
_WILDCARDS = {"", "0.0.0.0", "::"}


@dataclass
class RunningServer:
    """A started server: where to reach it and what it holds."""

    base_url: str
    store: Store
    config: ServerConfig

    @property
    def graph_url(self) -> str:
        return self.base_url + GRAPH

    @property
    def upload_url(self) -> str:
        return self.base_url + UPLOAD

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    def stats(self) -> dict[str, int]:
        return self.store.stats()

    def sequences(self) -> list[dict[str, Any]]:
        return self.store.listing()

    def environment(self) -> dict[str, str]:
        """The variables that point mapillary_tools (and our client) at this server."""
        return {
            "MAPILLARY_GRAPH_API_ENDPOINT": self.graph_url,
            "MAPILLARY_UPLOAD_ENDPOINT": self.upload_url,
        }


def _url_host(host: str) -> str:
    if host in _WILDCARDS:
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


@asynccontextmanager
async def running_server(config: ServerConfig | None = None) -> AsyncIterator[RunningServer]:
    """Serve ``config`` (default: loopback, a free port, a temporary data folder) until exit."""
    config = config or ServerConfig()
    app = create_app(config)
    # A connection idle this long, or whose request's headers take this long, is closed.
    runner = web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        keepalive_timeout=config.read_timeout,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        port = runner.addresses[0][1]
        yield RunningServer(f"http://{_url_host(config.host)}:{port}", app[STORE], config)
    finally:
        await runner.cleanup()


class ServerThread:
    """The server on its own event loop in a daemon thread, for synchronous tests and scripts.

    >>> with ServerThread() as server:
    ...     server.stats()["sequences"]
    0
    """

    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._server: RunningServer | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mapillary-server", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # handed to the thread that waits in start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with running_server(self.config) as server:
            self._server = server
            self._ready.set()
            await self._stop.wait()

    def start(self, timeout: float = 10.0) -> RunningServer:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the server did not start within {timeout} s")
        if self._error is not None:
            raise RuntimeError(f"the server did not start: {self._error}") from self._error
        assert self._server is not None
        return self._server

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    @property
    def server(self) -> RunningServer:
        if self._server is None:
            raise RuntimeError("the server is not running")
        return self._server

    def __getattr__(self, name: str) -> Any:
        # base_url, graph_url, upload_url, stats(), ... of the running server.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.server, name)

    def __enter__(self) -> ServerThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
