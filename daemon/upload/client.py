"""Uploading objects to Mapillary: the protocol's requests, retried, paced and announced.

``UploadClient`` owns one connection pool to the graph API and the upload service and runs every
request of ``daemon.mapillary`` under the retry policy: resumable upload of one object (from
memory, or streamed from a ``Body`` such as a file), manifest, ``finish_upload`` and ``me``. It
paces the bytes under the shared ``Throttle`` and announces what happens on an ``EventBus``.
The concurrency limit and the memory discipline (one image streamed per busy slot) belong to
the sequence uploader (``worker.SequenceUploader``), which sends what the journal records.

Failures end as the shared ``daemon.mapillary.errors``: ``AuthError`` (bad token: stop
everything, keep it queued), ``RejectedError`` (the server refuses this item, with its message)
and ``RetriesExhausted`` (still retriable: the network or the server is down; keep it queued).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import aiohttp

from daemon.core import log
from daemon.core.config import Settings
from daemon.mapillary.errors import AuthError, MapillaryError
from daemon.mapillary.graph import MANIFEST_FILE_TYPE, GraphAPI
from daemon.mapillary.http import Timeouts
from daemon.mapillary.retry import Failure, RetryPolicy, Verdict, is_rate_limit, retrying
from daemon.mapillary.upload_service import (
    Body,
    BytesBody,
    UploadService,
    manifest_bytes,
    manifest_key,
)
from daemon.upload.events import EventBus, EventKind, UploadEvent
from daemon.upload.throttle import Throttle

CHUNK_SIZE = 256 * 1024
AUTH_HINT = "; uploads stopped, everything stays queued: run 'mapillary-daemon authenticate'"

ProgressCallback = Callable[[int, int], None]  # (bytes the server holds or was sent, total)
T = TypeVar("T")


class UploadClient:
    """One authenticated connection pool to the graph API and the upload service.

    Use as ``async with UploadClient(...) as client``. Every public call retries transient
    failures itself and raises a ``MapillaryError`` subclass when it gives up.
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
        self._token = token
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
        self._graph_api: GraphAPI | None = None
        self._service: UploadService | None = None
        self._attempted: set[str] = set()  # keys sent before: their next try probes first
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
        self._session = aiohttp.ClientSession()
        self._graph_api = GraphAPI(self._session, self.graph, self._token, self.timeouts)
        self._service = UploadService(self._session, self.upload, self._token, self.timeouts)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = self._graph_api = self._service = None

    # -- the protocol's calls, retried -----------------------------------------------------------

    async def me(self) -> dict[str, Any]:
        """``GET {graph}/me``: the account behind the token (``id``, ``username``)."""
        return await self._retrying("me", self._graph().me)

    async def upload_bytes(
        self,
        key: str,
        data: bytes,
        *,
        name: str | None = None,
        on_progress: ProgressCallback | None = None,
        fresh: bool = False,
    ) -> str:
        """Upload ``data`` under ``key`` (see :meth:`upload_body`); returns the handle."""
        return await self.upload_body(
            key, BytesBody(data), name=name, on_progress=on_progress, fresh=fresh
        )

    async def upload_body(
        self,
        key: str,
        body: Body,
        *,
        name: str | None = None,
        on_progress: ProgressCallback | None = None,
        fresh: bool = False,
    ) -> str:
        """Upload ``body`` under ``key``, resuming from the server's offset; returns the handle.

        After any failed attempt (an error reply, a cut connection, a timeout) the offset is
        probed again, so at most the bytes the server lost are sent twice. The failure count
        restarts whenever the server's offset has advanced. ``fresh``: the caller never sent
        this key before, so the first POST starts at 0 without a probe (unless this client
        tried the key already); a server that holds bytes after all answers 412 (or a 400
        naming the offset) and the offset is probed then (PROTOCOL.md). An error of the body itself (its
        file changed or cannot be read) is raised as it is, never retried.
        """
        service = self._upload_service()
        total = body.size
        confirmed = -1
        # No probe only for a key this client never tried: a second try asks first.
        offset: int | None = 0 if fresh and key not in self._attempted else None
        self._attempted.add(key)

        def sent(position: int) -> None:
            self._progress(key, position, total, name, on_progress)

        async def attempt() -> str:
            nonlocal offset, confirmed
            progressed = False
            try:
                if offset is None:
                    offset = await service.fetch_offset(key)
                    if offset > total:
                        raise Failure(
                            Verdict.REJECT,
                            f"server holds {offset} bytes for {key}, more than its {total}",
                        )
                    progressed = 0 <= confirmed < offset
                    confirmed = max(confirmed, offset)
                    sent(offset)
                return await service.post(
                    key,
                    body,
                    offset,
                    chunk_size=self.chunk_size,
                    pace=self.throttle.acquire,
                    on_sent=sent,
                    speed_floor=self._speed_floor(),
                )
            except Failure as failure:
                failure.progressed = progressed
                # Whatever failed (an error reply, a cut connection, a timeout), the service
                # may have kept part of the body: ask what arrived before sending again. A
                # rate limit refused the request whole, and a probe would spend the budget
                # the POST needs (a wrong offset would still be answered 412 and probed).
                if not is_rate_limit(failure.status, failure.body):
                    offset = None
                raise

        self._emit("start", key, total, name=name)
        try:
            handle = await self._retrying(name or key, attempt, key=key, total=total, name=name)
        except MapillaryError:
            raise  # announced by _retrying
        except Exception as exc:  # the body's own error
            self._emit("failed", key, total, name=name, reason=str(exc))
            raise
        self._emit("end", key, total, offset=total, name=name, handle=handle)
        return handle

    async def upload_manifest(self, handles: Sequence[str]) -> str:
        """Upload a sequence manifest (image handles in capture order); returns its handle."""
        key = manifest_key()
        return await self.upload_bytes(key, manifest_bytes(handles), name=key)

    async def finish_upload(self, file_handle: str, file_type: str = MANIFEST_FILE_TYPE) -> str:
        """``POST {graph}/finish_upload``; returns the cluster id. Retried: the server makes a
        second finish of the same handle return the same cluster, never a second sequence."""
        graph = self._graph()

        async def attempt() -> str:
            return await graph.finish_upload(file_handle, file_type, self.organization_id)

        return await self._retrying("finish_upload", attempt)

    async def published_ids(self, cluster_id: str) -> tuple[str, list[str]] | None:
        """The sequence id and image ids (capture order) a finished upload became, or None
        while the service is still processing it. A refusal (an API that does not answer
        this) raises ``RejectedError``, as any other. One attempt each: the follow-up's own
        schedule is its retry, so an outage or a rate limit costs one request a pass, and
        `run --once` does not wait out the policy's backoff for a lookup at its end."""
        graph = self._graph()
        once = replace(self.policy, max_attempts=1)
        sequence = await self._retrying(
            "cluster", lambda: graph.cluster_sequence(cluster_id), policy=once
        )
        if sequence is None:
            return None
        images = await self._retrying("image_ids", lambda: graph.image_ids(sequence), policy=once)
        return sequence, images

    # -- retries, pacing, events ------------------------------------------------------------------

    async def _retrying(
        self,
        what: str,
        attempt: Callable[[], Awaitable[T]],
        *,
        key: str | None = None,
        total: int = 0,
        name: str | None = None,
        policy: RetryPolicy | None = None,
    ) -> T:
        """``attempt`` under the policy (``policy``, default the client's); retries are logged
        and announced under ``key`` (default: ``what``), and so is giving up."""
        key = key or what

        def on_retry(failure: Failure, delay: float, n: int) -> None:
            reason = failure.reason
            self._log.info("upload retry", key=key, reason=reason, delay=round(delay, 3), attempt=n)
            self._emit("retry", key, total, name=name, reason=reason, delay=delay, attempt=n)

        def on_give_up(failure: Failure) -> None:
            self._emit("failed", key, total, name=name, reason=failure.reason)

        return await retrying(
            attempt,
            policy or self.policy,
            what,
            on_retry=on_retry,
            on_give_up=on_give_up,
            auth_hint=AUTH_HINT,
        )

    def _speed_floor(self) -> float | None:
        if not self.throttle.enabled:
            return None
        # Under a shared cap each worker gets its share; do not call that a stall.
        return self.throttle.rate / self.concurrency / 2

    def _graph(self) -> GraphAPI:
        if self._graph_api is None:
            raise RuntimeError("UploadClient used outside 'async with'")
        return self._graph_api

    def _upload_service(self) -> UploadService:
        if self._service is None:
            raise RuntimeError("UploadClient used outside 'async with'")
        return self._service

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
