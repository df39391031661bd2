"""`demo`: the whole product on this machine, end to end, in under a minute.

A local Mapillary-compatible server and the daemon run in this process on a temporary workspace.
A pretend dash camera then writes a drive (turns, a minute at a red light, a long break) into
the watched folder as it happens, a few photos slowly, plus one broken file and a re-copied
folder; its GPS logger drops the GPX beside them when the drive ends. The demo waits until the
daemon has imported, geotagged, split, de-duplicated and uploaded everything, checks the
server's counters, and prints what happened.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daemon.commands.common import add_command
from daemon.core import config, log
from daemon.core.errors import EXIT_OK, EXIT_SET_ASIDE
from daemon.demo.camera import write_jpeg_bytes
from daemon.demo.route import Drive, plan_drive
from daemon.journal import FileState, Journal, SequenceState
from daemon.server import ServerConfig, running_server

EPILOG = """\
examples:
  mapillary-daemon demo              # about 185 photos, done in ~15 s
  mapillary-daemon demo --keep       # then keep the page up (Ctrl-C ends) and the workspace
  mapillary-daemon demo --laps 3     # a longer drive

Nothing leaves this machine: the server listens on 127.0.0.1 and the workspace is temporary.
Exit codes: 0 everything arrived on the server exactly once, 1 something did not."""

TOKEN = "demo-access-token"  # the only token the demo's own server accepts
# Berlin in June is +02:00, but this camera was never put on summer time, and its clock runs
# 7 s behind; it writes no zone. The daemon is told neither: it finds both from the photos.
CAMERA_ZONE = "+01:00"
CAMERA_OFFSET_S = -7.0
PHOTOS_PER_SECOND = 40.0
SLOW_EVERY = 25  # every n-th photo is written in pieces, as a slow card would
TIMEOUT_S = 120.0


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "demo",
        "run the whole flow against a built-in local server (no account needed)",
        "Start a local Mapillary-compatible server and the daemon on a temporary "
        "workspace, act out a drive with a camera writing photos and a GPS log into a watched "
        "folder, wait until everything is uploaded, and print what happened.",
        EPILOG,
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="once done, keep the page and the server up until Ctrl-C, and keep the workspace",
    )
    p.add_argument("--laps", type=int, default=1, help="laps of the route (1 ≈ 185 photos)")
    p.add_argument("--seed", type=int, default=7, help="GPS noise seed (%(default)s)")
    p.add_argument("--verbose", action="store_true", help="show the daemon's log lines")
    p.set_defaults(func=run)


@dataclass
class Scene:
    """What the camera did, to compare with what reached the server."""

    photos: int = 0
    slow: int = 0
    broken: list[str] = field(default_factory=list)
    recopied: int = 0
    seconds: float = 0.0


def run(args: argparse.Namespace) -> int:
    log.setup("info" if args.verbose else "error", "console" if sys.stderr.isatty() else "json")
    log.register_secret(TOKEN)
    workspace = Path(tempfile.mkdtemp(prefix="mapillary-demo-"))
    try:
        return asyncio.run(_demo(workspace, args.laps, args.seed, args.keep))
    finally:
        if args.keep:
            print(f"workspace kept: {workspace}")
        else:
            shutil.rmtree(workspace, ignore_errors=True)


async def _demo(workspace: Path, laps: int, seed: int, keep: bool = False) -> int:
    from daemon.runtime.daemon import (  # the daemon's imports are heavy; only for this command
        Daemon,
        install_signal_handlers,
    )

    began = time.monotonic()
    drive = plan_drive(datetime(2024, 6, 1, 7, 30, tzinfo=UTC), seed=seed, laps=laps)
    camera = workspace / "camera"
    camera.mkdir()
    server_config = ServerConfig(data_dir=workspace / "server", tokens=(TOKEN,))
    async with running_server(server_config) as server:
        settings = _settings(workspace, camera, server.graph_url, server.upload_url)
        daemon = Daemon(settings, token=TOKEN)
        install_signal_handlers(daemon)
        print(f"server   {server.base_url} (local, accepts only the demo token)")
        print(
            f"watching {camera}  (camera zone and clock: auto; the camera is set to "
            f"{CAMERA_ZONE} and runs {-CAMERA_OFFSET_S:g} s behind)"
        )
        await daemon.startup()
        worker = asyncio.create_task(daemon.main(), name="daemon")
        for _ in range(20):  # the page comes up within a moment, or not at all (port taken)
            if daemon.runtime.web or settings.web_listen == "off":
                break
            await asyncio.sleep(0.05)
        if daemon.runtime.web:
            print(
                f"page     {daemon.runtime.web} (status and map, while the demo runs)", flush=True
            )
        try:
            scene = await _act_drive(drive, camera)
            print(
                f"camera   wrote {scene.photos} photos ({scene.slow} slowly), 1 GPX log, "
                f"{len(scene.broken)} broken file and re-copied {scene.recopied} photos "
                f"in {scene.seconds:.1f} s"
            )
            settled = await _until_done(daemon, scene, worker)
            clock = daemon.runtime.clock or {}
            code = await _report(
                scene, settled, settings.journal_path, server, drive, workspace, clock
            )
            print(f"done     in {time.monotonic() - began:.1f} s: {_verdict(code)}", flush=True)
            if keep and daemon.runtime.web and not worker.done():
                print(f"page     {daemon.runtime.web} stays up: Ctrl-C to stop", flush=True)
                await daemon.stopping.wait()  # SIGINT or SIGTERM
        finally:
            daemon.request_stop()
            await asyncio.gather(worker, return_exceptions=True)
            await daemon.shutdown()
    return code


def _verdict(code: int) -> str:
    return "every photo arrived once" if code == EXIT_OK else "NOT everything went as it should"


async def _report(
    scene: Scene,
    settled: bool,
    journal: Path,
    server: Any,
    drive: Drive,
    workspace: Path,
    clock: dict[str, Any],
) -> int:
    """Print what the journal and the server say, and fetch the drive back; the exit code."""
    report = await asyncio.to_thread(_read_journal, journal)
    stats = server.stats()
    code = _print_report(scene, report, stats, server.sequences(), settled)
    off = (clock.get("time_offset") or 0.0) - CAMERA_OFFSET_S
    print(f"clock    {_clock_text(clock)}")
    print(
        f"         (the camera: zone {CAMERA_ZONE}, {-CAMERA_OFFSET_S:g} s behind; {off:+.1f} s off)"
    )
    # One red light and a photo every 2 s time the clock to about a second (PERFORMANCE.md):
    # more than 1.5 s off would be a finder gone wrong, not the drive's limit.
    if clock.get("source") != "auto" or clock.get("tz") != CAMERA_ZONE or abs(off) > 1.5:
        code = EXIT_SET_ASIDE  # the demo's camera is set wrong on purpose: clock must find it
    fetched = await _download_back(drive, server.graph_url, workspace / "downloaded")
    print(
        f"download {fetched} images of the drive's box back from the server "
        f"(thumbnails with position, time and heading in EXIF, plus images.geojson)"
    )
    return code if fetched == stats["images"] else EXIT_SET_ASIDE


async def _download_back(drive: Drive, graph: str, out: Path) -> int:
    """The round trip: search the drive's box on the server and fetch what it holds."""
    from daemon.download.box import Box
    from daemon.download.job import Options, download_box

    lats = [p.lat for p in drive.photos]
    lons = [p.lon for p in drive.photos]
    margin = 0.001  # about 100 m: GPS noise puts some photos beside the true route
    box = Box(min(lons) - margin, min(lats) - margin, max(lons) + margin, max(lats) + margin)
    outcome = await download_box(graph, TOKEN, Options(box=box, out=out, size="256"))
    return len(outcome.fetched) + len(outcome.already)


