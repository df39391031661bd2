"""The GPS stage (only with ``gpsd`` set): gpsd's fixes → the daemon's own track → geotagging.

The client (:mod:`daemon.intake.gpsd`) puts gpsd's reports on a queue; this stage alone
writes them with the :class:`~daemon.intake.gpslog.TrackWriter` (in a worker thread, a batch at
a time), keeps ``Runtime.gps`` for `status` and the page, and hands each track file to the GPX
library like any other GPX, waking the processing so that photos waiting for a position are
tried again. The log goes into ``<data dir>/gps`` (``/var/lib/mapillary-daemon/gps`` for the
system service), not into ``gpx_dir``: the sources would take each batch there for a new GPX
(hashed again, journaled, waiting photos planned again every 10 s while driving).

While fixes stream, the library is told of the log's growth at most every REGISTER_SECONDS
(each time, the photos waiting for a position are read again, which costs on a Pi); a new
file, a pause in the fixes, the fix lost, a lost gpsd and a stop are told at once.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daemon.core import config, log
from daemon.core.aio import wait_event
from daemon.intake.gpsd import (
    MAX_BACKOFF,
    Connected,
    Fix,
    GpsdClient,
    GpsEvent,
    Lost,
    NoFix,
    Satellites,
    parse_address,
)
from daemon.intake.gpslog import (
    BATCH_SECONDS,
    TrackWriter,
    Written,
    finish_left_open,
    own_log_name,
)
from daemon.journal import GPX_META, AsyncJournal, journal_trouble
from daemon.runtime.process import GpxLibrary
from daemon.runtime.state import Runtime, StatusBoard, Wakeups

TICK_SECONDS = 1.0
STALE_SECONDS = 5.0  # no fix reported for this long: "no fix" (a receiver gone quiet)
REGISTER_SECONDS = 60.0


def own_log_folder() -> Path:
    """Where the daemon writes its own track."""
    return config.data_dir() / "gps"


def initial_state(server: str) -> dict[str, Any]:
    return {
        "state": "no gpsd",
        "server": server,
        "satellites": None,
        "mode": 0,
        "last_fix": None,
        "track": None,
        "fixes": 0,
    }


class GpsLogging:
    def __init__(
        self,
        *,
        settings: config.Settings,
        journal: AsyncJournal,
        gpx: GpxLibrary,
        wake: Wakeups,
        runtime: Runtime,
        board: StatusBoard,
        folder: Path | None = None,
    ) -> None:
        assert settings.gpsd is not None
        self.host, self.port = parse_address(settings.gpsd)
        self.client = GpsdClient(self.host, self.port)
        self.folder = folder or own_log_folder()
        self.writer = TrackWriter(self.folder)
        self.journal = journal
        self.gpx = gpx
        self.wake = wake
        self.runtime = runtime
        self.board = board
        self.log = log.get("gps")
        self.state = runtime.gps = initial_state(self.client.server)
        self._satellites: int | None = None
        self._fix_seen = 0.0  # time.monotonic() of the last fix
        self._first_pending = 0.0  # time.monotonic() when the oldest pending fix came
        self._registered = 0.0  # time.monotonic() the library last heard of the log's growth
        self._failing: str | None = None  # why the log cannot be written, while it cannot
        self._lost_since: float | None = None
        self._lock = asyncio.Lock()  # one flush at a time (the loop's and shutdown's)

    async def run(self) -> None:
        """Log until stopped. Anything unexpected (a bug) is said and the stage starts again
        after a pause: the GPS must not stop the photos; the journal failing does stop it."""
        while not self.wake.stopping.is_set():
            try:
                await self._run()
            except Exception as exc:
                if journal_trouble(exc):
                    raise
                self.log.error("gps_failed", reason=f"{type(exc).__name__}: {exc}")
                self.log.debug("gps_failed_traceback", exc_info=exc)
                await wait_event(self.wake.stopping, MAX_BACKOFF)  # a repeating bug: no spin

    async def _run(self) -> None:
        await self._register_existing()
        queue: asyncio.Queue[GpsEvent] = asyncio.Queue()
        client = asyncio.create_task(self.client.run(queue), name="gpsd_client")
        getter: asyncio.Future[GpsEvent] | None = None
        try:
            while not self.wake.stopping.is_set():
                getter = getter or asyncio.ensure_future(queue.get())
                waiting: set[asyncio.Future[Any]] = {getter, client}
                done, _ = await asyncio.wait(
                    waiting, timeout=TICK_SECONDS, return_when=asyncio.FIRST_COMPLETED
                )
                if client in done:  # it never ends by itself: a bug, for the fence in run()
                    client.result()
                    raise RuntimeError("the gpsd client ended")
                if getter in done:
                    event, getter = getter.result(), None
                    await self._take(event)
                await self._tick()
        finally:
            client.cancel()
            if getter is not None:
                getter.cancel()
            await asyncio.gather(client, return_exceptions=True)

    # -- events --------------------------------------------------------------------------------

    async def _take(self, event: GpsEvent) -> None:
        match event:
            case Fix():
                if self._fix(event):
                    await self.board.save()  # a fix found: shown now, not in 10 s
                if self.writer.add(event, self._satellites):
                    await self.flush(quiet=False)
            case NoFix():
                self.state["mode"] = event.mode
                if self.state["state"] == "fix":
                    await self._set_state("no fix", mode=event.mode)
                    # Parked (a garage) or a tunnel: the log is complete for now, so it is
                    # written and handed on at once, for the card about to come in.
                    await self.flush(quiet=True)
            case Satellites():
                self._satellites = event.used
                self.state["satellites"] = event.used
            case Connected():
                self.log.info(
                    "gps_connected",
                    server=event.server,
                    release=event.release,
                    after_seconds=self._outage(),
                )
                await self._set_state("no fix")
            case Lost():
                await self._lost(event)

    def _fix(self, fix: Fix) -> bool:
        """Note a fix; True when it is the first after none."""
        now = time.monotonic()
        if not self.writer.pending:
            self._first_pending = now
        self._fix_seen = now
        self.state["mode"] = fix.mode
        self.state["last_fix"] = datetime.fromtimestamp(fix.time, UTC).isoformat()
        if self.state["state"] == "fix":
            return False
        self.state["state"] = "fix"
        self.log.info("gps_fix", mode=fix.mode, satellites=self._satellites)
        return True

    def _outage(self) -> float | None:
        if self._lost_since is None:
            return None
        took, self._lost_since = time.monotonic() - self._lost_since, None
        return round(took, 1)

    async def _lost(self, event: Lost) -> None:
        first = self.state["state"] != "no gpsd" or self._lost_since is None
        if first:
            self._lost_since = time.monotonic()
            self.log.warning(
                "gps_lost",
                server=event.server,
                reason=event.reason,
                retry_in=event.retry_in,
                hint="is gpsd running (systemctl status gpsd)? tried again by itself",
            )
        else:
            self.log.debug(
                "gps_retry", server=event.server, reason=event.reason, retry_in=event.retry_in
            )
        self._satellites = None
        self.state["satellites"] = None
        await self._set_state("no gpsd", mode=0)
        await self.flush(quiet=True)

    async def _set_state(self, state: str, mode: int | None = None) -> None:
        if mode is not None:
            self.state["mode"] = mode
        if self.state["state"] != state:
            if state == "no fix" and self.state["state"] == "fix":
                self.log.info("gps_no_fix", server=self.client.server)
            self.state["state"] = state
            await self.board.save()  # rare, and the user waits on it

    async def _tick(self) -> None:
        now = time.monotonic()
        if self.state["state"] == "fix" and now - self._fix_seen > STALE_SECONDS:
            await self._set_state("no fix")
        if self.writer.pending and now - self._first_pending >= BATCH_SECONDS:
            await self.flush(quiet=True)  # the fixes paused (or trickle): written anyway

    # -- the log -------------------------------------------------------------------------------

    async def flush(self, *, quiet: bool, closing: bool = False) -> None:
        """Write the pending fixes; tell the library of the growth when it is due."""
        async with self._lock:
            if not self.writer.pending and not closing:
                return
            try:
                written = await asyncio.to_thread(
                    self.writer.close if closing else self.writer.flush
                )
            except OSError as exc:
                self._write_failed(exc)
                self._first_pending = time.monotonic()  # tried again in BATCH_SECONDS
                return
            if self._failing is not None:
                self.log.info("gps_log_resumed", folder=str(self.folder))
                self._failing = None
            self._first_pending = time.monotonic()
            await self._written(written, quiet or closing)

    def _write_failed(self, exc: OSError) -> None:
        reason = exc.strerror or str(exc)
        if reason != self._failing:  # once per reason, not once per batch
            self.log.error(
                "gps_log_failing",
                folder=str(self.folder),
                reason=reason,
                pending=self.writer.pending,
                hint="fixes are kept in memory (an hour's worth) and written when it works",
            )
            self._failing = reason

    async def _written(self, written: Written, quiet: bool) -> None:
        self.state["track"] = written.path.name if written.path else None
        self.state["fixes"] = self.writer.fixes
        for path in written.started:
            self.log.info("gps_log_started", file=str(path))
        due = time.monotonic() - self._registered >= REGISTER_SECONDS
        if written.path is not None and (written.started or quiet or due):
            await self._register([str(p) for p in written.started], str(written.path))

    async def _register(self, new: list[str], current: str) -> None:
        """Hand the files to the GPX library; a new file is also journaled (the map draws the
        known tracks), a grown one only makes a new version (no journal write)."""
        self._registered = time.monotonic()
        for path in {*new, current}:
            self.gpx.add(f"gpsd:{path}:{_size(path)}", path)
        if new:
            await self.journal.set_meta(GPX_META, self.gpx.known)
        self.wake.process.set()

    async def _register_existing(self) -> None:
        """The own logs already there (a restart, maybe after a power cut) are tracks too;
        one left open by a cut is finished first, so other programs can read it as well."""
        try:
            names = sorted(n for n in os.listdir(self.folder) if own_log_name(n))
        except OSError:
            return  # not made yet: the first fix makes it
        paths = [str(self.folder / n) for n in names]
        for path in paths:
            if self.writer.path is not None and path == str(self.writer.path):
                continue  # being written (the stage started again after a failure)
            try:
                if await asyncio.to_thread(finish_left_open, Path(path)):
                    self.log.info("gps_log_finished", file=path, reason="left open by a stop")
            except OSError as exc:
                self.log.warning("gps_log_unfinished", file=path, reason=exc.strerror or str(exc))
        known = set(self.gpx.known.values())
        for path in paths:
            self.gpx.add(f"gpsd:{path}:{_size(path)}", path)
        if set(paths) - known:
            await self.journal.set_meta(GPX_META, self.gpx.known)
        if paths:
            self.wake.process.set()

    async def close(self) -> None:
        """At a stop: the pending fixes written and the file finished."""
        await self.flush(quiet=True, closing=True)


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return -1
