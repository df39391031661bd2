"""NMEA 0183 logs (a USB GPS, gpsd's raw log) as a :class:`~daemon.media.gpx.Track`.

A small parser of our own rather than pynmea2 (not a dependency): RMC gives time, date and
position; GGA or GNS adds altitude, fix quality and HDOP, GLL a position (each also a position
for a time RMC did not cover, on the date RMC or ZDA last gave, or the first one to come); any
talker (GP, GN, GL, GA, GB, BD, ...). A second that one sentence calls void (an RMC's status V,
a GGA or GNS with an HDOP over ``MAX_HDOP``) gives no fix, whatever the other sentences of that
second say and in whichever order they come. Each sentence's checksum is verified: a bad one is dropped and
counted, as is a sentence without one. Bytes between sentences (binary protocols on the same
port, line noise) are skipped.
"""

from __future__ import annotations

import functools
import math
import operator
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from daemon.core.files import open_regular
from daemon.media.gpx import GpxError, Track, _sorted, load_gpx

# Fields are printable ASCII but "$", which starts the next sentence (noise may cut one short),
# and "*", which starts the checksum (a sentence whose "*" is not followed by one has none).
_SENTENCE = re.compile(
    rb"\$([A-Z][A-Z0-9])([A-Z]{3}),([\x20-\x23\x25-\x29\x2b-\x7e]*)"
    rb"(?:\*([0-9A-Fa-f]{2})|$|(?=[$*]))"
)
SNIFF_BYTES = 1 << 16  # an NMEA log shows a sentence in its first 64 KiB


def is_nmea(head: bytes) -> bool:
    """Whether the start of a file holds a checksummed NMEA sentence."""
    lines = head.replace(b"\r", b"\n").split(b"\n")
    return any(_valid(m) for line in lines for m in _SENTENCE.finditer(line))


def _valid(m: re.Match[bytes]) -> bool:
    if m.group(4) is None:
        return False
    return _xor(m.group(0)[1 : m.start(4) - m.start(0) - 1]) == int(m.group(4), 16)


def _xor(body: bytes) -> int:
    """The XOR of all bytes, NMEA's checksum (reduce steps through the bytes in C)."""
    return functools.reduce(operator.xor, body, 0)


UNDATED = 3600  # GGA fixes held until a date comes: an hour at 1 Hz
RECENT = 16  # times of the last cycles, whose sentences (RMC, GGA, GNS, GLL) merge into one fix
_CHUNK = 1 << 16
_MAX_LINE = 1 << 16  # a "line" longer than this is noise, cut where no sentence is split
_LONGEST = 256  # bytes of a sentence, far more than NMEA's 82
# HDOP above which a fix is dropped: 20 is where the usual DOP scale turns from "fair" to "poor"
# (some 100 m at a typical 5 m range error). Receivers still call such a fix valid (gpsd passes it on), and
# 10-20 is common in a street canyon with 4 satellites (the corpus has 17.5), so a lower limit
# would lose usable fixes; u-blox and others write 99.99 for "no HDOP", also dropped.
MAX_HDOP = 20.0
HDOP_DROPPED = f"HDOP over {MAX_HDOP:g}"
VOID_DROPPED = "void in RMC"  # a GGA/GNS/GLL fix of a second whose RMC says status V


