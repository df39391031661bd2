"""The Mapillary upload protocol, client side (../shared/PROTOCOL.md).

``UploadClient`` speaks the protocol: offset probe, resumable POST of one object from memory,
manifest, ``finish_upload`` and ``me``, each retried under ``retry.RetryPolicy``. The concurrency
limit and the memory discipline (at most one image's bytes per busy slot) belong to the sequence
uploader (``worker.SequenceUploader``), which sends what the journal records.

Failures reach the caller as three kinds of ``UploadError``: ``AuthError`` (bad token: stop
everything, keep it queued), ``RejectedError`` (the server refuses this item, with its message) and
``RetriesExhausted`` (still retriable: the network or the server is down; keep it queued).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp

from daemon.core import log
from daemon.core.config import Settings
from daemon.upload.events import EventBus, EventKind, UploadEvent
from daemon.upload.retry import (
    RetryPolicy,
    Verdict,
    classify_status,
    server_message,
)
from daemon.upload.throttle import Throttle

CHUNK_SIZE = 256 * 1024
MANIFEST_FILE_TYPE = "mly_bundle_manifest"

ProgressCallback = Callable[[int, int], None]  # (bytes the server holds or was sent, total)
T = TypeVar("T")


class UploadError(Exception):
    """An upload that did not succeed; ``str(exc)`` is one line for the user."""

    retriable = False


class AuthError(UploadError):
    """The token was refused: stop uploading and leave everything queued."""


class RejectedError(UploadError):
    """The server refused this item (a 4xx that is not worth retrying)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class RetriesExhausted(UploadError):
    """Still a transient failure after the retry budget: the caller keeps the item queued."""

    retriable = True


@dataclass
class _Failure(Exception):
    """One failed request, already classified; internal to the retry loops."""

    verdict: Verdict
    reason: str
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None


@dataclass(frozen=True)
class Timeouts:
    """Request deadlines that grow with the bytes to send, as the official client's do.

    A transfer may take ``base`` seconds plus the time to send what is left at ``min_speed``
    bytes/s; slower than that, the link is treated as stalled and the request is retried.

    >>> Timeouts(base=30, min_speed=50_000).seconds_for(4_000_000)
    110.0
    """

    base: float = 30.0
    min_speed: float = 50 * 1024

    def seconds_for(self, nbytes: int, speed_floor: float | None = None) -> float:
        speed = self.min_speed if speed_floor is None else min(self.min_speed, speed_floor)
        return self.base + nbytes / speed

    def for_bytes(self, nbytes: int, speed_floor: float | None = None) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=self.seconds_for(nbytes, speed_floor), sock_connect=self.base
        )


def session_key(data: bytes) -> str:
    """The deterministic upload key of an image: the same bytes resume under the same key.

    >>> session_key(b"abc")
    'mly_tools_900150983cd24fb0d6963f7d28e17f72.jpg'
    """
    return session_key_of(hashlib.md5(data).hexdigest())


def session_key_of(md5: str) -> str:
    """The upload key of an image whose MD5 (hex) is known already."""
    return f"mly_tools_{md5}.jpg"


def manifest_key() -> str:
    """A fresh key for a sequence manifest."""
    return f"uuid_{uuid.uuid4().hex}.json"


def manifest_bytes(handles: Sequence[str]) -> bytes:
    """The manifest body: compact JSON with sorted keys, handles in capture order.

    >>> manifest_bytes(["h1", "h2"])
    b'{"image_handles":["h1","h2"],"upload_type":"images","version":"1"}'
    """
    body = {"image_handles": list(handles), "upload_type": "images", "version": "1"}
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


