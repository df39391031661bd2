"""Which failures to retry, how long to wait, and the one loop that does it (upload and download).

The policy is pure functions over what the server said (status, headers, JSON body), so it can be
read and tested alone. The floor is the official client's policy (../shared/PROTOCOL.md):
connection errors, timeouts, 5xx, 429 and 4xx marked retriable are tried again; 412 re-reads the
offset at once; a bad token stops everything; any other 4xx is the server refusing the item.

``retrying`` runs one caller's attempts under that policy. An attempt raises a classified
``Failure``; the loop waits and tries again, or ends with the shared vocabulary of
``daemon.mapillary.errors``. Callers differ only in what they log and announce (``on_retry``,
``on_give_up``) and in how they name the item.
"""

from __future__ import annotations

import asyncio
import email.utils
import enum
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from daemon.mapillary.errors import AuthError, MapillaryError, RejectedError, RetriesExhausted

T = TypeVar("T")


class Verdict(enum.Enum):
    """What to do after one failed request."""

    RETRY = "retry"  # wait (server hint or backoff) and try again
    OFFSET = "offset"  # the server holds a different offset: re-probe it at once
    AUTH = "auth"  # the token is bad: stop uploading, keep everything queued
    REJECT = "reject"  # the server refuses this item: fail it with the server's message


