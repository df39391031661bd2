"""GPX tracks as sorted arrays, and positions interpolated by time.

Every track, segment and route point of one or more files goes into four parallel arrays (time
as POSIX seconds UTC, lat, lon, elevation), sorted by time: 32 bytes a point, searched with
bisect. Interpolation never bridges a gap longer than ``max_gap`` seconds and never extrapolates
more than ``max_extrapolation`` seconds past either end: a photo there has no position, not a
guess.

Files are read with a streaming XML parser rather than gpxpy's object model: a day's 1 Hz log
loads several times faster in a fraction of the memory (which matters on a Raspberry Pi), and a
log cut off by a power loss keeps every point written before the cut.
"""

from __future__ import annotations

import math
import os
import re
import xml.parsers.expat
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from daemon.core.files import open_regular
from daemon.core.geo import bearing_deg, distance_m

MIN_BEARING_BASE_M = 1.0  # two fixes closer than this give no usable bearing


class GpxError(Exception):
    """A GPX file we cannot use; str(exc) is the one-line reason."""


@dataclass(frozen=True)
class TrackPosition:
    lat: float
    lon: float
    ele: float | None
    bearing: float | None


@dataclass
class Track:
    """Time-sorted points; ``eles`` holds NaN where a point has no elevation."""

    times: array = field(default_factory=lambda: array("d"))
    lats: array = field(default_factory=lambda: array("d"))
    lons: array = field(default_factory=lambda: array("d"))
    eles: array = field(default_factory=lambda: array("d"))
    truncated: bool = False  # the file ended mid-write; the points are those before the cut
    notes: list[str] = field(default_factory=list)  # per file: what was dropped and why
    # Its file has no end marker (an NMEA log, a GPX without its closing tags): a logger may
    # still be appending to it.
    can_grow: bool = False
    # Last fixes of logs still being written: positions are never taken past one (by
    # extrapolation, or interpolation to another file's next point), as the log's next fixes
    # will say where the vehicle went; see ``growing_past``.
    open_ends: frozenset[float] = frozenset()

    @classmethod
    def from_points(
        cls, points: Iterable[tuple[float | datetime, float, float, float | None]]
    ) -> Track:
        """A track from (time, lat, lon, ele) tuples in any order; equal times keep the first.

        Times are POSIX seconds or datetimes (naive ones are UTC); ele may be None.
        """
        track = cls()
        for t, lat, lon, ele in points:
            track.append(_seconds(t), lat, lon, math.nan if ele is None else ele)
        return _sorted(track)

    def append(self, t: float, lat: float, lon: float, ele: float) -> None:
        """One point at the end (``ele`` NaN for none); the caller keeps the order."""
        self.times.append(t)
        self.lats.append(lat)
        self.lons.append(lon)
        self.eles.append(ele)

    def __len__(self) -> int:
        return len(self.times)

    @property
    def start(self) -> float:
        return self.times[0]

    @property
    def end(self) -> float:
        return self.times[-1]

    def position_at(
        self, t: float, max_gap: float = 60.0, max_extrapolation: float = 1.0
    ) -> TrackPosition | None:
        """Where the track was at POSIX time ``t``, or None (outside the track or in a gap)."""
        n = len(self.times)
        if (
            n == 0
            or t < self.times[0] - max_extrapolation
            or t > self.times[-1] + max_extrapolation
        ):
            return None
        i = bisect_left(self.times, t)
        if i < n and self.times[i] == t:
            return self._at_index(i, max_gap)
        if i and self.times[i - 1] in self.open_ends:
            return None
        if i == 0 or i == n:  # just past an end, within the extrapolation limit
            j = 0 if i == 0 else n - 1
            return self._at_index(j, max_gap)
        a, b = i - 1, i
        if self.times[b] - self.times[a] > max_gap:
            return None
        f = (t - self.times[a]) / (self.times[b] - self.times[a])
        lat = self.lats[a] + (self.lats[b] - self.lats[a]) * f
        dlon = self.lons[b] - self.lons[a]
        if abs(dlon) > 180.0:  # the short way across the antimeridian, not round the globe
            dlon -= math.copysign(360.0, dlon)
        lon = self.lons[a] + dlon * f
        if not -180.0 <= lon <= 180.0:
            lon -= math.copysign(360.0, lon)
        ea, eb = self.eles[a], self.eles[b]
        ele = None if math.isnan(ea) or math.isnan(eb) else ea + (eb - ea) * f
        return TrackPosition(lat, lon, ele, self._bearing(a, b, max_gap))

    def growing_past(self, t: float) -> float | None:
        """The last fix of a log still being written that POSIX time ``t`` lies just past
        (so the log's next fixes will place it), or None."""
        i = bisect_left(self.times, t)
        if i and (i == len(self.times) or self.times[i] != t):
            end = self.times[i - 1]
            return end if end in self.open_ends else None
        return None

    def _at_index(self, i: int, max_gap: float) -> TrackPosition:
        ele = None if math.isnan(self.eles[i]) else self.eles[i]
        return TrackPosition(self.lats[i], self.lons[i], ele, self._bearing_at(i, max_gap))

    def _bearing_at(self, i: int, max_gap: float) -> float | None:
        """Bearing at fix i: towards the next fix, or from the previous one, never over a gap."""
        n = len(self.times)
        if i + 1 < n and self.times[i + 1] - self.times[i] <= max_gap:
            return self._bearing(i, i + 1, max_gap)
        if i > 0 and self.times[i] - self.times[i - 1] <= max_gap:
            return self._bearing(i - 1, i, max_gap)
        return None

    def _bearing(self, a: int, b: int, max_gap: float) -> float | None:
        """Bearing of travel between fixes a < b (no gap between them), widening the base outward
        while they are too close to give a direction, but never over a gap or beyond 2*max_gap."""
        n = len(self.times)
        while (
            distance_m(self.lats[a], self.lons[a], self.lats[b], self.lons[b]) < MIN_BEARING_BASE_M
        ):
            moved = False
            if a > 0 and self.times[a] - self.times[a - 1] <= max_gap:
                a -= 1
                moved = True
            if b + 1 < n and self.times[b + 1] - self.times[b] <= max_gap:
                b += 1
                moved = True
            if not moved or self.times[b] - self.times[a] > 2 * max_gap:
                return None
        return bearing_deg(self.lats[a], self.lons[a], self.lats[b], self.lons[b])


