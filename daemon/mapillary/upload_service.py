"""The upload service's side of the protocol (../shared/PROTOCOL.md): keys, offset, POST, manifest.

``UploadService`` makes the two requests of a resumable upload, each one attempt: ``fetch_offset``
(how many bytes the service holds for a key) and ``post`` (the rest of the object, in chunks of a
``Body``, from an offset). Retrying, pacing and progress belong to the caller
(``daemon.upload.client.UploadClient``). The keys and the manifest body are pure functions.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol

from daemon.mapillary.http import Service
from daemon.mapillary.retry import Failure, Verdict

Pace = Callable[[int], Awaitable[None]]  # waits until that many more bytes may be sent
Sent = Callable[[int], None]  # told the offset reached after each slice


def session_key(data: bytes) -> str:
    """The deterministic upload key of an image: the same bytes resume under the same key.

    >>> session_key(b"abc")
    'mly_tools_900150983cd24fb0d6963f7d28e17f72.jpg'
    """
    return image_key(hashlib.md5(data).hexdigest())


def image_key(md5_hex: str) -> str:
    """The session key of the image whose bytes have this MD5 (hex).

    >>> image_key("900150983cd24fb0d6963f7d28e17f72")
    'mly_tools_900150983cd24fb0d6963f7d28e17f72.jpg'
    """
    return f"mly_tools_{md5_hex}.jpg"


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


class Body(Protocol):
    """What one upload sends: ``size`` bytes, handed out from any offset in chunks of at most
    ``chunk_size``. A body may raise while it is read (its file changed or cannot be read):
    ``post`` raises that error itself, not the failed request, so it is never retried."""

    @property
    def size(self) -> int: ...

    def chunks(self, offset: int, chunk_size: int) -> AsyncIterator[bytes | memoryview]: ...


class BytesBody:
    """A body held in memory: a manifest, a small object."""

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)

    @property
    def size(self) -> int:
        return len(self._view)

    async def chunks(self, offset: int, chunk_size: int) -> AsyncIterator[memoryview]:
        for at in range(offset, len(self._view), chunk_size):
            yield self._view[at : at + chunk_size]  # slices, no copies


class UploadService(Service):
    """The upload service at ``endpoint``, over the caller's session; failures are ``Failure``s."""

    async def fetch_offset(self, key: str) -> int:
        """``GET {upload}/{key}``: how many bytes the service holds for ``key``."""
        body = await self.request("GET", f"/{key}", timeout=self.timeouts.for_bytes(0))
        offset = body.get("offset") if isinstance(body, dict) else None
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise Failure(Verdict.RETRY, f"offset probe answered {body!r:.100}")
        return offset

    async def post(
        self,
        key: str,
        body: Body,
        offset: int,
        *,
        chunk_size: int,
        pace: Pace,
        on_sent: Sent,
        speed_floor: float | None = None,
    ) -> str:
        """``POST {upload}/{key}`` of the body from ``offset``; the handle the service answers.

        The body goes in chunks of ``chunk_size``, each after ``pace`` allows it, read as it
        is sent (a file's never held whole). ``speed_floor`` lowers the speed below which the
        transfer counts as stalled. An error of the body itself is raised as it is.
        """
        left = body.size - offset
        headers = {
            "Offset": str(offset),
            "X-Entity-Name": key,
            "Content-Length": str(left),
            "Content-Type": "application/octet-stream",
        }
        failed: list[Exception] = []
        data: Any = _slices(body, offset, chunk_size, pace, on_sent, failed) if left else b""
        try:
            reply = await self.request(
                "POST",
                f"/{key}",
                data=data,
                headers=headers,
                timeout=self.timeouts.for_bytes(left, speed_floor),
            )
        except Failure:
            if failed:  # the request failed because the body did: that is the error
                raise failed[0] from None
            raise
        handle = reply.get("h") if isinstance(reply, dict) else None
        if not isinstance(handle, str) or not handle:
            raise Failure(Verdict.RETRY, f"upload answered without a handle: {reply!r:.100}")
        return handle


async def _slices(
    body: Body, offset: int, chunk_size: int, pace: Pace, on_sent: Sent, failed: list[Exception]
) -> AsyncIterator[bytes | memoryview]:
    position = offset
    try:
        async for chunk in body.chunks(offset, chunk_size):
            await pace(len(chunk))
            yield chunk
            position += len(chunk)
            on_sent(position)
    except Exception as exc:  # aiohttp would only report a connection error
        failed.append(exc)
        raise
