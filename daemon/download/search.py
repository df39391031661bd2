"""The graph API's ``images`` search over a box, split in four wherever it returns its limit.

A bbox search is not paginated (../shared/PROTOCOL.md): a box that returns ``LIMIT`` images may
hold more, so it is asked again as four quadrants, down to about a metre. Every image is kept
once (quadrants share their edges), only images inside the user's box are kept, and the search
stops as soon as ``max_results`` distinct images are known. What the server sends is checked
before it can name a file: ids are digits, positions are on the globe, thumbnail URLs are
http(s).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from daemon.core import log
from daemon.download.box import Box
from daemon.mapillary.errors import AuthError, MapillaryError
from daemon.mapillary.graph import LIMIT, GraphAPI
from daemon.mapillary.retry import Failure, OnRetry, RetryPolicy, retrying

MAX_SEARCHES = 5000  # a server that never stops filling boxes is not followed forever
MAX_ID_DIGITS = 30
SIZES = ("256", "1024", "2048", "original")


@dataclass(frozen=True)
class Filters:
    """Search filters as the graph API takes them (ISO 8601 times, a sequence id)."""

    start: str | None = None
    end: str | None = None
    sequence: str | None = None

    def params(self) -> dict[str, str]:
        out = {}
        if self.start:
            out["start_captured_at"] = self.start
        if self.end:
            out["end_captured_at"] = self.end
        if self.sequence:
            out["sequence_id"] = self.sequence
        return out


@dataclass(frozen=True)
class RemoteImage:
    """One image found, checked: ``id`` is digits, so ``f"{id}.jpg"`` is a safe file name."""

    id: str
    lat: float
    lon: float
    captured_at: int | None  # milliseconds since the epoch, UTC
    compass_angle: float | None
    sequence: str | None
    thumb_url: str


class BadField(ValueError):
    """A search result that cannot be used; ``reason`` is what the summary counts."""

    def __init__(self, message: str, reason: str = "bad search result") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class BadImage:
    """A search result refused before anything was fetched for it."""

    label: str  # "image <id as sent>", shortened
    reason: str  # what the summary counts it under
    message: str


@dataclass
class SearchResult:
    images: list[RemoteImage] = field(default_factory=list)
    bad: list[BadImage] = field(default_factory=list)
    searches: int = 0
    splits: int = 0
    outside: int = 0  # results outside the user's box, ignored
    notes: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # one line per box whose search failed


def log_retry(what: str) -> OnRetry:
    """How the downloader tells of a retry: one ``download retry`` line naming ``what``."""

    def told(failure: Failure, delay: float, _attempt: int) -> None:
        log.get("download").info(
            "download retry", what=what, reason=failure.reason, delay=round(delay, 3)
        )

    return told


def thumb_field(size: str) -> str:
    """
    >>> thumb_field("1024")
    'thumb_1024_url'
    """
    if size not in SIZES:
        raise ValueError(f"image size {size!r} is not one of {', '.join(SIZES)}")
    return f"thumb_{size}_url"


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return repr(text[:60] + ("..." if len(text) > 60 else ""))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _image_id(raw: Any) -> str:
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        raw = str(raw)
    if not isinstance(raw, str) or not raw.isascii() or not raw.isdigit():
        raise BadField("its id is not digits (refused as a file name)", "bad id from server")
    if len(raw) > MAX_ID_DIGITS:
        raise BadField(f"its id is longer than {MAX_ID_DIGITS} digits", "bad id from server")
    return raw


def _position(geometry: Any) -> tuple[float, float]:
    coords = geometry.get("coordinates") if isinstance(geometry, dict) else None
    if not isinstance(coords, list) or len(coords) < 2:
        raise BadField("it has no point geometry")
    lon, lat = _number(coords[0]), _number(coords[1])
    if lon is None or lat is None or abs(lat) > 90 or abs(lon) > 180:
        raise BadField(f"its position {_shown(coords)} is not on the globe")
    return lat, lon


def _thumb_url(raw: Any, name: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise BadField(f"it has no {name}", "bad thumbnail URL")
    try:
        parts = urlsplit(raw)
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise BadField(f"its thumbnail URL {_shown(raw)} is not http(s)", "bad thumbnail URL")
    return raw


def parse_image(raw: Any, url_field: str) -> RemoteImage:
    """One entry of ``data``, checked; BadField with the one-line reason.

    >>> img = parse_image({"id": "12", "geometry": {"type": "Point", "coordinates": [11.5, 48.1]},
    ...     "captured_at": 1717236000000, "compass_angle": 370.0, "sequence": "s",
    ...     "thumb_256_url": "https://cdn.example/12.jpg"}, "thumb_256_url")
    >>> img.id, img.lat, img.lon, img.compass_angle
    ('12', 48.1, 11.5, 10.0)
    >>> parse_image({"id": "../../x"}, "thumb_256_url")
    Traceback (most recent call last):
    ...
    daemon.download.search.BadField: its id is not digits (refused as a file name)
    """
    if not isinstance(raw, dict):
        raise BadField("it is not a JSON object")
    image_id = _image_id(raw.get("id"))
    lat, lon = _position(raw.get("geometry"))
    captured = _number(raw.get("captured_at"))
    angle = _number(raw.get("compass_angle"))
    sequence = raw.get("sequence")
    return RemoteImage(
        id=image_id,
        lat=lat,
        lon=lon,
        captured_at=int(captured) if captured is not None and captured >= 0 else None,
        compass_angle=angle % 360.0 if angle is not None else None,
        sequence=str(sequence) if isinstance(sequence, str | int) else None,
        thumb_url=_thumb_url(raw.get(url_field), url_field),
    )


class BoxSearch:
    """One search over the user's box, with its bookkeeping (found ids, counts)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        graph: str,
        token: str,
        size: str,
        *,
        filters: Filters | None = None,
        max_results: int | None = None,
        policy: RetryPolicy | None = None,
        on_found: Callable[[int], None] | None = None,
    ) -> None:
        self.graph = GraphAPI(session, graph, token)
        self.url_field = thumb_field(size)
        self.filters = filters or Filters()
        self.max_results = max_results
        self.policy = policy or RetryPolicy()
        self.on_found = on_found
        self.result = SearchResult()
        self._seen: set[str] = set()
        self._bad_seen: set[str] = set()

    def _enough(self) -> bool:
        return self.max_results is not None and len(self.result.images) >= self.max_results

    async def run(self, box: Box) -> SearchResult:
        """Search ``box``, splitting it where needed; AuthError stops everything."""
        pending = [box]
        while pending and not self._enough():
            current = pending.pop()
            if self.result.searches >= MAX_SEARCHES:
                self.result.notes.append(
                    f"stopped after {MAX_SEARCHES} searches: the server keeps filling boxes; "
                    "some images may be missing"
                )
                self.result.failed.append(f"search stopped after {MAX_SEARCHES} searches")
                break
            try:
                answer = await self._search(current)
            except AuthError:
                raise
            except MapillaryError as exc:
                self.result.failed.append(str(exc))
                continue
            self._take(answer, box)
            if len(answer) >= LIMIT and not self._enough():
                if current.splittable:
                    self.result.splits += 1
                    # Reversed so the stack pops them in south-west, south-east, ... order.
                    pending.extend(reversed(current.quadrants()))
                else:
                    self.result.notes.append(
                        f"box {current.param()} still holds {LIMIT}+ images at about a metre "
                        "across; only the first were taken"
                    )
        if self.max_results is not None:
            del self.result.images[self.max_results :]
        return self.result

    def _take(self, answer: list[Any], box: Box) -> None:
        for raw in answer:
            try:
                image = parse_image(raw, self.url_field)
            except BadField as exc:
                self._bad(raw, exc)
                continue
            if image.id in self._seen:
                continue
            if not box.contains(image.lat, image.lon):
                self.result.outside += 1
                continue
            self._seen.add(image.id)
            self.result.images.append(image)
            if self.on_found is not None:
                self.on_found(len(self.result.images))

    def _bad(self, raw: Any, exc: BadField) -> None:
        raw_id = raw.get("id") if isinstance(raw, dict) else raw
        label = f"image {_shown(raw_id)}"
        if label in self._bad_seen:
            return
        self._bad_seen.add(label)
        self.result.bad.append(BadImage(label, exc.reason, f"skipped: {exc}"))

    async def _search(self, box: Box) -> list[Any]:
        label = f"search of box {box.param()}"
        self.result.searches += 1

        async def attempt() -> list[Any]:
            return await self.graph.images(
                box.param(), self.url_field, self.filters.params(), label
            )

        return await retrying(attempt, self.policy, label, on_retry=log_retry(label))