def _seconds(t: float | datetime) -> float:
    if isinstance(t, datetime):
        return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()
    return float(t)


_TIME = re.compile(
    r"(-?\d{4,})-(\d\d?)-(\d\d?)T(\d\d?):(\d\d?):(\d\d?)(\.\d+)?"
    r"(Z|[+-](\d\d?):(\d\d))?",
    re.ASCII,
)
MAX_DEPTH = 64  # GPX nests about 5 deep; deeper is hostile (expat keeps a stack per level)
_CHUNK = 1 << 16


def parse_time(text: str | None) -> float | None:
    """An xsd:dateTime (GPX's time type) as POSIX seconds, or None when it is not one.

    Lenient where writers are (one-digit fields, a Unicode minus), strict where a guess would be
    wrong: a date alone or a time without a date is refused. No zone means UTC, as GPX says.
    """
    if not text:
        return None
    m = _TIME.fullmatch(text.strip().replace("\u2212", "-"))
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac = float(m.group(7)) if m.group(7) else 0.0
    zone = UTC
    if m.group(8) and m.group(8) != "Z":
        minutes = int(m.group(9)) * 60 + int(m.group(10))
        zone = timezone(timedelta(minutes=-minutes if m.group(8)[0] == "-" else minutes))
    try:
        dt = datetime(year, month, day, hour, minute, second, tzinfo=zone)
    except (ValueError, OverflowError):
        return None
    return dt.timestamp() + frac


def _number(text: str | None) -> float:
    """A decimal as float, NaN when missing, unreadable or not finite (inf, 1e999)."""
    try:
        value = float(text) if text else math.nan
    except ValueError:
        return math.nan
    return value if math.isfinite(value) else math.nan


@dataclass
class _Reading:
    """What one pass over a GPX file found: the points, and what it dropped and why."""

    track: Track = field(default_factory=Track)
    untimed: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # "line N: message" of real XML errors
    root: str | None = None

    def drop(self, why: str) -> None:
        self.dropped[why] = self.dropped.get(why, 0) + 1


class _TooDeep(Exception):
    pass


class _Points:
    """Expat handlers collecting trkpt/rtept points into a reading (no tree is built)."""

    def __init__(self, reading: _Reading, need_root: bool) -> None:
        self.r = reading
        self.need_root = need_root
        self.depth = 0
        self.point: dict[str, str] | None = None
        self.text: list[str] | None = None
        self.fields: dict[str, str] = {}

    def start(self, name: str, attrs: dict[str, str]) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _TooDeep(f"elements nested deeper than {MAX_DEPTH}")
        local = name.rpartition(":")[2]
        if self.need_root:
            self.need_root = False
            self.r.root = local
            if local != "gpx":
                raise GpxError(f"not a GPX file (root element <{local}>)")
        if local in ("trkpt", "rtept"):
            self.point, self.fields = attrs, {}
        elif self.point is not None and local in ("time", "ele"):
            self.text = []

    def chars(self, data: str) -> None:
        if self.text is not None:
            self.text.append(data)

    def end(self, name: str) -> None:
        self.depth -= 1
        local = name.rpartition(":")[2]
        if self.text is not None and local in ("time", "ele"):
            self.fields[local] = "".join(self.text)
            self.text = None
        elif local in ("trkpt", "rtept") and self.point is not None:
            self._finish(self.point, self.fields)
            self.point = None

    def _finish(self, attrs: dict[str, str], fields: dict[str, str]) -> None:
        lat, lon = _number(attrs.get("lat")), _number(attrs.get("lon"))
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):  # NaN fails too
            self.r.drop("bad coordinates")
            return
        if "time" not in fields:
            self.r.untimed += 1
            return
        t = parse_time(fields["time"])
        if t is None:
            self.r.drop("unreadable time")
            return
        self.r.track.append(t, lat, lon, _number(fields.get("ele")))


