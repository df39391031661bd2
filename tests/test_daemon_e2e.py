"""End to end: the daemon as a subprocess, real watchdog observers on temp folders, a real server.

Each test acts out one story of issue 4 and checks what arrived on the server (and how often),
what the journal says, and what `status --json` shows while the daemon runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from daemon.demo.drive import Drive, plan_drive, write_drive, write_jpeg_bytes
from daemon.server.config import ServerConfig
from daemon.server.runner import ServerThread
from tests.daemon_proc import TOKEN, DaemonProc, ServerProc, logging_daemon, new_daemon, wait_for

pytestmark = pytest.mark.timeout(120)

START = datetime(2024, 6, 1, 7, 0, 0, tzinfo=UTC)


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(tokens=(TOKEN,))) as srv:
        yield srv


def short_drive(seed: int = 1, stop_s: float = 10.0) -> Drive:
    """About 150 photos in two stretches (the break makes two sequences)."""
    return plan_drive(START, seed=seed, stop_s=stop_s, break_s=300.0)


def finished(d: DaemonProc, total: int) -> bool:
    """All ``total`` photos journaled and out of the way (uploaded or skipped as duplicates)."""
    images = d.images()
    done = images.get("finished", 0) + images.get("duplicate", 0)
    pending = d.query("SELECT count(*) FROM sequences WHERE state != 'finished'")[0][0]
    return done == total and pending == 0


def assert_server_matches_journal(d: DaemonProc, stats: dict[str, int]) -> None:
    images = d.images()
    assert stats["images"] == images["finished"]
    seqs = d.query("SELECT count(*) FROM sequences WHERE state = 'finished'")[0][0]
    assert stats["sequences"] == seqs
    assert stats["duplicate_images"] == 0 and stats["duplicate_sequences"] == 0


def test_photos_dropped_in_appear_on_the_server_once(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    d = new_daemon(daemons, tmp_path / "work", server.environment(), "--watch", str(inbox))
    d.start().wait_event("root_watched", 15)
    drive = short_drive()
    paths = write_drive(drive, inbox / "2024-06-01")
    wait_for("the drive uploaded", lambda: finished(d, len(paths)), 40)
    stats = server.stats()
    assert stats["images"] > 0.6 * len(paths)  # the red light's photos may be duplicates
    assert_server_matches_journal(d, stats)
    before = d.images()
    # Seen from the outside while it runs: the root, what it is doing, counts per state.
    st = d.status()
    assert st["daemon"]["running"] is True
    root = str(inbox.resolve())
    assert st["sources"][root]["kind"] == "watch"
    assert st["sources"][root]["images"]["finished"] == stats["images"]
    assert root in st["daemon"]["roots"]
    assert st["bytes_to_upload"] == 0
    # The same photos again, in another folder: journaled under a second path, sent never.
    shutil.copytree(inbox / "2024-06-01", inbox / "copy", copy_function=shutil.copy)
    wait_for(
        "the copies journaled",
        lambda: d.query("SELECT count(*) FROM file_paths")[0][0] == 2 * len(paths),
        20,
    )
    time.sleep(2.5)  # more than a batch's quiet time: anything new would be processed now
    again = server.stats()
    assert again["images"] == stats["images"] and again["sequences"] == stats["sequences"]
    assert d.images() == before
    assert d.stop() == 0
    assert d.status()["daemon"]["running"] is False


def spool_files(spool: Path) -> list[Path]:
    return [p for p in spool.rglob("*") if p.is_file()] if spool.exists() else []


def copied(spool: Path) -> list[Path]:
    return [p for p in spool_files(spool) if not p.name.startswith(".import-")]


def assert_whole_jpegs_on_server(server: ServerThread) -> None:
    """Every stored image is a whole JPEG (ends with EOI and decodes), none cut short."""
    from PIL import Image

    store = server.server.store
    for image in store.images.values():
        path = store.image_path(image)
        data = path.read_bytes()
        assert data.endswith(b"\xff\xd9"), f"{image.filename} is cut short"
        with Image.open(path) as im:
            im.load()


def test_a_card_pulled_mid_import_and_inserted_again_uploads_everything_once(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    media = tmp_path / "media"
    media.mkdir()
    d = new_daemon(daemons, tmp_path / "work", server.environment(), "--mount-root", str(media))
    d.start().wait_event("root_watched", 15)
    staged = tmp_path / "staging" / "CARD1"
    # Photos of ~360 KB, so a batch of copies takes a while and the pull lands among them.
    paths = write_drive(
        short_drive(seed=2), staged / "DCIM" / "100GOPRO", jpeg_size=(640, 480), quality=95
    )
    os.rename(staged, media / "CARD1")  # mounted: the whole card appears at once
    # Pulled once the first batch is safe in the spool, while the next one is being copied.
    wait_for("the first photos in the spool", lambda: copied(d.spool), 20, every=0.005)
    parked = tmp_path / "parked"
    os.rename(media / "CARD1", parked)  # pulled out
    d.wait_event("card_removed", 15)
    # Let the copies that were already open finish and be journaled.
    time.sleep(1.5)
    journaled = sum(d.images().values())
    assert 0 < journaled < len(paths), "the pull did not land mid-import"
    assert not [p for p in spool_files(d.spool) if p.name.startswith(".import-")]
    os.rename(parked, media / "CARD1")  # inserted again
    d.wait_event("card_imported", 30)
    wait_for("the card uploaded", lambda: finished(d, len(paths)), 60)
    stats = server.stats()
    assert_server_matches_journal(d, stats)
    assert_whole_jpegs_on_server(server)
    names = sorted(i.filename for i in server.server.store.images.values())
    assert len(names) == len(set(names)) == stats["images"]
    assert set(names) <= {p.name for p in paths}
    # One journal entry per photo, each under its card path; the card itself untouched.
    rows = d.query("SELECT path FROM file_paths")
    assert sorted(Path(r[0]).name for r in rows) == sorted(p.name for p in paths)
    assert sorted(p.name for p in (media / "CARD1" / "DCIM" / "100GOPRO").iterdir()) == sorted(
        [p.name for p in paths] + ["track.gpx"]
    )
    st = d.status()
    card = str((media / "CARD1").resolve())
    assert st["sources"][card] == {"kind": "card", "images": d.images()}
    assert st["daemon"]["roots"][str(media.resolve())] == "waiting for cards"
    assert st["daemon"]["roots"][card]  # what the card is doing, e.g. "all files handed on"
    assert d.stop() == 0


def test_a_slow_writer_is_imported_only_when_complete(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    d = new_daemon(daemons, tmp_path / "work", server.environment(), "--watch", str(inbox))
    d.start().wait_event("root_watched", 15)
    photo = short_drive().photos[0]
    data = write_jpeg_bytes(photo, with_gps_in_exif=True, jpeg_size=(640, 480), quality=95)
    # Ten pieces a second apart: each pause is longer than the settle time, so only the
    # completeness check (no end-of-image marker yet) keeps the half-written file out.
    cuts = [len(data) * i // 10 for i in range(1, 10)]
    cuts = [c - 1 if data[c - 2 : c] == b"\xff\xd9" else c for c in cuts] + [len(data)]
    target = inbox / "slow.jpg"
    done = 0
    with target.open("wb") as fh:
        for cut in cuts:
            fh.write(data[done:cut])
            fh.flush()
            done = cut
            if cut < len(data):
                time.sleep(1.0)
                assert d.images() == {}, f"imported with {done} of {len(data)} bytes written"
    wait_for("the photo uploaded", lambda: finished(d, 1), 30)
    assert d.query("SELECT size FROM files")[0][0] == len(data)
    stats = server.stats()
    assert stats["images"] == 1 and stats["sequences"] == 1
    assert_whole_jpegs_on_server(server)
    assert not d.events("file_set_aside") and not d.events("file_incomplete")
    assert d.stop() == 0


def test_a_gpx_arriving_an_hour_after_its_photos_still_geotags_them(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    d, inbox, logger = logging_daemon(daemons, tmp_path, server.environment())
    drive = short_drive(seed=3)
    paths = write_drive(drive, inbox, gpx_name=None)  # no GPS in the photos, no GPX yet
    d.start()
    wait_for(
        "the photos waiting for a position",
        lambda: d.images() == {"waiting_for_position": len(paths)},
        30,
    )
    assert server.stats()["images"] == 0
    assert d.stop() == 0
    # An hour passes (simulated: the journal's first-seen times moved an hour back).
    db = sqlite3.connect(d.journal)
    with db:
        db.execute("UPDATE files SET created_at = created_at - 3600")
    db.close()
    d.start().wait_event("root_watched", 15)
    wait_for(
        "the photos looked at again",
        lambda: all("1.0 h more" in r for (r,) in d.query("SELECT reason FROM files")),
        15,
    )
    assert d.images() == {"waiting_for_position": len(paths)}
    # The logger's file arrives, written the way a copy tool does (temp name, then rename).
    (logger / ".track.gpx.tmp").write_text(drive.gpx_text(), encoding="utf-8")
    os.rename(logger / ".track.gpx.tmp", logger / "track.gpx")
    wait_for("the drive uploaded", lambda: finished(d, len(paths)), 40)
    stats = server.stats()
    assert_server_matches_journal(d, stats)
    truth = {f"G{p.index:07d}.JPG": p for p in drive.photos}
    images = list(server.server.store.images.values())
    assert len(images) == stats["images"] > 0.6 * len(paths)
    for image in images:
        p = truth[image.filename]
        assert abs(image.lat - p.gps_lat) < 1e-5 and abs(image.lon - p.gps_lon) < 1e-5
    assert d.stop() == 0


def test_the_server_offline_for_a_while_then_back_gets_everything(
    tmp_path: Path, daemons: list[DaemonProc]
) -> None:
    srv = ServerProc(tmp_path / "server", extra=["--max-rate", "3000000"]).start()
    try:
        inbox = tmp_path / "in"
        inbox.mkdir()
        d = new_daemon(daemons, tmp_path / "work", srv.environment(), "--watch", str(inbox))
        # The client gives up after two tries, so the daemon's own offline backoff takes over.
        d.env["MAPILLARY_DAEMON_MAX_ATTEMPTS"] = "2"
        d.start().wait_event("root_watched", 15)
        paths = write_drive(short_drive(seed=4), inbox, jpeg_size=(320, 240), quality=90)
        d.wait_event("sequence_upload_start", 30)
        time.sleep(0.5)
        srv.stop()  # gone mid-upload
        d.wait_event("server_unreachable", 30)
        assert not finished(d, len(paths))
        time.sleep(2.0)
        srv.start()  # back, same port and data
        wait_for("the drive uploaded", lambda: finished(d, len(paths)), 60)
        stats = srv.stats()
        assert_server_matches_journal(d, stats)
        assert d.stop() == 0
    finally:
        srv.stop()


def test_import_pauses_when_the_disk_is_full_and_resumes_when_it_is_not(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    media = tmp_path / "media"
    media.mkdir()
    conf = tmp_path / "config.toml"
    free = shutil.disk_usage(tmp_path).free / 2**20
    # "Full": the spool's disk has less free space than asked for.
    conf.write_text(f'mount_roots = ["{media}"]\nmin_free_mb = {free + 10_000:.0f}\n')
    d = new_daemon(daemons, tmp_path / "work", server.environment(), "--config", str(conf))
    d.start().wait_event("import_paused", 15)
    staged = tmp_path / "staging" / "CARD1"
    paths = write_drive(short_drive(seed=5), staged / "DCIM" / "100GOPRO")
    os.rename(staged, media / "CARD1")
    d.wait_event("card_inserted", 15)
    time.sleep(2.0)  # settled and queued, but not copied
    st = d.status()
    assert "paused" in (st["daemon"]["paused"] or ""), st["daemon"]
    # No photo copied (the card's small GPX log may be: it is what geotags them later).
    assert d.images() == {} and not [p for p in spool_files(d.spool) if p.suffix == ".jpg"]
    # Room again: the configuration says so and the daemon is told to reload.
    conf.write_text(f'mount_roots = ["{media}"]\nmin_free_mb = 1\n')
    d.signal(signal.SIGHUP)
    d.wait_event("import_resumed", 15)
    wait_for("the card uploaded", lambda: finished(d, len(paths)), 40)
    assert_server_matches_journal(d, server.stats())
    assert d.status()["daemon"]["paused"] is None
    assert d.stop() == 0