@dataclass
class _Log:
    """The fixes found so far, straight into the track's arrays (32 bytes a fix: a day's log
    at 10 Hz stays a few tens of MB); the sentences of one cycle merge by their time."""

    track: Track = field(default_factory=Track)
    recent: dict[float, tuple[int, float]] = field(default_factory=dict)  # time → index, clock
    void: dict[float, str] = field(default_factory=dict)  # void second's clock → why (RECENT)
    counted: set[float] = field(default_factory=set)  # void seconds whose lost fix was counted
    dropped: dict[str, int] = field(default_factory=dict)
    day: date | None = None  # the date of the last RMC
    day_seconds: float = 0.0  # and its time of day
    # GGA/GNS/GLL fixes before the first date (a receiver sending GGA first in each cycle), as
    # (time of day, position, altitude or None for GLL): dated by the first RMC or ZDA
    undated: list[tuple[float, tuple[float, float], float | None]] = field(default_factory=list)

    def drop(self, why: str) -> None:
        self.dropped[why] = self.dropped.get(why, 0) + 1

    def lost(self, clock: float, why: str) -> None:
        """Count the fix of the void second at ``clock`` once, however many of its sentences
        (GGA and GLL, GGA and GNS) claimed it."""
        if clock not in self.counted:
            self.counted.add(clock)
            self.drop(why)

    def dated(self, day: date, clock: float) -> None:
        """An RMC or ZDA's date and time of day; the fixes waiting for a date get it."""
        self.day, self.day_seconds = day, clock
        undated, self.undated = self.undated, []
        for seconds, pos, ele in undated:
            before_midnight = seconds > clock + 43200
            self.place(day - timedelta(days=1) if before_midnight else day, seconds, pos, ele)

    def place(self, day: date, clock: float, pos: tuple[float, float], ele: float | None) -> None:
        """A fix without a date of its own: ``ele`` None (GLL has no altitude) keeps the one
        another sentence of the cycle gave."""
        i = self.at(day, clock, pos)
        if i is not None and ele is not None:
            self.track.eles[i] = ele

    def of_day(self, clock: float, pos: tuple[float, float], ele: float | None) -> None:
        """A GGA/GNS/GLL fix at ``clock`` (time of day), on the date the last RMC or ZDA gave
        (the next day once past midnight), or held for the first date to come."""
        if self.day is None:
            if len(self.undated) < UNDATED:
                self.undated.append((clock, pos, ele))
            else:
                self.drop("no date")
            return
        day = self.day
        if clock < self.day_seconds - 43200:  # past midnight since the last RMC
            day += timedelta(days=1)
        self.place(day, clock, pos, ele)

    def at(self, day: date, clock: float, pos: tuple[float, float]) -> int | None:
        """The index of the fix at ``clock`` on ``day`` (a new one if no recent sentence gave
        it), with ``pos`` as its position (the last sentence of a cycle wins, as in gpsd); None
        when a sentence of that second called it void."""
        if clock in self.void:
            return None
        t = _stamp(day, clock)
        known = self.recent.get(t)
        if known is not None:
            i = known[0]
            self.track.lats[i], self.track.lons[i] = pos
            return i
        i = len(self.track)
        self.recent[t] = (i, clock)
        self.track.append(t, pos[0], pos[1], math.nan)
        if len(self.recent) > RECENT:
            del self.recent[next(iter(self.recent))]
        return i

    def veto(self, clock: float, why: str) -> bool:
        """No fix for the second at ``clock`` (time of day), for reason ``why``: the sentences
        of that second already read are undone, those still to come ignored. Whether a fix was
        undone."""
        self.void.setdefault(clock, why)
        if len(self.void) > RECENT:
            oldest = next(iter(self.void))
            del self.void[oldest]
            self.counted.discard(oldest)
        undone = False
        for t, (i, at_clock) in list(self.recent.items()):
            if at_clock == clock:
                self._remove(t, i)
                undone = True
        tail = len(self.undated) - RECENT  # a cycle's sentences are among the last held
        for j in range(len(self.undated) - 1, max(tail, 0) - 1, -1):
            if self.undated[j][0] == clock:
                del self.undated[j]
                undone = True
        return undone

    def _remove(self, t: float, i: int) -> None:
        """Take fix ``i`` (a recent one, so near the end) out of the track."""
        del self.recent[t]
        track = self.track
        for column in (track.times, track.lats, track.lons, track.eles):
            del column[i]
        for later, (j, at_clock) in self.recent.items():
            if j > i:
                self.recent[later] = (j - 1, at_clock)


def _clock(text: str) -> float | None:
    """hhmmss[.sss] as seconds of the day."""
    if len(text) < 6 or not text[:6].isdigit():
        return None
    h, m, s = int(text[:2]), int(text[2:4]), float(text[4:])
    return h * 3600 + m * 60 + s if h < 24 and m < 60 and s < 61 else None


def _angle(value: str, hemi: str, degree_digits: int) -> float | None:
    """(d)ddmm.mmmm plus N/S/E/W as signed degrees."""
    try:
        deg = int(value[:degree_digits]) + float(value[degree_digits:]) / 60.0
    except ValueError:
        return None
    if hemi in ("S", "W"):
        deg = -deg
    elif hemi not in ("N", "E"):
        return None
    return deg


def _position(f: list[str], i: int) -> tuple[float, float] | None:
    lat, lon = _angle(f[i], f[i + 1], 2), _angle(f[i + 2], f[i + 3], 3)
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return lat, lon


def _stamp(day: date, seconds: float) -> float:
    return _midnight(day) + seconds


