"""Sources: real watchdog observers on temporary folders, real JPEG and GPX files."""

from __future__ import annotations

import asyncio
import doctest
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path

import piexif
import pytest
from PIL import Image

from daemon.core import files as core_files
from daemon.core.files import is_photo_or_track, walk
from daemon.intake import (
    BatchReady,
    CardImported,
    CardInserted,
    CardRemoved,
    SettledFile,
    Sources,
    mounts,
)
from daemon.intake.complete import Verdict, verdict
from daemon.intake.mounts import identify_card, parse_mountinfo
from daemon.media import exif
from tests.jpegs import gpx_text, jpeg_bytes, make_jpeg

SETTLE = 0.3
REPO = Path(__file__).resolve().parents[1]
CUT_OFF = re.compile(r"cut off: no end-of-image marker \d+ s after its last change")


def photo(path: Path, seed: int = 0, size: tuple[int, int] = (64, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return make_jpeg(
        path, capture_time=datetime(2024, 5, 1, 12, 0, seed % 60), seed=seed, size=size
    )


async def events_until(
    sources: Sources, done: Callable[[list[object]], bool], timeout: float
) -> list[object]:
    """Events in order until ``done(events)`` holds or ``timeout`` passes (bounded)."""
    got: list[object] = []
    deadline = time.monotonic() + timeout
    while not done(got):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            got.append(await asyncio.wait_for(sources.next_event(), left))
        except TimeoutError:
            break
    return got


def settled(events: list[object]) -> list[SettledFile]:
    return [e for e in events if isinstance(e, SettledFile)]


def has_settled(path: Path) -> Callable[[list[object]], bool]:
    return lambda evs: any(e.path == path for e in settled(evs))


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Callable[..., Sources]]:
    started: list[Sources] = []

    async def start(**kwargs: object) -> Sources:
        kwargs.setdefault("settle_seconds", SETTLE)
        kwargs.setdefault("batch_quiet_seconds", 0.6)
        kwargs.setdefault("mount_poll_seconds", 0.3)
        sources = Sources(**kwargs)  # type: ignore[arg-type]
        await sources.start()
        started.append(sources)
        return sources

    yield start  # type: ignore[misc]
    for sources in started:
        await sources.stop()


async def test_a_dropped_photo_settles_and_is_reported_once(tmp_path: Path, running) -> None:
    watch = tmp_path / "watch"
    watch.mkdir()
    sources = await running(watch=[watch])
    await sources.wait_settled()
    path = photo(watch / "G0001.JPG")
    events = await events_until(sources, lambda evs: any(isinstance(e, BatchReady) for e in evs), 8)
    files = settled(events)
    assert [f.path for f in files] == [path]
    assert files[0].size == path.stat().st_size
    assert files[0].kind == "watch" and files[0].root == watch.resolve() and files[0].complete
    assert files[0].card_id is None
    batch = [e for e in events if isinstance(e, BatchReady)]
    assert batch == [BatchReady(watch.resolve(), watch.resolve(), 1)]
    path2 = photo(watch / "G0002.JPG", seed=2)
    async with asyncio.timeout(8):
        while True:
            event = await sources.next_event()
            if isinstance(event, SettledFile):
                assert event.path == path2
                break
    # Reading it (as the daemon does) and waiting brings no second report.
    path.read_bytes()
    again = await events_until(sources, lambda evs: False, 1.5)
    assert settled(again) == []


async def test_a_slow_writer_is_reported_only_when_complete(tmp_path: Path, running) -> None:
    watch = tmp_path / "watch"
    watch.mkdir()
    sources = await running(watch=[watch])
    await sources.wait_settled()
    blob = jpeg_bytes(size=(640, 480), seed=3, exif={"0th": {}, "Exif": {}, "GPS": {}, "1st": {}})
    target = watch / "slow.jpg"
    finished = threading.Event()

    def writer() -> None:
        # About 4 s in all, with one pause longer than settle_seconds half-way: only the
        # missing end marker keeps that half-file from being reported.
        steps = 16
        piece = len(blob) // steps + 1
        with open(target, "wb") as fh:
            for i in range(steps):
                fh.write(blob[i * piece : (i + 1) * piece])
                fh.flush()
                time.sleep(1.0 if i == steps // 2 else 0.2)
        finished.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        events = await events_until(sources, has_settled(target), 15)
    finally:
        thread.join()
    files = settled(events)
    assert len(files) == 1
    assert finished.is_set()
    assert files[0].size == len(blob) == target.stat().st_size
    assert files[0].complete


async def test_dotfiles_temp_names_and_other_files_are_ignored(tmp_path: Path, running) -> None:
    watch = tmp_path / "watch"
    watch.mkdir()
    sources = await running(watch=[watch])
    await sources.wait_settled()
    for name in (".hidden.jpg", "a.jpg.part", "b.jpg.tmp", "~c.jpg", ".thumbs/d.jpg", "e.png"):
        photo(watch / name)
    real = photo(watch / "sub" / "real.jpg")
    events = await events_until(sources, lambda evs: False, 2.5)
    assert [f.path for f in settled(events)] == [real]


async def test_a_temp_file_renamed_into_place_arrives_under_its_new_name(
    tmp_path: Path, running
) -> None:
    watch = tmp_path / "watch"
    watch.mkdir()
    sources = await running(watch=[watch])
    await sources.wait_settled()
    tmp = photo(watch / "IMG_1.jpg.part", seed=4)
    await asyncio.sleep(0.5)
    final = watch / "IMG_1.jpg"
    os.rename(tmp, final)
    events = await events_until(sources, has_settled(final), 6)
    assert [f.path for f in settled(events)] == [final]
    assert settled(events)[0].size == final.stat().st_size


async def test_a_photo_changed_after_settling_is_examined_again(tmp_path: Path, running) -> None:
    watch = tmp_path / "watch"
    watch.mkdir()
    sources = await running(watch=[watch])
    path = photo(watch / "p.jpg", seed=1)
    first = settled(await events_until(sources, has_settled(path), 6))
    photo(path, seed=2, size=(128, 96))  # rewritten in place, a different photo
    second = settled(await events_until(sources, has_settled(path), 6))
    assert len(first) == len(second) == 1
    assert second[0].size == path.stat().st_size != first[0].size


async def test_an_unclosed_gpx_is_reported_when_quiet_and_again_when_it_grows(
    tmp_path: Path, running
) -> None:
    # gpsd's gpxlogger writes its closing tags only on a clean exit: a log cut by a power loss
    # is used for the points it has, and again once the logger appends to it
    watch = tmp_path / "tracks"
    watch.mkdir()
    sources = await running(watch=[watch])
    await sources.wait_settled()
    points = [(datetime(2024, 5, 1, 12, 0, s), 52.0 + s * 1e-4, 13.0, 30.0) for s in range(30)]
    text = gpx_text(points)
    cut = text.index("</trkseg>")
    path = watch / "track.gpx"
    path.write_text(text[:cut])
    early = await events_until(sources, has_settled(path), 6)
    assert [(f.path, f.complete, f.size) for f in settled(early)] == [(path, True, cut)]
    with open(path, "a") as fh:
        fh.write(text[cut:])
    events = await events_until(sources, has_settled(path), 6)
    assert [f.path for f in settled(events)] == [path]
    assert settled(events)[0].size == len(text.encode())


async def test_a_file_that_never_completes_is_handed_on_marked_incomplete(
    tmp_path: Path, running
) -> None:
    watch = tmp_path / "watch"
    watch.mkdir()
    sources = await running(watch=[watch], give_up_seconds=1.5)
    await sources.wait_settled()
    blob = jpeg_bytes(size=(320, 240), exif=None)
    path = watch / "cut.jpg"
    path.write_bytes(blob[: len(blob) // 2])  # a camera that lost power mid-write
    started = time.monotonic()
    events = await events_until(sources, has_settled(path), 8)
    files = settled(events)
    assert len(files) == 1 and not files[0].complete
    assert CUT_OFF.fullmatch(files[0].reason or ""), files[0].reason
    assert time.monotonic() - started >= 1.5


def thumbnail_cut(tmp_path: Path) -> tuple[bytes, int]:
    """A camera-like photo with an EXIF thumbnail, and where that thumbnail ends."""
    whole = make_jpeg(
        tmp_path / "whole.jpg", capture_time=datetime(2024, 5, 1, 12), thumbnail=True
    ).read_bytes()
    thumb = piexif.load(whole)["thumbnail"]
    assert thumb and thumb.endswith(b"\xff\xd9")
    thumb_end = whole.index(thumb) + len(thumb)
    assert thumb_end < len(whole) - 1000  # the main image's data comes after it
    return whole, thumb_end


async def test_a_photo_cut_right_after_its_exif_thumbnail_is_not_complete(
    tmp_path: Path, running
) -> None:
    # The thumbnail's own end marker ends this file: "ends with FFD9" would call it whole.
    whole, thumb_end = thumbnail_cut(tmp_path)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole[:thumb_end])
    assert cut.read_bytes().endswith(b"\xff\xd9")
    assert not exif.is_complete_jpeg(cut)
    assert verdict(cut) == Verdict(False, "cut off: no end-of-image marker", dated=True)
    with pytest.raises(exif.MediaError):
        exif.read_exif(cut)  # the reader agrees: it is the same walk
    cut.write_bytes(whole)
    assert exif.is_complete_jpeg(cut) and verdict(cut).complete
    # In a watch folder it waits like any cut-off file, then is handed on as such.
    watch = tmp_path / "watch"
    watch.mkdir()
    sources = await running(watch=[watch], give_up_seconds=1.5)
    await sources.wait_settled()
    path = watch / "IMG_0001.JPG"
    path.write_bytes(whole[:thumb_end])
    started = time.monotonic()
    files = settled(await events_until(sources, has_settled(path), 8))
    assert len(files) == 1 and not files[0].complete
    assert CUT_OFF.fullmatch(files[0].reason or ""), files[0].reason
    assert time.monotonic() - started >= 1.5


async def test_an_empty_file_is_handed_on_after_the_give_up_and_the_wait_ends(
    tmp_path: Path, running
) -> None:
    # A zero-byte photo used to stay a candidate for ever: wait_settled (run --once) hung.
    watch = tmp_path / "watch"
    watch.mkdir()
    (watch / "empty.jpg").write_bytes(b"")
    (watch / "empty.gpx").write_bytes(b"")
    good = photo(watch / "good.jpg")
    started = time.monotonic()
    sources = await running(watch=[watch], give_up_seconds=1.5)
    got: list[object] = []

    async def consume() -> None:
        while True:
            got.append(await sources.next_event())

    consumer = asyncio.create_task(consume())
    try:
        await asyncio.wait_for(sources.wait_settled(), 10)
    finally:
        consumer.cancel()
    assert time.monotonic() - started >= 1.5
    files = {f.path.name: f for f in settled(got)}
    assert sorted(files) == ["empty.gpx", "empty.jpg", "good.jpg"]
    assert files["good.jpg"].complete and files["good.jpg"].reason is None
    assert files["good.jpg"].path == good
    for name in ("empty.jpg", "empty.gpx"):
        assert (files[name].complete, files[name].reason) == (False, "empty file")
    assert sources.settler.candidates == {}


GPX_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'


async def test_files_that_cannot_be_photos_or_tracks_are_handed_on_at_once(
    tmp_path: Path, running
) -> None:
    watch = tmp_path / "watch"
    watch.mkdir()
    sources = await running(watch=[watch])  # the default give-up: a minute
    assert sources.settler.give_up_seconds >= 60
    await sources.wait_settled()
    blob = jpeg_bytes(size=(320, 240), exif=None)
    good = photo(watch / "good.jpg")
    (watch / "fake.jpg").write_text("this is a text file, not a photo\n")
    Image.new("RGB", (8, 8)).save(watch / "png.jpg", "PNG")
    (watch / "bad.gpx").write_text("not xml at all\n")
    (watch / "kml.gpx").write_text(GPX_HEAD + "<kml><Document></Document></kml>\n")
    (watch / "tags.gpx").write_text(GPX_HEAD + "<gpx><trk></gpx>\n")
    cut = watch / "cut.jpg"
    cut.write_bytes(blob[: len(blob) // 2])  # starts like a JPEG: maybe a slow writer
    started = time.monotonic()
    names = {"good.jpg", "fake.jpg", "png.jpg", "bad.gpx", "kml.gpx", "tags.gpx"}
    events = await events_until(
        sources, lambda evs: {f.path.name for f in settled(evs)} >= names, 8
    )
    took = time.monotonic() - started
    files = {f.path.name: f for f in settled(events)}
    assert set(files) == names, took
    assert SETTLE <= took < 5
    assert files["good.jpg"].complete and files["good.jpg"].path == good
    reasons = {n: f.reason for n, f in files.items() if not f.complete}
    assert reasons == {
        "fake.jpg": "not a JPEG: no start-of-image marker",
        "png.jpg": "not a JPEG: no start-of-image marker",
        "bad.gpx": "not a GPX file: syntax error: line 1, column 0",
        "kml.gpx": "not a GPX file: root element is <kml>, not <gpx>",
    }
    # A <gpx> with an XML error later is the GPX loader's (it keeps the points around it).
    assert files["tags.gpx"].complete
    # The cut-off JPEG goes on waiting for its writer.
    later = await events_until(sources, lambda evs: False, 1.0)
    assert settled(later) == []
    assert sources.settler.pending_under(watch.resolve()) == 1


async def test_a_card_under_a_mount_root_is_detected_and_scanned_whole(
    tmp_path: Path, running
) -> None:
    media = tmp_path / "media"
    media.mkdir()
    sources = await running(mount_roots=[media])
    await sources.wait_settled()
    staging = tmp_path / "staging" / "CARD1"
    names = [f"IMG_{i:04d}.JPG" for i in range(1, 6)]
    for i, name in enumerate(names):
        photo(staging / "DCIM" / "100CANON" / name, seed=i)
    photo(staging / "DCIM" / ".thumb" / "x.jpg")
    cut = jpeg_bytes(size=(320, 240), exif=None)
    (staging / "DCIM" / "100CANON" / "IMG_0006.JPG").write_bytes(cut[: len(cut) // 2])
    os.rename(staging, media / "CARD1")  # appears at once, like a mount: no file events inside
    card_root = (media / "CARD1").resolve()
    started = time.monotonic()
    events = await events_until(
        sources, lambda evs: any(isinstance(e, CardImported) for e in evs), 10
    )
    # A file cut off on the card is handed on marked incomplete (to be set aside) after a
    # short wait, not the minute a watch folder gets: the user may pull the card any time.
    assert time.monotonic() - started < 5
    broken = [e for e in settled(events) if not e.complete]
    assert [b.path.name for b in broken] == ["IMG_0006.JPG"]
    assert CUT_OFF.fullmatch(broken[0].reason or ""), broken[0].reason
    events = [e for e in events if e not in broken]
    inserted = [e for e in events if isinstance(e, CardInserted)]
    assert len(inserted) == 1 and inserted[0].root == card_root
    assert inserted[0].card_id.startswith("name:CARD1:")
    files = settled(events)
    assert sorted(f.path.name for f in files) == names
    assert {(f.kind, f.root, f.card_id) for f in files} == {
        ("card", card_root, inserted[0].card_id)
    }
    # The card's files are all queued before the card is announced imported.
    assert isinstance(events[-1], CardImported)
    assert sources.status()[str(card_root)].endswith("all files handed on")


async def test_a_big_card_is_handed_on_only_as_fast_as_it_is_taken(tmp_path: Path, running) -> None:
    media = tmp_path / "media"
    media.mkdir()
    sources = await running(mount_roots=[media], max_queued=4)
    await sources.wait_settled()
    staging = tmp_path / "staging" / "CARD"
    names = [f"{folder}/G{i:04d}.JPG" for folder in ("100GOPRO", "101GOPRO") for i in range(15)]
    for i, name in enumerate(reversed(names)):
        photo(staging / "DCIM" / name, seed=i)
    os.rename(staging, media / "CARD")
    card_root = (media / "CARD").resolve()
    await asyncio.sleep(2.5)  # several settle steps with nobody taking events
    # The queue holds the card's arrival and 3 files; the other 27 wait as candidates.
    assert sources.status()[str(card_root)].endswith("importing, 27 file(s) left")
    events = await events_until(
        sources, lambda evs: any(isinstance(e, CardImported) for e in evs), 20
    )
    files = [str(f.path.relative_to(card_root / "DCIM")) for f in settled(events)]
    assert files == names  # all of them, once, in the camera's order
    assert isinstance(events[-1], CardImported)


async def test_a_card_present_at_start_is_scanned(tmp_path: Path, running) -> None:
    media = tmp_path / "media"
    for i in range(3):
        photo(media / "user" / "EOS_DIGITAL" / "DCIM" / "100EOS" / f"A{i}.JPG", seed=i)
    sources = await running(mount_roots=[media])
    events = await events_until(
        sources, lambda evs: any(isinstance(e, CardImported) for e in evs), 10
    )
    assert isinstance(events[0], CardInserted)
    assert len(settled(events)) == 3


async def test_a_pulled_card_is_removed_not_deleted_and_rescanned_when_back(
    tmp_path: Path, running
) -> None:
    media = tmp_path / "media"
    card = media / "CARD"
    paths = [photo(card / "DCIM" / "100GOPRO" / f"G{i}.JPG", seed=i) for i in range(3)]
    sources = await running(mount_roots=[media])
    first = await events_until(
        sources, lambda evs: any(isinstance(e, CardImported) for e in evs), 10
    )
    assert len(settled(first)) == 3
    # Unmounted: the mount point stays behind, empty.
    parked = tmp_path / "parked"
    os.rename(card / "DCIM", parked)
    gone = await events_until(sources, lambda evs: any(isinstance(e, CardRemoved) for e in evs), 6)
    assert [type(e) for e in gone] == [CardRemoved]
    assert card.is_dir()  # nothing of ours touched it
    assert sources.status()[str(card.resolve())].endswith("card removed")
    os.rename(parked, card / "DCIM")
    back = await events_until(
        sources, lambda evs: any(isinstance(e, CardImported) for e in evs), 10
    )
    assert isinstance(back[0], CardInserted)
    assert sorted(f.path for f in settled(back)) == sorted(paths)
    # The watch on the card is re-armed: a photo written onto it now is seen.
    extra = photo(card / "DCIM" / "100GOPRO" / "G9.JPG", seed=9)
    more = await events_until(sources, has_settled(extra), 6)
    assert [f.path for f in settled(more)] == [extra]


async def test_roots_added_and_removed_at_runtime(tmp_path: Path, running) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    old = photo(second / "old.jpg")
    sources = await running(watch=[first])
    await sources.wait_settled()
    await sources.add_root(second)
    events = await events_until(sources, has_settled(old), 6)
    assert [f.path for f in settled(events)] == [old]
    new = photo(second / "new.jpg", seed=5)
    events = await events_until(sources, has_settled(new), 6)
    assert [f.path for f in settled(events)] == [new]
    await sources.remove_root(second)
    assert str(second.resolve()) not in sources.status()
    photo(second / "after.jpg", seed=6)
    kept = photo(first / "kept.jpg", seed=7)
    events = await events_until(sources, lambda evs: False, 2.0)
    assert [f.path for f in settled(events)] == [kept]


async def test_a_watch_folder_that_vanishes_is_missing_then_watched_again(
    tmp_path: Path, running
) -> None:
    watch = tmp_path / "usb"
    watch.mkdir()
    sources = await running(watch=[watch])
    await sources.wait_settled()
    assert sources.status()[str(watch.resolve())] == "watching"
    os.rename(watch, tmp_path / "elsewhere")
    for _ in range(40):
        if sources.status()[str(watch.resolve())].startswith("missing"):
            break
        await asyncio.sleep(0.1)
    assert sources.status()[str(watch.resolve())].startswith("missing")
    watch.mkdir()
    await asyncio.sleep(1.0)  # re-armed by the mount poll
    path = photo(watch / "after.jpg")
    events = await events_until(sources, has_settled(path), 6)
    assert [f.path for f in settled(events)] == [path]


async def test_a_forced_polling_observer_sees_new_folders_and_files(
    tmp_path: Path, running
) -> None:
    watch = tmp_path / "nfs"
    watch.mkdir()
    sources = await running(watch=[watch], poll_interval=0.3)
    await sources.wait_settled()
    assert sources.polling
    path = photo(watch / "2024" / "05" / "p.jpg")
    events = await events_until(sources, has_settled(path), 8)
    assert [f.path for f in settled(events)] == [path]
    assert "polling every 0.3 s" in sources.status()[str(watch.resolve())]


FALLBACK_SCRIPT = textwrap.dedent(
    """
    import asyncio, ctypes, errno, json, os, sys, time
    from pathlib import Path
    from daemon.intake import SettledFile, Sources
    from tests.jpegs import make_jpeg

    libc = ctypes.CDLL(None, use_errno=True)
    held = []
    while len(held) < 10000:  # take every inotify instance this user may have
        fd = libc.inotify_init1(0)
        if fd < 0:
            break
        held.append(fd)
    exhausted = ctypes.get_errno() == errno.EMFILE

    async def main():
        watch = Path(sys.argv[1])
        sources = Sources(watch=[watch], settle_seconds=0.3, mount_poll_seconds=0.3)
        await sources.start()
        await sources.wait_settled()
        for fd in held:  # give them back at once: the fallback is in place
            os.close(fd)
        path = make_jpeg(watch / "p.jpg")
        deadline = time.monotonic() + 10
        got = None
        while got is None and time.monotonic() < deadline:
            event = await asyncio.wait_for(sources.next_event(), 10)
            if isinstance(event, SettledFile):
                got = str(event.path)
        status = sources.status()[str(watch.resolve())]
        await sources.stop()
        print(json.dumps({"exhausted": exhausted, "polling": sources.polling,
                          "got": got, "want": str(path), "status": status}))

    asyncio.run(main())
    """
)


def test_without_inotify_instances_it_falls_back_to_polling(tmp_path: Path) -> None:
    watch = tmp_path / "watch"
    watch.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", FALLBACK_SCRIPT, str(watch)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if not out["exhausted"]:
        pytest.skip("could not exhaust inotify instances here")
    assert out["polling"] is True
    assert out["got"] == out["want"]
    assert "polling every 2 s" in out["status"]
    assert "inotify_unavailable" in proc.stdout + proc.stderr


# -- pure helpers ----------------------------------------------------------------------------------


def test_doctests() -> None:
    for module in (core_files, mounts):
        assert doctest.testmod(module).failed == 0, module.__name__


def test_completeness_checks(tmp_path: Path) -> None:
    whole, thumb_end = thumbnail_cut(tmp_path)
    path = tmp_path / "p.jpg"
    path.write_bytes(whole)
    assert verdict(path) == Verdict(True) and exif.is_complete_jpeg(path)
    path.write_bytes(whole + b"\x00" * 300)  # padded by the camera
    assert verdict(path).complete and exif.is_complete_jpeg(path)
    path.write_bytes(b"")
    assert verdict(path) == Verdict(False, "empty file")
    for cut in [1, 2, *range(3, len(whole) - 1, 97), thumb_end, len(whole) - 1]:
        path.write_bytes(whole[:cut])
        found = verdict(path)
        assert not found.complete and not found.hopeless, cut  # may still be written
        assert not exif.is_complete_jpeg(path), cut
    path.write_bytes(whole[:thumb_end] + bytes(5000))  # preallocated, not yet written over
    assert verdict(path) == Verdict(False, "corrupt JPEG header", dated=True)
    path.write_bytes(b"\x00" + whole)
    assert verdict(path) == Verdict(False, "not a JPEG: no start-of-image marker", hopeless=True)
    text = gpx_text([(datetime(2024, 5, 1, 12, 0, 0), 52.0, 13.0, None)])
    gpx = tmp_path / "t.gpx"
    gpx.write_text(text)
    assert verdict(gpx).complete
    gpx.write_text(text[:-8])  # no closing tags (a logger's power cut): the loader keeps points
    assert verdict(gpx).complete
    gpx.write_text(text.replace("</trk>", ""))  # an XML error after <gpx>: the loader's too
    assert verdict(gpx).complete
    gpx.write_text(text[:30])
    assert verdict(gpx) == Verdict(False, "cut off: no <gpx> element", dated=True)
    gpx.write_text("<html><gpx></gpx></html>")
    assert verdict(gpx).hopeless
    gpx.write_text(text.replace("gpx", "gpx:gpx").replace("<gpx:gpx ", '<gpx:gpx xmlns:gpx="x" '))
    assert verdict(gpx).complete  # a prefixed root is still <gpx>
    gpx.write_text(text + "<gpx/>")  # two logs joined: the loader reads both
    assert verdict(gpx).complete


def test_scan_lists_photos_and_tracks_only(tmp_path: Path) -> None:
    want = {photo(tmp_path / "a" / "b" / "x.JPEG"), photo(tmp_path / "y.jpg")}
    (tmp_path / "t.GPX").write_text("<gpx></gpx>")
    (tmp_path / "gps.log").write_text("$GPRMC,...")  # NMEA logs are tracks too (sniffed later)
    want |= {tmp_path / "t.GPX", tmp_path / "gps.log"}
    for name in (".h/z.jpg", "n.csv", "w.jpg.part", "spool/s.jpg"):
        photo(tmp_path / name)
    listings = walk(tmp_path, is_photo_or_track, ignore=[tmp_path / "spool"])
    assert {folder / entry.name for folder, files in listings for entry in files} == want
    assert is_photo_or_track("IMG.JpG") and not is_photo_or_track("IMG.jpg.crdownload")


def test_mountinfo_and_card_identity(tmp_path: Path) -> None:
    device = tmp_path / "dev" / "sdb1"
    device.parent.mkdir()
    device.touch()
    disk_by = tmp_path / "disk"
    (disk_by / "by-uuid").mkdir(parents=True)
    (disk_by / "by-label").mkdir()
    (disk_by / "by-uuid" / "3A1B-2C4D").symlink_to(device)
    (disk_by / "by-label" / "EOS\\x20R").symlink_to(device)
    mount = tmp_path / "media" / "EOS R"
    photo(mount / "DCIM" / "100EOS" / "A.JPG")
    escaped = str(mount).replace(" ", "\\040")
    text = (
        "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
        f"91 30 8:17 / {escaped} rw,nosuid - vfat {device} rw,uid=1000\n"
    )
    table = parse_mountinfo(text)
    assert table[str(mount)].device == str(device) and table[str(mount)].mount_id == 91
    card = identify_card(mount, table, disk_by=disk_by)
    assert (card.card_id, card.uuid, card.label) == ("uuid:3A1B-2C4D", "3A1B-2C4D", "EOS R")
    # Not a mount (or no /dev/disk): the folder name and a fingerprint of its DCIM listing.
    plain = identify_card(mount, {}, disk_by=disk_by)
    assert plain.card_id.startswith("name:EOS R:") and plain.uuid is None
    assert identify_card(mount, {}, disk_by=disk_by).card_id == plain.card_id
    photo(mount / "DCIM" / "101EOS" / "B.JPG")
    assert identify_card(mount, {}, disk_by=disk_by).card_id != plain.card_id
