"""A fake gpsd for the tests: a real TCP server on 127.0.0.1 speaking gpsd's JSON protocol.

Like gpsd it greets each client with a VERSION report, answers ``?WATCH={...}`` with DEVICES
and WATCH, and ``?VERSION;`` with VERSION; then it replays the TPV and SKY reports of a drive
(``drive_reports``) at ``rate`` reports a second, faster than life. Like gpsfake, the replay
goes on only while a client watches, so nothing is replayed into the void while the daemon is
down; a ``progress`` file keeps its place, so a fake killed mid-drive and started again goes on
where it was (the receiver kept driving). After the drive it reports "no fix" (TPV mode 1) once
a second. ``junk_every`` mixes lines that are not reports into the stream, as a flaky link or a
proxy would.

In a test: ``with FakeGpsdThread(reports) as gpsd: ... gpsd.port``. As a process (to kill it):
``python -m tests.fake_gpsd --port P --reports FILE --progress FILE [--rate R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import threading
from datetime import UTC
from pathlib import Path
from typing import Any

from daemon.demo.route import Drive

VERSION = {
    "class": "VERSION",
    "release": "3.25",
    "rev": "3.25",
    "proto_major": 3,
    "proto_minor": 15,
}
DEVICE = "/dev/ttyACM0"
JUNK = [
    b"\x00\xff\xfe binary noise",
    b'{"class":"TPV","mode":3,"lat":52.5',  # half a report
    b"$GPGGA,,,,,,0,,,,,,,,*66",  # NMEA where JSON was asked for
    b"[1, 2, 3]",
    b'{"class":"TOFF","device":"/dev/ttyACM0"}',  # a class of no interest
]


def drive_reports(drive: Drive, sky_every: int = 5, used: int = 9) -> list[dict[str, Any]]:
    """The TPV reports (and a SKY every ``sky_every``) a u-blox receiver behind gpsd gives
    for the drive's GPS log."""
    reports: list[dict[str, Any]] = []
    for i, p in enumerate(drive.track):
        if i % sky_every == 0:
            sats = [
                {"PRN": n + 1, "el": 40.0, "az": 30.0 * n, "ss": 35.0, "used": n < used}
                for n in range(12)
            ]
            reports.append(
                {
                    "class": "SKY",
                    "device": DEVICE,
                    "nSat": 12,
                    "uSat": used,
                    "hdop": 0.9,
                    "satellites": sats,
                }
            )
        stamp = p.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        reports.append(
            {
                "class": "TPV",
                "device": DEVICE,
                "mode": 3,
                "time": stamp,
                "lat": round(p.lat, 9),
                "lon": round(p.lon, 9),
                "altHAE": round(p.ele + 40.0, 3),
                "altMSL": round(p.ele, 3),
                "speed": 8.0,
                "track": 90.0,
                "eph": 2.5,
            }
        )
    return reports


def tpv_fixes(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in reports if r["class"] == "TPV" and r.get("mode", 0) >= 2]


class FakeGpsd:
    """The server; ``start`` and ``stop`` on its own event loop."""

    def __init__(
        self,
        reports: list[dict[str, Any]],
        *,
        port: int = 0,
        rate: float = 50.0,
        progress: Path | None = None,
        junk_every: int = 0,
    ) -> None:
        self.reports = reports
        self.port = port
        self.rate = rate
        self.progress = progress
        self.junk_every = junk_every
        self.cursor = int(progress.read_text()) if progress and progress.exists() else 0
        self.connections = 0
        self.watches = 0
        self.sent: list[dict[str, Any]] = []  # reports written to a client, in order
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._client, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):  # gpsd stopping drops its clients
                writer.close()
            await self._server.wait_closed()

    @property
    def done(self) -> bool:
        return self.cursor >= len(self.reports)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        watching = asyncio.Event()
        closed = asyncio.Event()

        def send(obj: dict[str, Any] | bytes) -> None:
            writer.write((obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\r\n")

        async def commands() -> None:
            while line := await reader.readline():
                text = line.decode("ascii", "replace").strip()
                if text.startswith("?WATCH="):
                    send(
                        {
                            "class": "DEVICES",
                            "devices": [
                                {
                                    "class": "DEVICE",
                                    "path": DEVICE,
                                    "activated": "2024-06-01T06:59:00.000Z",
                                }
                            ],
                        }
                    )
                    send({"class": "WATCH", "enable": True, "json": True})
                    self.watches += 1
                    watching.set()
                elif text.startswith("?VERSION"):
                    send(VERSION)
            closed.set()

        send(VERSION)
        reading = asyncio.create_task(commands())
        try:
            await writer.drain()
            await watching.wait()
            await self._replay(writer, send, closed)
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass  # the client went, or the fake is stopping (asyncio would report a cancel)
        finally:
            reading.cancel()
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _replay(self, writer: asyncio.StreamWriter, send: Any, closed: asyncio.Event) -> None:
        lines = 0
        while not closed.is_set():
            async with self._lock:
                if self.done:
                    report: dict[str, Any] = {"class": "TPV", "device": DEVICE, "mode": 1}
                else:
                    report = self.reports[self.cursor]
                    self.cursor += 1
                    self._save_progress()
                lines += 1
                if self.junk_every and lines % self.junk_every == 0:
                    send(JUNK[lines // self.junk_every % len(JUNK)])
                send(report)
                await writer.drain()
                self.sent.append(report)
            await asyncio.sleep(1.0 if self.done else 1.0 / self.rate)

    def _save_progress(self) -> None:
        if self.progress is not None:
            tmp = self.progress.with_suffix(".tmp")
            tmp.write_text(str(self.cursor))
            os.replace(tmp, self.progress)


class FakeGpsdThread:
    """A FakeGpsd on an event loop in a thread of the test process."""

    def __init__(self, reports: list[dict[str, Any]], **options: Any) -> None:
        self.fake = FakeGpsd(reports, **options)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.fake.port

    def __enter__(self) -> FakeGpsdThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.fake.start(), self.loop).result(10)
        return self

    def __exit__(self, *_exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.stop(), self.loop).result(10)
        asyncio.run_coroutine_threadsafe(_cancel_all(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


async def _cancel_all() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--reports", type=Path, required=True, help="JSON list of reports")
    parser.add_argument("--progress", type=Path)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--junk-every", type=int, default=0)
    args = parser.parse_args()
    reports = json.loads(args.reports.read_text())

    async def serve() -> None:
        fake = FakeGpsd(
            reports,
            port=args.port,
            rate=args.rate,
            progress=args.progress,
            junk_every=args.junk_every,
        )
        await fake.start()
        print(f"fake gpsd on 127.0.0.1:{fake.port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