def _parser(points: _Points) -> xml.parsers.expat.XMLParserType:
    parser = xml.parsers.expat.ParserCreate()
    parser.StartElementHandler = points.start
    parser.EndElementHandler = points.end
    parser.CharacterDataHandler = points.chars
    parser.buffer_text = True
    return parser


_POINT_START = re.compile(rb"<(?:[\w.-]+:)?(?:trkpt|rtept)\b")
_POINT_END = re.compile(rb"</(?:[\w.-]+:)?(?:trkpt|rtept)\s*>")
MAX_POINT_BYTES = 1 << 20  # a point element is a few hundred bytes; one this long never closes
_TAG_SPLIT = 64  # kept of text without a point start: a start tag split across two chunks


class _Recovery:
    """The points after a real XML error: each complete point element parsed on its own, so
    a bad byte or entity costs the points it is in, not the rest of the file.

    Fed chunk by chunk, it holds only what follows the last complete point (at most
    :data:`MAX_POINT_BYTES`), never the rest of the file; each byte is scanned once or twice."""

    def __init__(self, points: _Points, line: int, in_point: bool) -> None:
        self.points = points
        self.line = line  # line number of the first byte of ``buf``
        self.buf = bytearray()
        self.in_point = in_point  # the error is inside a point (counted): its end comes first

    def feed(self, data: bytes) -> None:
        self.buf += data
        pos = 0
        while (close := _POINT_END.search(self.buf, pos)) is not None:
            starts = [m.start() for m in _POINT_START.finditer(self.buf, pos, close.start())]
            for _ in starts[:-1]:  # points opened and never closed before this one
                self.points.r.drop("XML error")
            if starts:
                self._parse(starts[-1], close.end())
            elif not self.in_point:  # a point whose start tag held the error
                self.points.r.drop("XML error")
            self.in_point = False
            pos = close.end()
        start = _POINT_START.search(self.buf, pos)
        while start is not None and len(self.buf) - start.start() > MAX_POINT_BYTES:
            self.points.r.drop("XML error")  # a point that never closes
            start = _POINT_START.search(self.buf, start.end())
        self._drop(start.start() if start else max(pos, len(self.buf) - _TAG_SPLIT))

    def _drop(self, n: int) -> None:
        self.line += self.buf.count(b"\n", 0, n)
        del self.buf[:n]

    def _parse(self, start: int, end: int) -> None:
        parser = _parser(self.points)
        self.points.depth = 0
        try:
            parser.Parse(bytes(self.buf[start:end]), True)
        except xml.parsers.expat.ExpatError as exc:
            line = self.line + self.buf.count(b"\n", 0, start) + exc.lineno - 1
            message = xml.parsers.expat.errors.messages[exc.code]
            self.points.r.errors.append(f"line {line}: {message}")
            self.points.r.drop("XML error")
            self.points.point = None


def _refuse_entities(*_args: object) -> None:
    # GPX needs no entity declarations; they are how "billion laughs" bombs are built
    raise GpxError("not a GPX/XML file (it declares XML entities)")


def _error(parser: xml.parsers.expat.XMLParserType, exc: Exception) -> tuple[str, int]:
    """'line N: message' of an error, and the byte offset in the input where it is."""
    if isinstance(exc, xml.parsers.expat.ExpatError):
        msg, line = xml.parsers.expat.errors.messages[exc.code], exc.lineno
        at = parser.ErrorByteIndex
    else:
        msg, line, at = str(exc), parser.CurrentLineNumber, parser.CurrentByteIndex
    return f"line {line}: {msg}", max(at, 0)