def _clock_text(clock: dict[str, Any]) -> str:
    from daemon.commands.status import clock_line

    return clock_line(clock).removeprefix("clock: ")


def _settings(workspace: Path, camera: Path, graph: str, upload: str) -> config.Settings:
    return config.Settings(
        watch=[camera],
        journal=workspace / "journal.sqlite3",
        spool=workspace / "spool",
        settle_seconds=1.0,
        batch_quiet_seconds=3.0,
        tz="auto",
        time_offset="auto",
        graph_endpoint=graph,
        upload_endpoint=upload,
        min_free_mb=0.0,
        web_listen="127.0.0.1:0",  # a free port: the demo must not need 8764 to be free
    )


# -- the camera -------------------------------------------------------------------------------


async def _act_drive(drive: Drive, camera: Path) -> Scene:
    """Write the drive as a camera would, in (sped-up) real time; returns what was written."""
    scene = Scene()
    started = time.monotonic()
    folder = camera / "DCIM" / "100ACME"
    folder.mkdir(parents=True)
    slow_writes = []
    for photo in drive.photos:
        data = write_jpeg_bytes(
            photo, camera_tz=CAMERA_ZONE, camera_offset_s=CAMERA_OFFSET_S, jpeg_size=(320, 240)
        )
        path = folder / f"G{photo.index:07d}.JPG"
        if photo.index % SLOW_EVERY == 0:
            slow_writes.append(asyncio.create_task(_write_slowly(path, data)))
            scene.slow += 1
        else:
            await asyncio.to_thread(path.write_bytes, data)
        scene.photos += 1
        await asyncio.sleep(1.0 / PHOTOS_PER_SECOND)
    await asyncio.gather(*slow_writes)
    broken = folder / "G_BROKEN.JPG"  # a picture whose camera never wrote a capture time
    await asyncio.to_thread(broken.write_bytes, _jpeg_without_exif())
    scene.broken.append(broken.name)
    # The driver copies a few photos to a second folder too: the same content, nothing new.
    again = camera / "copied-again"
    again.mkdir()
    for path in sorted(folder.glob("G*.JPG"))[:5]:
        await asyncio.to_thread(shutil.copy2, path, again / path.name)
        scene.recopied += 1
    # The GPS logger closes its log when the engine stops.
    gpx = camera / "gps" / "track.gpx"
    gpx.parent.mkdir()
    await asyncio.to_thread(gpx.write_text, drive.gpx_text(), "utf-8")
    scene.seconds = time.monotonic() - started
    return scene


