"""Requests of the downloader, retried under the uploader's policy (daemon/upload/retry.py).

An attempt raises :class:`Transient` (try again after the policy's delay), :class:`Refused`
(give up on this item, with the server's reason) or :class:`AuthRefused` (the token is bad: stop).
``with_retries`` runs attempts until one succeeds or ``max_attempts`` fail in a row without
progress.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp

from daemon.core import log
from daemon.upload.retry import RetryPolicy, Verdict, classify_status, server_message

T = TypeVar("T")
ERROR_BODY_LIMIT = 64 * 1024  # an error reply is read this far for its message


class DownloadError(Exception):
    """An item (or a search) that did not succeed; ``str(exc)`` is one line for the user.

    ``reason`` is the short name the summary counts it under.
    """

    def __init__(self, message: str, reason: str = "download failed") -> None:
        super().__init__(message)
        self.reason = reason


class Refused(DownloadError):
    """The server (or what it sent) is refused for this item: not worth retrying."""


class AuthRefused(DownloadError):
    """The access token was refused: nothing more can be searched."""


@dataclass
class Transient(Exception):
    """One failed attempt worth repeating; ``progressed`` resets the failure count."""

    reason: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    progressed: bool = False


# aiohttp refuses a redirect to a non-http(s) URL with one of these: never worth a retry.
_BAD_URL_ERRORS: tuple[type[BaseException], ...] = (aiohttp.InvalidURL,)
for _name in ("NonHttpUrlRedirectClientError", "InvalidUrlRedirectClientError"):
    if hasattr(aiohttp, _name):
        _BAD_URL_ERRORS += (getattr(aiohttp, _name),)


async def with_retries(
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    label: str,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """``attempt()`` until it returns; DownloadError once ``policy.max_attempts`` fail in a row."""
    failures = 0
    while True:
        try:
            return await attempt()
        except _BAD_URL_ERRORS as exc:
            raise Refused(f"{label}: bad URL from the server: {_short(exc)}", "bad URL") from None
        except Transient as failure:
            if failure.progressed:
                failures = 0
            failures += 1
            if failures >= policy.max_attempts:
                raise DownloadError(
                    f"{label}: gave up after {failures} failed attempts, last: {failure.reason}"
                ) from None
            delay = policy.delay(failures - 1, failure.headers, failure.body)
            log.get("download").info(
                "download retry", what=label, reason=failure.reason, delay=round(delay, 3)
            )
            await sleep(delay)


def connection_failure(exc: BaseException, progressed: bool = False) -> Transient:
    """A network error or timeout as a retriable failure."""
    return Transient(f"connection error: {_short(exc)}", progressed=progressed)


TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)


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


async def failure_of(
    response: aiohttp.ClientResponse, label: str, *, token_sent: bool = True
) -> Exception:
    """The exception for a reply that is not a success, classified by the retry policy.

    Without ``token_sent`` (a signed thumbnail URL) a 401/403 refuses the item, not the token.
    """
    try:
        raw = (await read_capped(response, ERROR_BODY_LIMIT))[:ERROR_BODY_LIMIT]
    except TRANSPORT_ERRORS:
        raw = b""
    text = raw.decode("utf-8", "replace")
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = text
    status = response.status
    message = server_message(body, f"HTTP {status}")
    verdict = classify_status(status, body)
    if verdict is Verdict.RETRY:
        return Transient(f"HTTP {status}: {message}", dict(response.headers), body)
    if verdict is Verdict.AUTH and token_sent:
        return AuthRefused(f"the access token was refused (HTTP {status}: {message})")
    return Refused(f"{label}: refused by the server: HTTP {status}: {message}", "refused")


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return log.redact_text(text).splitlines()[0][:200] if text.strip() else type(exc).__name__
