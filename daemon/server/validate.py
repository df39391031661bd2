"""What the server checks in what it receives: session keys, tagged JPEGs, manifests, zips.

Every check raises :class:`Rejected` with a one-line reason the client can show to a person.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from daemon.core.files import is_photo
from daemon.media.exif import MediaError, read_exif
from daemon.pipeline.describe import parse_capture_time, validate_description

# Keys name files in the data folder, so only plain names are allowed (no separators, no "..").
KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")
_MD5_KEY_RE = re.compile(r"^(?:mly_tools_)?([0-9a-f]{32})\.[A-Za-z0-9]+$")
MANIFEST_LIMIT = 16 * 2**20  # a manifest of 100k handles is ~6 MB
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Rejected(Exception):
    """Content the service refuses for good (HTTP 400, not retriable)."""


def check_key(key: str) -> str:
    """The key itself, when it is usable as a file name.

    >>> check_key("mly_tools_0123456789abcdef0123456789abcdef.jpg")
    'mly_tools_0123456789abcdef0123456789abcdef.jpg'
    >>> check_key("../etc/passwd")
    Traceback (most recent call last):
    ...
    daemon.server.validate.Rejected: session key '../etc/passwd' is not a plain file name
    """
    if not KEY_RE.match(key) or ".." in key:
        raise Rejected(f"session key {key!r} is not a plain file name")
    return key


def md5_of_key(key: str) -> str | None:
    """The MD5 a content-addressed key promises, or None for other keys (uuid_..., manifests).

    >>> md5_of_key("mly_tools_0123456789abcdef0123456789abcdef.jpg")
    '0123456789abcdef0123456789abcdef'
    >>> md5_of_key("uuid_0123456789abcdef0123456789abcdef.json") is None
    True
    """
    match = _MD5_KEY_RE.match(key)
    return match.group(1) if match else None


def is_jpeg_key(key: str) -> bool:
    return is_photo(key)


def image_description(path: Path) -> dict[str, Any]:
    """The Mapillary description of a tagged JPEG, checked; Rejected says what is wrong."""
    try:
        info = read_exif(path)
    except MediaError as exc:
        raise Rejected(f"not a usable JPEG: {exc}") from None
    if not info.description:
        raise Rejected("no Mapillary description in EXIF ImageDescription")
    try:
        desc = json.loads(info.description)
    except json.JSONDecodeError:
        raise Rejected("EXIF ImageDescription is not JSON (not a Mapillary description)") from None
    reason = validate_description(desc)
    if reason:
        raise Rejected(f"bad image description: {reason}")
    return desc


def captured_at_ms(desc: dict[str, Any]) -> int:
    """MAPCaptureTime as milliseconds since the epoch (what the graph API calls captured_at).

    >>> captured_at_ms({"MAPCaptureTime": "1970_01_01_00_00_01_234"})
    1234
    """
    moment = parse_capture_time(desc["MAPCaptureTime"])
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def compass_angle(desc: dict[str, Any]) -> float | None:
    heading = desc.get("MAPCompassHeading")
    if isinstance(heading, dict):
        for key in ("TrueHeading", "MagneticHeading"):
            if key in heading:
                return float(heading[key])
    return None


def manifest_handles(data: bytes) -> list[str]:
    """The image handles of a bundle manifest, in the order given.

    >>> manifest_handles(b'{"image_handles":["a","b"],"upload_type":"images","version":"1"}')
    ['a', 'b']
    >>> manifest_handles(b'{"image_handles":[],"upload_type":"images","version":"1"}')
    Traceback (most recent call last):
    ...
    daemon.server.validate.Rejected: manifest lists no image handles
    """
    try:
        manifest = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Rejected("manifest is not JSON") from None
    if not isinstance(manifest, dict):
        raise Rejected("manifest is not a JSON object")
    if manifest.get("upload_type", "images") != "images":
        raise Rejected(f"manifest upload_type {manifest.get('upload_type')!r} is not 'images'")
    if str(manifest.get("version", "1")) != "1":
        raise Rejected(f"manifest version {manifest.get('version')!r} is not '1'")
    handles = manifest.get("image_handles")
    if not isinstance(handles, list) or not all(isinstance(h, str) and h for h in handles):
        raise Rejected("manifest image_handles is not a list of handles")
    if not handles:
        raise Rejected("manifest lists no image handles")
    return handles