async def _write_slowly(path: Path, data: bytes, pieces: int = 4, pause: float = 0.4) -> None:
    """A file that grows over ~1.6 s: the daemon must not take it before it is whole."""
    step = len(data) // pieces + 1
    with open(path, "wb") as fh:
        for i in range(0, len(data), step):
            fh.write(data[i : i + step])
            fh.flush()
            await asyncio.sleep(pause)


def _jpeg_without_exif() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 120, 150)).save(out, "JPEG")
    return out.getvalue()


# -- waiting and reporting --------------------------------------------------------------------

_IN_FLIGHT = {
    FileState.DISCOVERED,
    FileState.IMPORTED,
    FileState.DESCRIBED,
    FileState.SEQUENCED,
    FileState.UPLOADED,
    FileState.WAITING_FOR_POSITION,
}


async def _until_done(daemon: Any, scene: Scene, worker: asyncio.Task[Any]) -> bool:
    """True once every written photo is in the journal and nothing is left in flight."""
    expected = scene.photos + len(scene.broken)
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline and not worker.done():
        counts, pending = await daemon.journal.run(_progress)
        known = sum(counts.values())
        if known >= expected and not pending and not any(counts[s] for s in _IN_FLIGHT):
            return True
        await asyncio.sleep(0.5)
    if worker.done() and not worker.cancelled() and (failed := worker.exception()) is not None:
        raise failed
    return False


def _progress(j: Journal) -> tuple[dict[FileState, int], int]:
    counts = {s: 0 for s in FileState}
    counts.update(j.count_by_state())
    # A photo set aside by the journal counts as known; the broken file is rejected there.
    return counts, len(j.sequences_in_state(SequenceState.PENDING))


@dataclass
class JournalReport:
    counts: dict[str, int]
    sequences: list[tuple[str, int, str | None]]
    rejected: list[tuple[str, str]]


def _read_journal(path: Path) -> JournalReport:
    with Journal.open_readonly(path) as j:
        summary = j.summary(errors=10)
        seqs = [
            (s.uuid, len(j.sequence_images(s.uuid)), s.cluster_id)
            for state in SequenceState
            for s in j.sequences_in_state(state)
        ]
        rejected = [
            (Path(e["path"] or "?").name, e["reason"] or "") for e in summary["recent_errors"]
        ]
    return JournalReport(summary["images"], seqs, rejected)


def _print_report(
    scene: Scene,
    report: JournalReport,
    stats: dict[str, int],
    sequences: list[dict[str, Any]],
    settled: bool,
) -> int:
    c = report.counts
    uploaded = c.get("finished", 0)
    print(
        f"daemon   imported {sum(c.values())} photos (the {scene.recopied} re-copied ones were "
        "recognised by content)"
    )
    print(f"         {c.get('duplicate', 0)} duplicates skipped (standing still at the red light)")
    for name, reason in report.rejected:
        print(f"         set aside {name}: {reason}")
    print(f"         {len(report.sequences)} sequences (split at the long break):")
    for uuid, n, cluster in report.sequences:
        print(f"           {uuid}  {n:4d} images  cluster {cluster or '(not finished)'}")
    print(
        f"server   {stats['images']} images in {stats['sequences']} sequences, "
        f"{stats['duplicate_images']} duplicate images, "
        f"{stats['duplicate_sequences']} duplicate sequences, "
        f"{stats['bytes_received'] / 1e6:.1f} MB received"
    )
    ok = (
        settled
        and stats["images"] == uploaded
        and stats["sequences"] == len(report.sequences) == len(sequences)
        and stats["duplicate_images"] == 0
        and stats["duplicate_sequences"] == 0
        and all(cluster for _, _, cluster in report.sequences)
    )
    return EXIT_OK if ok else EXIT_SET_ASIDE