class UploadClient:
    """One authenticated connection pool to the graph API and the upload service.

    Use as ``async with UploadClient(...) as client``. Every public call retries transient
    failures itself and raises an ``UploadError`` subclass when it gives up.
    """

    def __init__(
        self,
        token: str,
        graph_endpoint: str,
        upload_endpoint: str,
        *,
        organization_id: str | None = None,
        policy: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        throttle: Throttle | None = None,
        events: EventBus | None = None,
        concurrency: int = 4,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        if not token:
            raise AuthError("no access token: run 'mapillary-daemon authenticate' first")
        log.register_secret(token)
        self._auth = f"OAuth {token}"
        self.graph = graph_endpoint.rstrip("/")
        self.upload = upload_endpoint.rstrip("/")
        self.organization_id = organization_id
        self.policy = policy or RetryPolicy()
        self.timeouts = timeouts or Timeouts()
        self.throttle = throttle or Throttle(0)
        self.events = events or EventBus()
        self.concurrency = max(concurrency, 1)
        self.chunk_size = chunk_size
        self._session: aiohttp.ClientSession | None = None
        self._log = log.get("upload")

    @classmethod
    def from_settings(cls, settings: Settings, token: str, **kwargs: Any) -> UploadClient:
        """A client configured from the daemon's settings (endpoints, retries, rate, org)."""
        kwargs.setdefault("policy", RetryPolicy(max_attempts=settings.max_attempts))
        kwargs.setdefault("throttle", Throttle(settings.max_rate))
        kwargs.setdefault("concurrency", settings.concurrency)
        kwargs.setdefault("organization_id", settings.organization_id)
        return cls(token, settings.graph_endpoint, settings.upload_endpoint, **kwargs)

    async def __aenter__(self) -> UploadClient:
        self._session = aiohttp.ClientSession(headers={"Authorization": self._auth})
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- protocol calls ------------------------------------------------------------------------

    async def me(self) -> dict[str, Any]:
        """``GET {graph}/me``: the account behind the token (``id``, ``username``)."""
        url = f"{self.graph}/me"

        async def call() -> Any:
            return await self._request(
                "GET", url, params={"fields": "id,username"}, timeout=self.timeouts.for_bytes(0)
            )

        body = await self._retrying("me", call)
        if not isinstance(body, dict) or "id" not in body:
            raise RejectedError("graph API /me answered without an account id", 200)
        return body

    async def fetch_offset(self, key: str) -> int:
        """``GET {upload}/{key}``: how many bytes the service holds for ``key`` (one request)."""
        body = await self._request(
            "GET", f"{self.upload}/{key}", timeout=self.timeouts.for_bytes(0)
        )
        offset = body.get("offset") if isinstance(body, dict) else None
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise _Failure(Verdict.RETRY, f"offset probe answered {body!r:.100}")
        return offset

    async def upload_bytes(
        self,
        key: str,
        data: bytes,
        *,
        name: str | None = None,
        on_progress: ProgressCallback | None = None,
        fresh: bool = False,
    ) -> str:
        """Upload ``data`` under ``key``, resuming from the server's offset; returns the handle.

        After a cut connection or a timeout the offset is probed again, so at most the bytes the
        server lost are sent twice. The failure count restarts whenever the server's offset has
        advanced. ``fresh``: the caller never sent this key before, so the first POST starts at
        0 without a probe; a server that holds bytes after all answers 412 before reading the
        body, and the offset is probed then (PROTOCOL.md).
        """
        total = len(data)
        view = memoryview(data)
        failures = 0
        confirmed = -1
        offset: int | None = 0 if fresh else None
        self._emit("start", key, total, name=name)
        while True:
            try:
                if offset is None:
                    offset = await self.fetch_offset(key)
                    if offset > total:
                        raise _Failure(
                            Verdict.REJECT,
                            f"server holds {offset} bytes for {key}, more than its {total}",
                        )
                    if confirmed >= 0 and offset > confirmed:
                        failures = 0
                    confirmed = max(confirmed, offset)
                    self._progress(key, offset, total, name, on_progress)
                handle = await self._post_object(key, view, offset, name, on_progress)
            except _Failure as failure:
                failures = self._give_up_or_count(failure, key, total, name, failures)
                delay = self._delay(failure, failures)
                self._emit_retry(key, total, name, failure, delay, failures)
                if failure.status is None or failure.verdict is Verdict.OFFSET:
                    # The body may have been cut anywhere: ask what arrived. After a plain
                    # error reply the offset stands (a 412 would tell us otherwise), which
                    # spares a request per retry under rate limiting.
                    offset = None
                if delay > 0:
                    await asyncio.sleep(delay)
                continue
            self._emit("end", key, total, offset=total, name=name, handle=handle)
            return handle

    async def upload_manifest(self, handles: Sequence[str]) -> str:
        """Upload a sequence manifest (image handles in capture order); returns its handle."""
        key = manifest_key()
        return await self.upload_bytes(key, manifest_bytes(handles), name=key)

    async def finish_upload(self, file_handle: str, file_type: str = MANIFEST_FILE_TYPE) -> str:
        """``POST {graph}/finish_upload``; returns the cluster id. Retried: the server makes a
        second finish of the same handle return the same cluster, never a second sequence."""
        payload: dict[str, Any] = {"file_handle": file_handle, "file_type": file_type}
        if self.organization_id:
            payload["organization_id"] = self.organization_id
        url = f"{self.graph}/finish_upload"

        async def call() -> Any:
            return await self._request(
                "POST", url, json=payload, timeout=self.timeouts.for_bytes(0)
            )

        body = await self._retrying("finish_upload", call)
        cluster = body.get("cluster_id") if isinstance(body, dict) else None
        if cluster is None or cluster == "":
            raise RejectedError(f"finish_upload answered without a cluster id: {body!r:.200}", 200)
        return str(cluster)

    # -- one request -----------------------------------------------------------------------------

    async def _request(self, method: str, url: str, **kwargs: Any) -> Any:
        """One HTTP request; a 2xx body (JSON or text) or a classified ``_Failure``."""
        if self._session is None:
            raise RuntimeError("UploadClient used outside 'async with'")
        try:
            async with self._session.request(method, url, **kwargs) as resp:
                text = await resp.text(errors="replace")
                status, headers = resp.status, dict(resp.headers)
        except TimeoutError:  # before OSError, of which it is a subclass
            raise _Failure(Verdict.RETRY, "timed out") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _Failure(Verdict.RETRY, f"connection error: {_describe(exc)}") from None
        body = _parse(text)
        if 200 <= status < 300:
            return body
        reason = f"HTTP {status}: {server_message(body, resp.reason or '')}".rstrip(": ")
        raise _Failure(classify_status(status, body), reason, status, headers, body)

    async def _post_object(
        self,
        key: str,
        view: memoryview,
        offset: int,
        name: str | None,
        on_progress: ProgressCallback | None,
    ) -> str:
        left = len(view) - offset
        headers = {
            "Offset": str(offset),
            "X-Entity-Name": key,
            "Content-Length": str(left),
            "Content-Type": "application/octet-stream",
        }
        body: Any = self._chunks(key, view, offset, name, on_progress) if left else b""
        speed_floor = None
        if self.throttle.enabled:
            # Under a shared cap each worker gets its share; do not call that a stall.
            speed_floor = self.throttle.rate / self.concurrency / 2
        reply = await self._request(
            "POST",
            f"{self.upload}/{key}",
            data=body,
            headers=headers,
            timeout=self.timeouts.for_bytes(left, speed_floor),
        )
        handle = reply.get("h") if isinstance(reply, dict) else None
        if not isinstance(handle, str) or not handle:
            raise _Failure(Verdict.RETRY, f"upload answered without a handle: {reply!r:.100}")
        return handle

    async def _chunks(
        self,
        key: str,
        view: memoryview,
        offset: int,
        name: str | None,
        on_progress: ProgressCallback | None,
    ) -> AsyncIterator[memoryview]:
        """The body from ``offset``, in slices of the caller's buffer (no copies), paced by
        the shared throttle."""
        total = len(view)
        position = offset
        while position < total:
            chunk = view[position : position + self.chunk_size]
            await self.throttle.acquire(len(chunk))
            yield chunk
            position += len(chunk)
            self._progress(key, position, total, name, on_progress)

    # -- retry bookkeeping ---------------------------------------------------------------------

    async def _retrying(self, label: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run a request that has no offset to resume until it succeeds or the budget is spent."""
        failures = 0
        while True:
            try:
                return await call()
            except _Failure as failure:
                failures = self._give_up_or_count(failure, label, 0, None, failures)
                delay = self._delay(failure, failures)
                self._emit_retry(label, 0, None, failure, delay, failures)
                await asyncio.sleep(delay)

    def _give_up_or_count(
        self, failure: _Failure, key: str, total: int, name: str | None, failures: int
    ) -> int:
        """Raise the caller-facing error when retrying is pointless; else the new count."""
        where = name or key
        if failure.verdict is Verdict.AUTH:
            self._emit("failed", key, total, name=name, reason=failure.reason)
            raise AuthError(
                f"the access token was refused ({failure.reason}); uploads stopped, "
                "everything stays queued: run 'mapillary-daemon authenticate'"
            )
        if failure.verdict is Verdict.REJECT:
            self._emit("failed", key, total, name=name, reason=failure.reason)
            raise RejectedError(
                f"{where}: refused by the server: {failure.reason}", failure.status or 0
            )
        failures += 1
        if failures >= self.policy.max_attempts:
            self._emit("failed", key, total, name=name, reason=failure.reason)
            raise RetriesExhausted(
                f"{where}: gave up after {failures} failed attempts, last: {failure.reason}"
            )
        return failures

    def _delay(self, failure: _Failure, failures: int) -> float:
        if failure.verdict is Verdict.OFFSET:
            return 0.0
        return self.policy.delay(failures - 1, failure.headers, failure.body)

    def _emit_retry(
        self,
        key: str,
        total: int,
        name: str | None,
        failure: _Failure,
        delay: float,
        attempt: int,
    ) -> None:
        self._log.info(
            "upload retry", key=key, reason=failure.reason, delay=round(delay, 3), attempt=attempt
        )
        self._emit(
            "retry", key, total, name=name, reason=failure.reason, delay=delay, attempt=attempt
        )

    def _progress(
        self,
        key: str,
        offset: int,
        total: int,
        name: str | None,
        on_progress: ProgressCallback | None,
    ) -> None:
        if on_progress is not None:
            on_progress(offset, total)
        self._emit("progress", key, total, offset=offset, name=name)

    def _emit(self, kind: EventKind, key: str, total: int, **fields: Any) -> None:
        self.events.emit(UploadEvent(kind=kind, key=key, total=total, **fields))


def most_serious(group_error: BaseExceptionGroup) -> BaseException:
    """The error to act on when several concurrent uploads failed: a refused token stops
    everything, so it wins over a refused item, which wins over a transient failure, which wins
    over anything else."""
    leaves: list[BaseException] = []

    def collect(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                collect(inner)
        else:
            leaves.append(error)

    collect(group_error)
    for kind in (AuthError, RejectedError, RetriesExhausted, UploadError):
        for error in leaves:
            if isinstance(error, kind):
                return error
    return leaves[0]


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return log.redact_text(text)[:200]
