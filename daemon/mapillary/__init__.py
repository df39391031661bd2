"""The Mapillary wire protocol, shared by upload and download (../shared/PROTOCOL.md).

``retry`` says which failures to retry and runs the one retry loop; ``errors`` is how a call
ends when it does not succeed; ``http`` makes one request and classifies its failure;
``graph`` holds the graph API calls (``me``, ``finish_upload``, ``images``) and
``upload_service`` the upload service's (offset probe, POST, keys, manifest).
"""

from daemon.mapillary.errors import (
    AuthError,
    MapillaryError,
    RejectedError,
    RetriesExhausted,
    most_serious,
)
from daemon.mapillary.retry import RetryPolicy

__all__ = [
    "AuthError",
    "MapillaryError",
    "RejectedError",
    "RetriesExhausted",
    "RetryPolicy",
    "most_serious",
]
