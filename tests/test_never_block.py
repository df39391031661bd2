"""Never block on a file (issue 12, cases 4 and 5).

A FIFO renamed over a photo that is settling, or over one already journaled, is set aside with
its reason and blocks nothing: the rest is uploaded and SIGTERM still ends the daemon. A "photo"
over ``max_photo_mb`` is set aside at intake; one under a raised cap is uploaded streamed from
disk, with the daemon's peak memory far below the file's size. The streamed body is the very
body the whole-file code built (same bytes, same MD5, so the same session key).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.core import config
from daemon.core.files import NotRegularFile, open_regular
from daemon.core.hashing import hash_file
from daemon.demo.drive import plan_drive, write_drive, write_jpeg_bytes
from daemon.intake.complete import verdict
from daemon.intake.spool import stage_files
from daemon.media import exif
from daemon.media.gpx import GpxError, load_gpx_files
from daemon.server.config import ServerConfig
from daemon.server.runner import ServerThread
from daemon.upload.body import FileBody, Unreadable
from tests.corpus import CORPUS as SHARED_CORPUS
from tests.daemon_proc import TOKEN, DaemonProc, new_daemon, wait_for
from tests.jpegs import make_jpeg

pytestmark = pytest.mark.timeout(180)

START = datetime(2024, 6, 1, 7, 0, 0, tzinfo=UTC)
CORPUS = SHARED_CORPUS / "exif"
FIFO = "not a regular file (FIFO)"
MB = 1 << 20


def drive(folder: Path, seed: int, photos: int) -> list[Path]:
    """The first ``photos`` photos of a drive of their own, with its GPX."""
    planned = plan_drive(START + timedelta(hours=seed), seed=seed, stop_s=0, break_s=300)
    planned = dataclasses.replace(planned, photos=planned.photos[:photos])
    return write_drive(planned, folder)


def fifo_over(path: Path) -> None:
    """A FIFO renamed over ``path`` (as a hostile or confused program might)."""
    tmp = path.with_name(f".fifo-{path.name}")
    os.mkfifo(tmp)
    os.replace(tmp, path)


def states_of(d: DaemonProc, paths: list[Path]) -> dict[str, tuple[str, str | None]]:
    rows = d.query(
        "SELECT p.path, f.state, f.reason FROM files f JOIN file_paths p ON p.hash = f.hash"
    )
    wanted = {str(p.resolve()) for p in paths}
    return {path: (state, reason) for path, state, reason in rows if path in wanted}


def all_up(d: DaemonProc, paths: list[Path]) -> bool:
    got = states_of(d, paths)
    pending = d.query("SELECT count(*) FROM sequences WHERE state != 'finished'")[0][0]
    done = sum(1 for state, _ in got.values() if state in ("finished", "duplicate"))
    return done == len(paths) and pending == 0


def stops_at_once(d: DaemonProc) -> float:
    """SIGTERM; how long the daemon took to exit (it must exit 0)."""
    assert d.proc is not None
    asked = time.monotonic()
    d.signal(signal.SIGTERM)
    try:
        code = d.proc.wait(10)
    except Exception as exc:
        raise AssertionError(
            f"the daemon did not exit after SIGTERM:\n{d.output()[-2000:]}"
        ) from exc
    assert code == 0, d.output()[-2000:]
    return time.monotonic() - asked


def set_aside_lines(d: DaemonProc, path: Path) -> list[str]:
    """The reasons logged for ``path`` being set aside (at intake or when processed)."""
    where = str(path.resolve())
    return [
        e["reason"]
        for e in d.events()
        if e.get("event") in ("file_set_aside", "photo_set_aside", "image_set_aside")
        and where in str(e.get("file"))
    ]


# -- case 4: a FIFO where a photo was -----------------------------------------------------------


def test_a_fifo_renamed_over_a_settling_photo_is_set_aside_and_blocks_nothing(
    tmp_path: Path, daemons: list[DaemonProc]
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    with ServerThread(ServerConfig(tokens=(TOKEN,))) as server:
        env = server.environment()
        d = new_daemon(daemons, tmp_path / "work", env, "--watch", str(inbox))
        d.start("--settle-seconds", "2").wait_event("root_watched", 15)
        settling = inbox / "b" / "G0000001.JPG"
        settling.parent.mkdir()
        planned = plan_drive(START, seed=9, stop_s=0, break_s=300)
        settling.write_bytes(write_jpeg_bytes(planned.photos[0], with_gps_in_exif=True))
        time.sleep(0.8)  # seen and settling (2 s), not yet read
        fifo_over(settling)
        later = drive(inbox / "c", seed=2, photos=12)
        wait_for("the photos after the FIFO uploaded", lambda: all_up(d, later), 60)
        reasons = wait_for("the FIFO set aside", lambda: set_aside_lines(d, settling), 10)
        assert reasons == [FIFO]
        assert server.stats()["images"] == len(later)
        assert stops_at_once(d) < 5


def test_a_fifo_renamed_over_a_journaled_photo_is_set_aside_and_sigterm_still_exits(
    tmp_path: Path, daemons: list[DaemonProc]
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    with ServerThread(ServerConfig(tokens=(TOKEN,))) as server:
        env = server.environment()
        # The batch is processed 4 s after the folder went quiet: time to swap one photo.
        d = new_daemon(daemons, tmp_path / "work", env, "--watch", str(inbox))
        d.start("--batch-quiet-seconds", "4").wait_event("root_watched", 15)
        photos = drive(inbox / "a", seed=1, photos=12)

        def journaled() -> bool:
            got = states_of(d, photos)
            return len(got) == len(photos) and all(s == "imported" for s, _ in got.values())

        wait_for("the photos journaled", journaled, 20)
        swapped = photos[5]
        fifo_over(swapped)
        rest = [p for p in photos if p != swapped]
        wait_for("the other photos uploaded", lambda: all_up(d, rest), 60)
        state, reason = states_of(d, [swapped])[str(swapped.resolve())]
        assert state == "rejected" and reason is not None and FIFO in reason
        assert any(FIFO in r for r in set_aside_lines(d, swapped))
        assert server.stats()["images"] == len(rest)
        assert stops_at_once(d) < 5


@pytest.mark.timeout(20)
def test_every_reader_of_a_users_file_refuses_a_fifo_at_once(tmp_path: Path) -> None:
    """Completeness, hashing, the spool copy, EXIF, GPX and upload all open through
    open_regular: a FIFO is a reason, never a wait for a writer that never comes."""
    photo, track = tmp_path / "a.jpg", tmp_path / "t.gpx"
    for path in (photo, track):
        os.mkfifo(path)
    with pytest.raises(NotRegularFile, match=r"a\.jpg: not a regular file \(FIFO\)"):
        open_regular(photo)
    assert verdict(photo).reason == FIFO and verdict(photo).hopeless
    assert verdict(track).reason == FIFO and verdict(track).hopeless
    with pytest.raises(NotRegularFile):
        hash_file(photo)
    [staged] = stage_files([photo], tmp_path / "spool")
    assert isinstance(staged, NotRegularFile)
    with pytest.raises(exif.MediaError, match=r"cannot read: not a regular file \(FIFO\)"):
        exif.read_exif(photo)
    assert not exif.is_complete_jpeg(photo)
    with pytest.raises(exif.MediaError, match=r"not a regular file \(FIFO\)"):
        exif.tagged_head(photo, "{}")
    with pytest.raises(GpxError, match=r"not a regular file \(FIFO\)"):
        load_gpx_files([track])


# -- case 5: the size cap, and uploads in bounded memory ----------------------------------------


def sparse_photo(path: Path, hole: int, seed: int = 5) -> Path:
    """A real photo, then ``hole`` bytes of nothing (sparse: free on disk) and an end marker:
    a complete "JPEG" as far as its markers go."""
    planned = plan_drive(START + timedelta(hours=seed), seed=seed, stop_s=0, break_s=300)
    photo = write_jpeg_bytes(planned.photos[0], with_gps_in_exif=True, jpeg_size=(320, 240))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fh.write(photo)
        fh.truncate(len(photo) + hole)
        fh.seek(0, os.SEEK_END)
        fh.write(b"\xff\xd9")
    return path


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def test_a_photo_over_max_photo_mb_is_set_aside_with_its_size(
    tmp_path: Path, daemons: list[DaemonProc]
) -> None:
    inbox = tmp_path / "in"
    big = sparse_photo(inbox / "big" / "G0000001.JPG", 2 << 30)  # 2 GiB hole: no disk used
    photos = drive(inbox / "small", seed=3, photos=6)
    with ServerThread(ServerConfig(tokens=(TOKEN,))) as server:
        d = new_daemon(daemons, tmp_path / "work", server.environment(), "--watch", str(inbox))
        d.start().wait_event("root_watched", 15)
        wait_for("the small photos uploaded", lambda: all_up(d, photos), 60)
        reasons = wait_for("the big one set aside", lambda: set_aside_lines(d, big), 10)
        assert reasons == ["larger than max_photo_mb 256 MB: 2.0 GB"]
        assert not states_of(d, [big])  # never hashed, never journaled
        assert server.stats()["images"] == len(photos)
        assert d.status()["daemon"]["running"] is True
        assert stops_at_once(d) < 5


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
def test_a_big_photo_under_a_raised_cap_is_uploaded_in_bounded_memory(
    tmp_path: Path, daemons: list[DaemonProc]
) -> None:
    # 300 MB keeps the suite quick; tests/bench/bench_big_file.py does 2 GiB.
    inbox = tmp_path / "in"
    big = sparse_photo(inbox / "big" / "G0000001.JPG", 300 * MB)
    with ServerThread(ServerConfig(tokens=(TOKEN,))) as server:
        d = new_daemon(daemons, tmp_path / "work", server.environment(), "--watch", str(inbox))
        d.start("--max-photo-mb", "400").wait_event("root_watched", 15)
        wait_for("the big photo uploaded", lambda: all_up(d, [big]), 120)
        assert d.proc is not None
        peak = peak_rss_mb(d.proc.pid)
        stats = server.stats()
        assert stats["images"] == 1 and stats["duplicate_images"] == 0
        [stored] = server.server.store.images.values()
        held = server.server.store.image_path(stored).stat().st_size
        assert held > big.stat().st_size  # the whole file went up, with its description
        assert peak < 150, f"daemon peak RSS {peak:.0f} MB for a {held / MB:.0f} MB photo"
        assert stops_at_once(d) < 5


# -- the streamed body is the whole-file body ----------------------------------------------------


def sample_photos(folder: Path) -> list[Path]:
    """Corpus photos from many cameras (when there), and our own: with and without EXIF, a
    JFIF APP0 first, a thumbnail."""
    made = [
        make_jpeg(folder / "plain.jpg", capture_time=START.replace(tzinfo=None)),
        make_jpeg(folder / "gps.jpg", capture_time=START.replace(tzinfo=None), lat=47.1, lon=8.2),
    ]
    bare = folder / "bare.jpg"  # no EXIF at all: the APP1 is inserted
    from PIL import Image

    Image.new("RGB", (32, 24), (200, 10, 10)).save(bare, "JPEG")
    made.append(bare)
    planned = plan_drive(START, seed=4, stop_s=0, break_s=300)
    camera = folder / "camera.jpg"
    camera.write_bytes(write_jpeg_bytes(planned.photos[0], with_gps_in_exif=True))
    made.append(camera)
    corpus = sorted(CORPUS.glob("*.[jJ][pP]*[gG]")) if CORPUS.is_dir() else []
    return made + corpus


async def streamed(body: FileBody, offset: int, chunk: int) -> bytes:
    return b"".join([bytes(c) async for c in body.chunks(offset, chunk)])


async def test_the_streamed_body_is_the_whole_file_body_byte_for_byte(tmp_path: Path) -> None:
    description = json.dumps({"MAPLatitude": 47.0, "MAPLongitude": 8.0, "text": "é ✓"})
    compared = 0
    for path in sample_photos(tmp_path):
        try:
            whole = exif.tagged_bytes(path, description)
        except exif.MediaError:
            continue  # a corpus file the whole-file code refuses too
        head, start, end = exif.tagged_head(path, description)
        with FileBody.open(str(path), head, start, end, os.stat(path)) as body:
            assert body.size == len(whole)
            assert body.md5() == hashlib.md5(whole).hexdigest(), path.name
            assert await streamed(body, 0, 256 * 1024) == whole, path.name
            # Resumed from the server's offset: inside the new header, and inside the rest.
            for offset in (1, len(head) - 1, len(head), len(head) + 7, len(whole) - 1):
                if 0 <= offset <= len(whole):
                    assert await streamed(body, offset, 1000) == whole[offset:], (path, offset)
        compared += 1
    assert compared >= 4
    if CORPUS.is_dir():
        assert compared >= 20, "most corpus photos should be comparable"


async def test_a_photo_written_to_while_it_is_sent_is_unreadable_not_sent(tmp_path: Path) -> None:
    path = make_jpeg(tmp_path / "a.jpg", capture_time=START.replace(tzinfo=None))
    head, start, end = exif.tagged_head(path, "{}")
    with FileBody.open(str(path), head, start, end, os.stat(path)) as body:
        body.md5()
        with path.open("r+b") as fh:  # an editor saves in place
            fh.seek(end - 10)
            fh.write(b"\x00")
        with pytest.raises(Unreadable, match="changed while being uploaded"):
            await streamed(body, 0, 1 << 20)


def test_max_photo_mb_is_a_setting_with_bounds() -> None:
    assert config.Settings().max_photo_mb == 256
    assert config.apply(config.Settings(), {"max-photo-mb": 3000}, "flags").max_photo_mb == 3000
    with pytest.raises(config.ConfigError, match="'max_photo_mb' must be more than 0"):
        config.apply(config.Settings(), {"max_photo_mb": 0}, "flags")