def _read_points(path: str | os.PathLike[str]) -> tuple[_Reading, bool]:
    """The timed points of a file (unsorted) and what was dropped, and whether it was cut off.

    Streamed through expat; after a real XML error (not the end of a cut-off file) the rest is
    read point by point, so the points after the error are kept too.
    """
    reading = _Reading()
    points = _Points(reading, need_root=True)
    parser = _parser(points)
    parser.EntityDeclHandler = _refuse_entities
    offset = 0  # bytes given to the parser before the current chunk
    recovery: _Recovery | None = None  # from a real XML error on
    try:
        with open_regular(path) as fh:
            while chunk := fh.read(_CHUNK):
                if recovery is not None:
                    recovery.feed(chunk)
                    continue
                try:
                    parser.Parse(chunk, False)
                except (xml.parsers.expat.ExpatError, _TooDeep) as exc:
                    if reading.root is None:
                        raise GpxError(f"not a GPX/XML file ({exc})") from None
                    message, at = _error(parser, exc)
                    reading.errors.append(message)
                    in_point = points.point is not None
                    if in_point:  # the point the error is in
                        reading.drop("XML error")
                    points.point = points.text = None
                    recovery = _Recovery(points, int(message.split()[1].rstrip(":")), in_point)
                    recovery.feed(chunk[max(0, at - offset) :])
                offset += len(chunk)
            if recovery is not None:
                return reading, False
            try:
                parser.Parse(b"", True)
            except xml.parsers.expat.ExpatError as exc:
                if reading.root is None:
                    raise GpxError(f"not a GPX/XML file ({exc})") from None
                return reading, True  # a log cut off mid-write: keep what came before the cut
    except OSError as exc:
        raise GpxError(f"cannot read: {exc.strerror or exc}") from None
    return reading, False


def _sorted(track: Track) -> Track:
    """The track in time order, equal times keeping their first point."""
    times = track.times
    if all(times[i] < times[i + 1] for i in range(len(times) - 1)):
        return track
    order = sorted(range(len(times)), key=times.__getitem__)  # stable: first of equals first
    out = Track()
    last = None
    for i in order:
        if times[i] == last:
            continue
        last = times[i]
        out.append(times[i], track.lats[i], track.lons[i], track.eles[i])
    out.truncated, out.notes = track.truncated, track.notes
    out.can_grow, out.open_ends = track.can_grow, track.open_ends
    return out


def load_gpx(path: str | os.PathLike[str]) -> Track:
    """One GPX file as a track; GpxError when it is not GPX, has no points, or no times.

    A file cut off mid-write (a logger losing power) gives the points before the cut, with
    ``Track.truncated`` set. Points that cannot be used (bad coordinates, unreadable times, an
    XML error) are dropped, the others kept; ``Track.notes`` says what was dropped and where.
    """
    reading, truncated = _read_points(path)
    track = reading.track
    if not len(track):
        if reading.errors:
            raise GpxError(f"not a GPX file: XML error at {reading.errors[0]}")
        if reading.dropped:
            raise GpxError(f"no usable GPX points ({_dropped_text(reading)})")
        raise GpxError("GPX points have no time" if reading.untimed else "GPX has no track points")
    track.truncated = track.can_grow = truncated
    track.notes = _notes(str(path), reading, truncated)
    return _sorted(track)


def _dropped_text(reading: _Reading) -> str:
    return ", ".join(f"{n} {why}" for why, n in sorted(reading.dropped.items()))


MID_WRITE = "ends mid-write; its points up to the cut were used"


def _notes(name: str, reading: _Reading, truncated: bool) -> list[str]:
    """One line per file for the summary and the log: what was left out of it, and why."""
    parts = []
    if reading.errors:
        more = f" (and {len(reading.errors) - 1} more)" if len(reading.errors) > 1 else ""
        parts.append(f"XML error at {reading.errors[0]}{more}")
    if reading.dropped:
        parts.append(f"points dropped: {_dropped_text(reading)}")
    if truncated:
        parts.append(MID_WRITE)
    return [f"{name}: {'; '.join(parts)}"] if parts else []


def merge(tracks: Sequence[Track]) -> Track:
    """One track from several (equal timestamps keep the first track's point)."""
    joined = Track(
        truncated=any(tr.truncated for tr in tracks),
        notes=[n for tr in tracks for n in tr.notes],
        can_grow=any(tr.can_grow for tr in tracks),
        open_ends=frozenset().union(*(tr.open_ends for tr in tracks)),
    )
    for tr in tracks:
        joined.times.extend(tr.times)
        joined.lats.extend(tr.lats)
        joined.lons.extend(tr.lons)
        joined.eles.extend(tr.eles)
    return _sorted(joined)


def load_gpx_files(paths: Iterable[str | os.PathLike[str]]) -> Track:
    """Several GPX files merged into one track; the first bad file raises GpxError naming it."""
    from daemon.media.nmea import load_track  # nmea builds on this module

    tracks = []
    for path in paths:
        try:
            tracks.append(load_track(path))
        except GpxError as exc:
            raise GpxError(f"{path}: {exc}") from None
    if not tracks:
        raise GpxError("no GPX files given")
    return tracks[0] if len(tracks) == 1 else merge(tracks)
