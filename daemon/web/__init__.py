"""The daemon's face: a local status page (``/``), ``/api/status`` (exactly `status --json`) and
``/api/map`` (each sequence's track), served by the running daemon on ``web_listen``."""

from daemon.web.app import WebPage, refusal
from daemon.web.password import hash_password, verify_password
from daemon.web.retry import retry_sequence

__all__ = ["WebPage", "hash_password", "refusal", "retry_sequence", "verify_password"]