@dataclass
class Failure(Exception):
    """One failed attempt, already classified; it never leaves ``retrying``.

    ``reason`` is the one line the user may see; ``status``/``headers``/``body`` are the reply,
    when there was one. ``progressed``: the attempt got further than the one before (the server
    holds more bytes), so the count of failures in a row starts again.
    """

    verdict: Verdict
    reason: str
    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    progressed: bool = False


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. The defaults are the real policy; tests shrink ``max_delay``.

    ``max_attempts`` counts consecutive failed requests without progress: once reached, the
    call gives up with a retriable error and the caller keeps the work queued.
    ``max_delay`` caps the exponential backoff (``min(2**n, max_delay)``), ``jitter`` adds up to
    that fraction of the delay at random (a fifth of it to a server's hint), so that many
    clients do not retry in lockstep.
    ``max_server_delay`` caps what a server may ask for in ``Retry-After``/``backoff``.
    """

    max_attempts: int = 10
    max_delay: float = 16.0
    jitter: float = 0.25
    max_server_delay: float = 600.0

    def backoff(self, n: int, rng: random.Random | None = None) -> float:
        """Seconds to sleep before retry number ``n`` (0-based) when the server gave no hint.

        >>> p = RetryPolicy(jitter=0.0)
        >>> [p.backoff(n) for n in range(7)]
        [1.0, 2.0, 4.0, 8.0, 16.0, 16.0, 16.0]
        >>> 4.0 <= RetryPolicy(jitter=0.25).backoff(2) <= 5.0
        True
        >>> RetryPolicy(max_delay=0.01, jitter=0.0).backoff(3)
        0.01
        """
        base = min(2.0 ** min(n, 30), self.max_delay)
        return base * (1.0 + self.jitter * (rng or random).random())

    def delay(
        self,
        n: int,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        now: float | None = None,
        rng: random.Random | None = None,
    ) -> float:
        """The server's hint when it gave one (capped), else the backoff for retry ``n``.

        >>> RetryPolicy(jitter=0.0).delay(0, {"Retry-After": "3"})
        3.0
        >>> RetryPolicy(jitter=0.0).delay(5, None, {"backoff": 1500})
        1.5
        >>> RetryPolicy(jitter=0.0).delay(1, {}, {"error": "x"})
        2.0
        >>> RetryPolicy(max_server_delay=60.0).delay(0, {"Retry-After": "86400"})
        60.0
        >>> 3.0 <= RetryPolicy(jitter=0.25).delay(0, {"Retry-After": "3"}) <= 3.15
        True
        """
        hint = server_delay(headers or {}, body, now)
        if hint is not None:
            # Never sooner than asked; a little later at random so that clients told the same
            # Retry-After do not all come back in the same instant.
            spread = 1.0 + self.jitter * 0.2 * (rng or random).random()
            return min(hint * spread, self.max_server_delay)
        return self.backoff(n, rng)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` value: delta-seconds or an HTTP date; None if unusable.

    >>> retry_after_seconds("7")
    7.0
    >>> retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0)
    10.0
    >>> retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0)
    0.0
    >>> retry_after_seconds("soon") is None
    True
    >>> retry_after_seconds(None) is None
    True
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if seconds == seconds else None  # NaN is not a delay
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(when.timestamp() - current, 0.0)


def server_delay(headers: Mapping[str, str], body: Any, now: float | None = None) -> float | None:
    """The wait the server asked for: ``Retry-After``, else a JSON ``backoff`` in milliseconds.

    The JSON hint is looked for at the top level and under ``debug_info``/``error``.

    >>> server_delay({"Retry-After": "2"}, {"backoff": 9000})
    2.0
    >>> server_delay({}, {"debug_info": {"retriable": True, "backoff": 250}})
    0.25
    >>> server_delay({}, "not json") is None
    True
    """
    seconds = retry_after_seconds(_header(headers, "Retry-After"), now)
    if seconds is not None:
        return seconds
    for part in _json_parts(body):
        backoff = part.get("backoff")
        if isinstance(backoff, int | float) and not isinstance(backoff, bool) and backoff >= 0:
            return float(backoff) / 1000.0
    return None


def classify_status(status: int, body: Any) -> Verdict:
    """What a failed HTTP reply means for the item.

    >>> classify_status(503, None).value, classify_status(429, "slow down").value
    ('retry', 'retry')
    >>> classify_status(412, {"debug_info": {"retriable": True, "type": "OffsetInvalidError"}}).value
    'offset'
    >>> classify_status(401, None).value, classify_status(403, {}).value
    ('auth', 'auth')
    >>> classify_status(400, {"error": {"type": "OAuthException", "code": 190}}).value
    'auth'
    >>> classify_status(400, {"debug_info": {"type": "NotAuthorizedError"}}).value
    'auth'
    >>> classify_status(400, {"debug_info": {"retriable": True, "type": "X"}}).value
    'retry'
    >>> classify_status(400, {"error": {"type": "RequestRateLimitedError"}}).value
    'retry'
    >>> classify_status(422, {"error": {"message": "bad image"}}).value
    'reject'
    >>> classify_status(400, {"error": {"message": "offset 0 != 691"}}).value
    'offset'
    >>> classify_status(409, "Offset mismatch").value, classify_status(416, {}).value
    ('offset', 'reject')
    >>> classify_status(400, {"debug_info": {"retriable": False, "type": "RequestRateLimitedError"}}).value
    'retry'
    """
    if status == 412 or (status in OFFSET_STATUSES and _names_offset(body)):
        # Some deployments answer a wrong offset with a plain 400 (or 409/416): re-probe.
        return Verdict.OFFSET
    if status in (401, 403) or is_auth_error(body):
        return Verdict.AUTH
    if status >= 500 or status == 429 or status < 400:
        return Verdict.RETRY
    if _says_retriable(body):
        return Verdict.RETRY
    return Verdict.REJECT


def is_auth_error(body: Any) -> bool:
    """True when a JSON error body says the token is not accepted.

    >>> is_auth_error({"error": {"message": "Invalid OAuth access token", "type": "OAuthException", "code": 190}})
    True
    >>> is_auth_error({"error": {"type": "OAuthException", "code": 100}})
    False
    >>> is_auth_error({"debug_info": {"type": "NotAuthorizedError", "message": "no"}})
    True
    >>> is_auth_error({"error": "NotAuthorized"})
    True
    >>> is_auth_error(None)
    False
    """
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str) and "NotAuthorized" in error:
        return True
    for part in _json_parts(body):
        kind = part.get("type")
        if isinstance(kind, str) and "NotAuthorized" in kind:
            return True
        if kind == "OAuthException" and part.get("code") == 190:
            return True
    return False


def server_message(body: Any, fallback: str = "") -> str:
    """The human message in an error body, for the one line that tells the user what failed.

    >>> server_message({"error": {"message": "Image too small", "type": "X"}})
    'Image too small'
    >>> server_message({"debug_info": {"message": "Offset 5 != 0"}})
    'Offset 5 != 0'
    >>> server_message("  plain text  ")
    'plain text'
    >>> server_message({}, "HTTP 418")
    'HTTP 418'
    """
    for part in _json_parts(body):
        message = part.get("message")
        if isinstance(message, str) and message.strip():
            return message.strip()
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"]
    if isinstance(body, str) and body.strip():
        return body.strip()[:300]
    return fallback


OFFSET_STATUSES = (400, 409, 412, 416)


def is_rate_limit(status: int | None, body: Any) -> bool:
    """A 429, or a reply whose error type is ``RequestRateLimitedError`` (some are 400s).

    >>> is_rate_limit(429, None), is_rate_limit(400, {"debug_info": {"type": "RequestRateLimitedError"}})
    (True, True)
    >>> is_rate_limit(500, {}), is_rate_limit(None, None)
    (False, False)
    """
    if status == 429:
        return True
    return any(part.get("type") == "RequestRateLimitedError" for part in _json_parts(body))


def _names_offset(body: Any) -> bool:
    """The error reply talks about the upload offset (its message or its error type)."""
    texts = [body] if isinstance(body, str) else []
    for part in _json_parts(body):
        texts += [v for k, v in part.items() if k in ("message", "type", "error")]
    return any(isinstance(t, str) and "offset" in t.lower() for t in texts)


def _says_retriable(body: Any) -> bool:
    # A rate limit is retried whatever its ``retriable`` says (the service marks some false).
    for part in _json_parts(body):
        if part.get("retriable") is True or part.get("type") == "RequestRateLimitedError":
            return True
    return False


def _json_parts(body: Any) -> list[dict[str, Any]]:
    """The dicts where Mapillary and Graph API errors put their fields."""
    if not isinstance(body, dict):
        return []
    parts = [body]
    for key in ("debug_info", "error"):
        inner = body.get(key)
        if isinstance(inner, dict):
            parts.append(inner)
    return parts


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, val in headers.items():
        if key.lower() == lowered:
            return val
    return None


OnRetry = Callable[[Failure, float, int], None]  # (failure, seconds until the next try, attempt)
OnGiveUp = Callable[[Failure], None]


async def retrying(
    attempt: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    what: str,
    *,
    on_retry: OnRetry,
    on_give_up: OnGiveUp | None = None,
    auth_hint: str = "",
) -> T:
    """``attempt()`` until it returns, or the error that ends it.

    ``what`` names the item in the error's message. A refused token ends it with ``AuthError``
    (``auth_hint`` is appended to its message: what the user should do), a refused item with
    ``RejectedError``, and ``policy.max_attempts`` failures in a row without progress with
    ``RetriesExhausted``. An offset mismatch is tried again at once; anything else after the
    server's hint or the backoff. ``on_retry`` is told before each wait, ``on_give_up`` before
    the error is raised. Other exceptions of ``attempt`` pass through untouched.
    """
    failures = 0
    while True:
        try:
            return await attempt()
        except Failure as failure:
            if failure.verdict in (Verdict.RETRY, Verdict.OFFSET):
                failures = 1 if failure.progressed else failures + 1
            if failure.verdict in (Verdict.AUTH, Verdict.REJECT) or (
                failures >= policy.max_attempts
            ):
                if on_give_up is not None:
                    on_give_up(failure)
                raise _final_error(failure, what, failures, auth_hint) from None
            delay = 0.0
            if failure.verdict is not Verdict.OFFSET:
                delay = policy.delay(failures - 1, failure.headers, failure.body)
            on_retry(failure, delay, failures)
            if delay > 0:
                await asyncio.sleep(delay)


def _final_error(failure: Failure, what: str, failures: int, auth_hint: str) -> MapillaryError:
    if failure.verdict is Verdict.AUTH:
        return AuthError(f"the access token was refused ({failure.reason}){auth_hint}")
    if failure.verdict is Verdict.REJECT:
        return RejectedError(
            f"{what}: refused by the server: {failure.reason}", failure.status or 0
        )
    return RetriesExhausted(
        f"{what}: gave up after {failures} failed attempts, last: {failure.reason}"
    )
