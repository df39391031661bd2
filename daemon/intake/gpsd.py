"""A client of gpsd, the GPS daemon of Linux: its JSON reports over TCP, as events on a queue.

gpsd speaks one JSON object a line. After ``?WATCH={"enable":true,"json":true}`` it sends a
TPV report per receiver cycle (time, position, fix mode) and a SKY report every few cycles (the
satellites seen and used). Anything else on the line (other classes, a half line, noise from a
proxy) is passed over and counted. When gpsd goes away (restarted, not installed yet) the
client tries again after a pause growing from ``min_backoff`` to ``max_backoff``; a receiver
unplugged behind a running gpsd is only the end of the fixes (the stage calls it "no fix").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import time
from dataclasses import dataclass
from typing import Any

from daemon.core import log
from daemon.media.gpx import parse_time

WATCH = b'?WATCH={"enable":true,"json":true}\n'
PROBE = b"?VERSION;\n"  # answered by every gpsd, with or without a receiver
MIN_BACKOFF = 1.0
MAX_BACKOFF = 30.0
CONNECT_TIMEOUT = 5.0
# A gpsd without a receiver is silent after its greeting; silence this long is asked about
# (PROBE), and twice this long without an answer means the connection is dead (a gpsd on
# another machine whose network went, which no FIN announces).
SILENCE_SECONDS = 30.0
LINE_LIMIT = 1 << 20  # a SKY report of 100 satellites is ~10 kB; a longer line is junk
JUNK_SAMPLE = 80  # characters of a junk line quoted in the log


class GpsdAddressError(ValueError):
    pass


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:2947`` for IPv6) as host and port.

    >>> parse_address("127.0.0.1:2947")
    ('127.0.0.1', 2947)
    >>> parse_address("[::1]:2947")
    ('::1', 2947)
    """
    host, sep, port = text.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise GpsdAddressError(f"{text!r} is not HOST:PORT (127.0.0.1:2947)")
    return host, int(port)


@dataclass(frozen=True)
class Fix:
    """A position gpsd reported: POSIX seconds UTC, degrees, metres above sea level or None,
    and the fix mode (2: 2D, 3: 3D)."""

    time: float
    lat: float
    lon: float
    ele: float | None
    mode: int


@dataclass(frozen=True)
class NoFix:
    """A TPV report without a usable position (mode 0 unknown, 1 no fix, or no time)."""

    mode: int


@dataclass(frozen=True)
class Satellites:
    used: int | None
    seen: int | None


@dataclass(frozen=True)
class Connected:
    server: str
    release: str | None


@dataclass(frozen=True)
class Lost:
    """The connection is gone (or never came); the next try is in ``retry_in`` seconds."""

    server: str
    reason: str
    retry_in: float


GpsEvent = Fix | NoFix | Satellites | Connected | Lost


class Junk(ValueError):
    """A line that is not a gpsd report."""


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _tpv(report: dict[str, Any]) -> Fix | NoFix:
    mode = report.get("mode")
    mode = mode if isinstance(mode, int) and not isinstance(mode, bool) else 0
    lat, lon = _finite(report.get("lat")), _finite(report.get("lon"))
    stamp = report.get("time")
    t = parse_time(stamp) if isinstance(stamp, str) else None
    if mode < 2 or lat is None or lon is None or t is None:
        return NoFix(mode)
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return NoFix(mode)
    ele = None
    if mode >= 3:  # a 2D fix has no height worth keeping
        # gpsd 3.20 split "alt" into altMSL and altHAE; GPX elevation is above sea level
        for key in ("altMSL", "alt", "altHAE"):
            ele = _finite(report.get(key))
            if ele is not None:
                break
    return Fix(t, lat, lon, ele, mode)


def _sky(report: dict[str, Any]) -> Satellites | None:
    used, seen = report.get("uSat"), report.get("nSat")
    sats = report.get("satellites")
    if isinstance(sats, list):
        listed = [s for s in sats if isinstance(s, dict)]
        seen = len(listed)
        used = sum(1 for s in listed if s.get("used") is True)
    used = used if isinstance(used, int) and not isinstance(used, bool) else None
    seen = seen if isinstance(seen, int) and not isinstance(seen, bool) else None
    if used is None and seen is None:
        return None  # gpsd sends an empty SKY between full ones
    return Satellites(used, seen)


