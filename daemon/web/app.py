"""The status page's server: an aiohttp app on ``web_listen``, loopback unless a password is set.

Every answer is read from the journal (the same function as `status --json`), in a thread so
the daemon's loop never waits on SQLite. The one change it makes, Retry of a failed sequence,
is a POST that must carry this run's CSRF token (in the page, sent back in a header a page of
another site cannot set without the preflight we never answer) and come from our own origin.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import ipaddress
import json
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from daemon.core import log
from daemon.journal.status import status_json
from daemon.web.answers import JournalAnswers
from daemon.web.page import PAGE
from daemon.web.password import valid_hash, verify_password
from daemon.web.photos import sequence_photos
from daemon.web.thumbnails import NoThumbnail, Thumbnails
from daemon.web.tracks import KeptPoints, read_tracks

STATUS_ERRORS = 10  # as `status`'s --errors default: the two must print the same
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'"
)


def split_listen(value: str) -> tuple[str, int]:
    """
    >>> split_listen("127.0.0.1:8764"), split_listen("[::1]:80")
    (('127.0.0.1', 8764), ('::1', 80))
    """
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    """
    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def refusal(listen: str, password_hash: str | None) -> str | None:
    """Why the page must not be served on ``listen``, or None."""
    host, _ = split_listen(listen)
    if is_loopback(host):
        return None
    if not password_hash:
        return (
            f"{host} is not a loopback address: set a password first "
            "(mapillary-daemon config web-password), or listen on 127.0.0.1"
        )
    if not valid_hash(password_hash):
        return "web_password_hash is not one `config web-password` wrote"
    return None


class WebPage:
    """One served page: ``start`` binds, ``stop`` undoes it."""

    def __init__(
        self,
        journal_path: Path,
        listen: str,
        password_hash: str | None = None,
        retry: Callable[[str], Awaitable[str | None]] | None = None,
    ):
        self.journal_path = journal_path
        self.retry = retry  # a failed sequence's uuid -> None, or why it was not retried
        self.csrf = secrets.token_urlsafe(32)
        self.host, self.port = split_listen(listen)
        self.password_hash = None if is_loopback(self.host) else password_hash
        self.log = log.get("web")
        self._runner: web.AppRunner | None = None
        self._allowed: set[str] = set()  # digests of Authorization headers already checked
        self.thumbnails = Thumbnails(journal_path)
        self.answers = JournalAnswers(journal_path)
        self._points: KeptPoints = {}  # the map's positions, per sequence, between reads

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._page)
        app.router.add_get("/api/status", self._status)
        app.router.add_get("/api/map", self._map)
        app.router.add_get("/api/sequence/{uuid}", self._sequence)
        app.router.add_get("/api/photo/{id}/thumbnail", self._thumbnail)
        app.router.add_post("/api/retry", self._retry)
        return app

    async def start(self) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        if self.port == 0:  # tests: the port the system chose
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await asyncio.to_thread(self.answers.close)

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.password_hash is None and not is_loopback(request.url.host or ""):
            # DNS rebinding: a web site whose name now resolves to 127.0.0.1 would be the
            # page's own origin (its token, the map of where one drove, Retry) to the browser.
            return web.Response(status=421, text="this page answers only to a loopback name")
        if self.password_hash and not await self._authorised(request):
            return web.Response(
                status=401,
                text="password needed",
                headers={"WWW-Authenticate": 'Basic realm="mapillary-daemon", charset="UTF-8"'},
            )
        response: web.StreamResponse = await handler(request)
        for name, value in _HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    async def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        key = hashlib.sha256(header.encode()).hexdigest()
        if key in self._allowed:
            return True
        if not header.startswith("Basic "):
            return False
        try:
            _, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        assert self.password_hash is not None
        ok = await asyncio.to_thread(verify_password, password, self.password_hash)
        if ok:
            self._allowed.add(key)
        else:
            self.log.warning("web_password_wrong", peer=request.remote)
        return ok

    async def _page(self, request: web.Request) -> web.Response:
        page = PAGE.replace("{csrf}", html.escape(self.csrf)).replace(
            "{retry}", "1" if self.retry else ""
        )
        return web.Response(
            text=page, content_type="text/html", headers={"Content-Security-Policy": _CSP}
        )

    async def _retry(self, request: web.Request) -> web.Response:
        sent = request.headers.get("X-CSRF-Token", "")
        origin = request.headers.get("Origin")
        if not hmac.compare_digest(sent, self.csrf) or (
            origin is not None and origin != f"{request.scheme}://{request.host}"
        ):
            return _json({"error": "no valid CSRF token"}, status=403)
        if self.retry is None:
            return _json({"error": "nothing to retry in this run"}, status=409)
        try:
            uuid = str((await request.json())["sequence"])
        except (ValueError, KeyError, TypeError):
            return _json({"error": 'give {"sequence": uuid}'}, status=400)
        why = await self.retry(uuid)
        return _json(
            {"retried": uuid} if why is None else {"error": why}, 200 if why is None else 409
        )

    async def _status(self, request: web.Request) -> web.Response:
        return _json_text(await asyncio.to_thread(self.answers.get, "status", self._read_status))

    def _read_status(self) -> bytes:
        return _dumps(status_json(self.journal_path, STATUS_ERRORS)).encode()

    async def _map(self, request: web.Request) -> web.Response:
        # A GPX file changed on disk is taken in by the daemon, which changes the journal.
        return _json_text(await asyncio.to_thread(self.answers.get, "map", self._read_map))

    def _read_map(self) -> bytes:
        return read_tracks(self.journal_path, self._points)

    async def _sequence(self, request: web.Request) -> web.Response:
        uuid = request.match_info["uuid"]
        found = await asyncio.to_thread(sequence_photos, self.journal_path, uuid)
        return _json({"error": "no such sequence"}, 404) if found is None else _json(found)

    async def _thumbnail(self, request: web.Request) -> web.Response:
        """A photo's thumbnail by its file id: the file is the one the journal names."""
        try:
            thumb = await asyncio.to_thread(self.thumbnails.get, request.match_info["id"])
        except NoThumbnail as exc:
            return web.Response(status=404, text=str(exc))
        # The id is the photo's content hash: the same id is always the same picture.
        return web.Response(
            body=thumb.data,
            content_type=thumb.content_type,
            headers={"Cache-Control": "private, max-age=86400", "X-Thumbnail": thumb.source},
        )


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)  # as `status --json` prints it


def _json(value: Any, status: int = 200) -> web.Response:
    return _json_text(_dumps(value).encode(), status)


def _json_text(text: bytes, status: int = 200) -> web.Response:
    return web.Response(body=text, content_type="application/json", charset="utf-8", status=status)
