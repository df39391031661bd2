"""How a call to Mapillary ends when it does not succeed: one vocabulary for upload and download.

Three outcomes, whoever asked: the token was refused (stop everything, keep the work queued), the
server refused this item (give up on it, with the server's message), or it is still failing
after the retry budget (the network or the server is down: keep it queued, try later).
"""

from __future__ import annotations


class MapillaryError(Exception):
    """A call that did not succeed; ``str(exc)`` is one line for the user.

    ``retriable``: trying again later may succeed, so the caller keeps the work queued.
    """

    retriable = False


class AuthError(MapillaryError):
    """The access token was refused: stop, and leave everything queued."""


class RejectedError(MapillaryError):
    """The server refused this item (a 4xx not worth retrying), or what it sent is unusable.

    ``status`` is the HTTP status when there was one (else 0); ``reason`` is the short name a
    summary counts it under.
    """

    def __init__(self, message: str, status: int = 0, *, reason: str = "refused") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class RetriesExhausted(MapillaryError):
    """Still a transient failure after the retry budget: the caller keeps the item queued."""

    retriable = True


def most_serious(group_error: BaseExceptionGroup) -> BaseException:
    """The error to act on when several concurrent calls failed: a refused token stops
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
    for kind in (AuthError, RejectedError, RetriesExhausted, MapillaryError):
        for error in leaves:
            if isinstance(error, kind):
                return error
    return leaves[0]