def parse_report(line: bytes) -> GpsEvent | dict[str, Any] | None:
    """One line from gpsd: a Fix, NoFix or Satellites; the report itself for VERSION, ERROR
    and DEVICE(S); None for a class of no interest. Raises Junk for what is not a report.

    >>> parse_report(b'{"class":"TPV","mode":3,"time":"2024-06-01T07:00:00.000Z",'
    ...              b'"lat":52.52,"lon":13.4,"altMSL":34.5}')
    Fix(time=1717225200.0, lat=52.52, lon=13.4, ele=34.5, mode=3)
    >>> parse_report(b'{"class":"TPV","mode":1}')
    NoFix(mode=1)
    """
    try:
        report = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise Junk("not JSON") from None
    if not isinstance(report, dict) or not isinstance(report.get("class"), str):
        raise Junk("not a gpsd report")
    kind = report["class"]
    if kind == "TPV":
        return _tpv(report)
    if kind == "SKY":
        return _sky(report)
    if kind in ("VERSION", "ERROR", "DEVICE", "DEVICES"):
        return report
    return None


class GpsdClient:
    """Connects to gpsd, watches, and puts what it reports on a queue, until cancelled."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        min_backoff: float = MIN_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
        silence: float = SILENCE_SECONDS,
    ) -> None:
        self.host, self.port = host, port
        self.server = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self.silence = silence
        self.log = log.get("gps")
        self.connects = 0  # connections that got gpsd's greeting

    async def run(self, events: asyncio.Queue[GpsEvent]) -> None:
        delay = self.min_backoff
        while True:
            began = time.monotonic()
            served, reason = await self._session(events)
            # It was a gpsd that worked: the next outage starts short again. One that greets
            # and hangs up at once (crashing, or a second client refused) is an outage going
            # on: without this, a reconnect and two log lines a second, for ever.
            if served or (served is None and time.monotonic() - began >= self.max_backoff):
                delay = self.min_backoff
            await events.put(Lost(self.server, reason, delay))
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_backoff)

    async def _session(self, events: asyncio.Queue[GpsEvent]) -> tuple[bool | None, str]:
        """One connection, until it ends, and why it ended: True if gpsd gave a fix, None if
        it only greeted us, False if it did not even do that."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, limit=LINE_LIMIT),
                CONNECT_TIMEOUT,
            )
        except TimeoutError:
            return False, f"no answer within {CONNECT_TIMEOUT:g} s"
        except OSError as exc:  # asyncio's "Connect call failed" hides the reason in errno
            return False, os.strerror(exc.errno) if exc.errno else str(exc)
        greeted = fixed = False
        junk = 0
        try:
            writer.write(WATCH)
            await writer.drain()
            async for item in self._lines(reader, writer):
                try:
                    got = parse_report(item)
                except Junk as exc:
                    junk += 1
                    if junk == 1:  # once per connection: a noisy link must not flood the log
                        sample = item[:JUNK_SAMPLE].decode("utf-8", "replace")
                        self.log.warning(
                            "gpsd_junk", server=self.server, reason=str(exc), line=sample
                        )
                    continue
                if isinstance(got, dict):
                    greeted = self._report(got, events, greeted) or greeted
                elif got is not None:
                    fixed = fixed or isinstance(got, Fix)
                    await events.put(got)
            reason = "gpsd closed the connection"
        except OSError as exc:
            reason = exc.strerror or str(exc)
        except _Silent as exc:
            reason = str(exc)
        finally:
            if junk > 1:
                self.log.warning("gpsd_junk_total", server=self.server, lines=junk)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return (True if fixed else None) if greeted else False, reason

    def _report(
        self, report: dict[str, Any], events: asyncio.Queue[GpsEvent], greeted: bool
    ) -> bool:
        """VERSION is gpsd's greeting; ERROR and the device reports are only said."""
        kind = report["class"]
        if kind == "VERSION" and not greeted:
            self.connects += 1
            release = report.get("release")
            events.put_nowait(Connected(self.server, release if isinstance(release, str) else None))
            return True
        if kind == "ERROR":
            self.log.warning("gpsd_error", server=self.server, message=str(report.get("message")))
        elif kind == "DEVICE" and report.get("activated") == 0:
            self.log.info("gps_receiver_gone", server=self.server, device=report.get("path"))
        return False

    async def _lines(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Any:
        """The lines gpsd sends, ending when it closes; raises _Silent on a dead connection."""
        probed_at: float | None = None
        while True:
            reading = asyncio.ensure_future(reader.readline())
            done, _ = await asyncio.wait({reading}, timeout=self.silence)
            if not done:
                reading.cancel()
                if probed_at is not None:
                    raise _Silent(f"no answer from gpsd for {2 * self.silence:g} s")
                probed_at = time.monotonic()
                writer.write(PROBE)
                await writer.drain()
                continue
            probed_at = None
            try:
                line = reading.result()
            except ValueError:  # longer than LINE_LIMIT: dropped by the reader
                yield b"\xff"  # counted as junk
                continue
            if not line:
                return
            line = line.strip()
            if line:
                yield line


class _Silent(Exception):
    pass
