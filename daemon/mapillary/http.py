"""One HTTP request to Mapillary, and what its failure means for the retry loop.

Two ways of reading a reply, because the two sides need different things from it:
``Service.request`` (the uploader's calls: small JSON answers, any 2xx, per-request deadlines) and
``reply_failure``/``read_capped`` (the downloader's: a search answer or a thumbnail read up to a
cap, since a server must not be able to fill our memory). Both turn a failure into a classified
``retry.Failure``; the token goes in the ``Authorization`` header of each request that needs it,
never into a URL or a log line.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from daemon.core import log
from daemon.mapillary.retry import Failure, Verdict, classify_status, server_message

ERROR_BODY_LIMIT = 64 * 1024  # an error reply is read this far for its message
TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)


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


class Service:
    """One of the two services (graph API, upload service) at its base URL, spoken to over the
    caller's session with the user's token."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        endpoint: str,
        token: str,
        timeouts: Timeouts | None = None,
    ) -> None:
        self.session = session
        self.endpoint = endpoint.rstrip("/")
        self.timeouts = timeouts or Timeouts()
        self.auth = {"Authorization": f"OAuth {token}"}  # PROTOCOL.md: every request carries it

    async def request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> Any:
        """One request to ``endpoint + path``; a 2xx body (JSON, else text) or a ``Failure``."""
        url = self.endpoint + path
        try:
            async with self.session.request(
                method, url, headers={**self.auth, **(headers or {})}, **kwargs
            ) as resp:
                text = await resp.text(errors="replace")
                status, reply_headers = resp.status, dict(resp.headers)
        except TimeoutError:  # before OSError, of which it is a subclass
            raise Failure(Verdict.RETRY, "timed out") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise Failure(Verdict.RETRY, f"connection error: {_describe(exc)}") from None
        body = _parse(text)
        if 200 <= status < 300:
            return body
        reason = f"HTTP {status}: {server_message(body, resp.reason or '')}".rstrip(": ")
        raise Failure(classify_status(status, body), reason, status, reply_headers, body)


async def read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, or its first ``limit + 1`` bytes when it is longer (the caller refuses it)."""
    if response.content_length is not None and response.content_length > limit:
        return await response.content.read(limit + 1)  # no need to wait for the rest
    parts: list[bytes] = []
    held = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        parts.append(chunk)
        held += len(chunk)
        if held > limit:
            break
    return b"".join(parts)


async def reply_failure(response: aiohttp.ClientResponse, *, token_sent: bool = True) -> Failure:
    """The failure a reply that is not a success stands for, read up to ``ERROR_BODY_LIMIT``.

    Only retriable replies are retried and only a token that was sent can be refused: without
    ``token_sent`` (a signed thumbnail URL) a 401/403 refuses the item, and so does a 412 (there
    is no offset to re-read in a download).
    """
    try:
        raw = (await read_capped(response, ERROR_BODY_LIMIT))[:ERROR_BODY_LIMIT]
    except TRANSPORT_ERRORS:
        raw = b""
    body = _parse(raw.decode("utf-8", "replace"))
    status = response.status
    reason = f"HTTP {status}: {server_message(body, f'HTTP {status}')}"
    verdict = classify_status(status, body)
    if verdict is Verdict.RETRY:
        return Failure(Verdict.RETRY, reason, status, dict(response.headers), body)
    if verdict is Verdict.AUTH and token_sent:
        return Failure(Verdict.AUTH, reason, status)
    return Failure(Verdict.REJECT, reason, status)


def connection_failure(exc: BaseException, progressed: bool = False) -> Failure:
    """A network error or timeout met while reading a capped reply, as a retriable failure."""
    return Failure(Verdict.RETRY, f"connection error: {_short(exc)}", progressed=progressed)


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return log.redact_text(text)[:200]


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return log.redact_text(text).splitlines()[0][:200] if text.strip() else type(exc).__name__