@functools.lru_cache(maxsize=64)
def _midnight(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _rmc(log: _Log, f: list[str]) -> None:
    if len(f) < 9:
        log.drop("short sentence")
        return
    clock = _clock(f[0])
    if clock is None:
        return
    if f[1] != "A" or (len(f) > 11 and f[11][:1] == "N"):
        # no fix (a receiver says so every second until it has one, so only a GGA/GNS fix of
        # the same second undone by it is counted)
        if log.veto(clock, VOID_DROPPED):
            log.lost(clock, VOID_DROPPED)
        return
    try:
        dd, mm, yy = int(f[8][:2]), int(f[8][2:4]), int(f[8][4:6])
        day = date(2000 + yy if yy < 80 else 1900 + yy, mm, dd)
    except ValueError:
        log.drop("bad date")
        return
    pos = _position(f, 2)
    if pos is None:
        log.drop("bad coordinates")
        return
    log.dated(day, clock)
    log.at(day, clock, pos)


def _zda(log: _Log, f: list[str]) -> None:
    """ZDA: the date (receivers without RMC, e.g. GNS-only ones, give it here)."""
    clock = _clock(f[0]) if f else None
    try:
        day = date(int(f[3]), int(f[2]), int(f[1]))
    except (ValueError, IndexError):
        return
    if clock is not None:
        log.dated(day, clock)


def _gga(log: _Log, f: list[str], gns: bool = False) -> None:
    """GGA (quality digit) or GNS (a mode letter per constellation): altitude, and the
    position of the cycle (the last sentence of a cycle wins, as in gpsd)."""
    if len(f) < 9:
        log.drop("short sentence")
        return
    clock = _clock(f[0])
    if gns:
        valid = any(c in "ADPRF" for c in f[5])
    else:
        valid = f[5].isdigit() and f[5] not in ("0", "6", "7", "8")
    if clock is None or not valid:
        return  # no fix, an estimated or simulated one
    # the fix of a second dropped is counted once, whichever sentence of it came first
    why = HDOP_DROPPED if _hdop(f[7]) > MAX_HDOP else log.void.get(clock)
    if why is not None:
        log.veto(clock, why)
        log.lost(clock, why)
        return
    try:
        ele = float(f[8]) if f[8] else math.nan
    except ValueError:
        ele = math.nan
    pos = _position(f, 1)
    if pos is None:
        log.drop("bad coordinates")
        return
    log.of_day(clock, pos, ele if math.isfinite(ele) else math.nan)


def _gll(log: _Log, f: list[str]) -> None:
    """GLL: position and time of day, status A/V and (NMEA 2.3) a mode letter, N for no fix;
    some receivers (a Garmin 48) give a fix by GLL alone every other second. Older GLL without
    time or status gives no fix."""
    if len(f) < 6:
        return
    clock = _clock(f[4])
    if clock is None or f[5] != "A" or (len(f) > 6 and f[6][:1] == "N"):
        return
    why = log.void.get(clock)  # an RMC V or a GGA/GNS over MAX_HDOP of this second
    if why is not None:
        log.lost(clock, why)
        return
    pos = _position(f, 0)
    if pos is None:
        log.drop("bad coordinates")
        return
    log.of_day(clock, pos, None)


def _hdop(text: str) -> float:
    """The HDOP field; 0 when empty or unreadable (many receivers leave it out: no veto)."""
    try:
        value = float(text)
    except ValueError:
        return 0.0
    return value if math.isfinite(value) else 0.0


def _lines(path: str | os.PathLike[str]) -> Iterator[bytes]:
    """The file's lines (ended by CR, LF or both), read a chunk at a time: a log of any size
    costs its fixes, not its text."""
    with open_regular(path) as fh:
        rest = b""
        while chunk := fh.read(_CHUNK):
            data = rest + chunk
            lines = data.splitlines()  # CR, LF or CRLF; 4-5x faster than a regex split
            rest = b"" if data.endswith((b"\r", b"\n")) else lines.pop()
            if len(rest) > _MAX_LINE:  # binary noise without a line end
                lines.append(rest[: _cut(rest)])
                rest = rest[len(lines[-1]) :]
            yield from lines
        yield rest


def _cut(noise: bytes) -> int:
    """Where a run of bytes without a line end may be cut without splitting a sentence: at the
    last "$" near its end (fields hold no "$", so a sentence crossing the end starts there)."""
    start = noise.rfind(b"$", len(noise) - _LONGEST)
    return len(noise) if start < 0 else start


def load_nmea(path: str | os.PathLike[str]) -> Track:
    """An NMEA log as a track; GpxError when it has no sentence or no fix."""
    log = _Log()
    seen = 0
    try:
        for line in _lines(path):
            for m in _SENTENCE.finditer(line):
                seen += 1
                if m.group(4) is None:
                    log.drop("no checksum")
                    continue
                if not _valid(m):
                    log.drop("bad checksum")
                    continue
                kind = m.group(2).decode("ascii")
                fields = m.group(3).decode("ascii").split(",")
                if kind == "RMC":
                    _rmc(log, fields)
                elif kind in ("GGA", "GNS"):
                    _gga(log, fields, gns=kind == "GNS")
                elif kind == "GLL":
                    _gll(log, fields)
                elif kind == "ZDA":
                    _zda(log, fields)
    except OSError as exc:
        raise GpxError(f"cannot read: {exc.strerror or exc}") from None
    if not seen:
        raise GpxError("not an NMEA log (no $..RMC/$..GGA sentence)")
    track = log.track
    if not len(track):
        raise GpxError("NMEA log has no fix with a date (no valid RMC)")
    if log.dropped:
        what = ", ".join(f"{n} {why}" for why, n in sorted(log.dropped.items()))
        track.notes = [f"{path}: sentences dropped: {what}"]
    track.can_grow = True  # NMEA has no end marker: only its age tells a finished log
    return _sorted(track)


def load_track(path: str | os.PathLike[str]) -> Track:
    """A GPX file or an NMEA log, told apart by their first bytes (a .log may be either)."""
    if os.fspath(path).lower().endswith(".gpx"):
        return load_gpx(path)
    try:
        with open_regular(path) as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError as exc:
        raise GpxError(f"cannot read: {exc.strerror or exc}") from None
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return load_gpx(path)
    return load_nmea(path)
