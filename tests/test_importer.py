"""Importer: real files copied into a real spool, cards pulled out mid-copy by another thread."""

from __future__ import annotations

import asyncio
import doctest
import hashlib
import os
import shutil
import tempfile
import threading
from datetime import datetime
from pathlib import Path

import pytest

from daemon.core.hashing import hash_file
from daemon.intake import CardImported, CardRemoved, SettledFile, Sources
from daemon.intake import spool as spool_module
from daemon.intake.spool import (
    ImportedFile,
    SourceGone,
    clean_spool_temps,
    commit_staged,
    free_mb,
    import_file,
    remove_spool_file,
    spool_name,
    stage_files,
)
from tests import jpegs
from tests.jpegs import jpeg_bytes


def make_jpeg(path: Path, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return jpegs.make_jpeg(path, **kwargs)  # type: ignore[arg-type]


def import_batch(
    srcs: list[Path], spool: Path, workers: int = 2
) -> list[ImportedFile | SourceGone | OSError]:
    """A card's batch as the daemon imports it: copied and hashed, then committed at once."""
    return commit_staged(stage_files(srcs, spool, workers), spool)


def spool_files(spool: Path) -> list[Path]:
    return sorted(p for p in spool.rglob("*") if p.is_file())


def big_photo(path: Path, megabytes: int) -> bytes:
    """A real JPEG followed by random filler up to ``megabytes`` (the importer only copies)."""
    blob = jpeg_bytes(size=(320, 240), exif=None) + os.urandom(megabytes * 1024 * 1024)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    return blob


def test_doctests() -> None:
    assert doctest.testmod(spool_module).failed == 0


def test_a_photo_is_copied_into_the_spool_under_its_hash(tmp_path: Path) -> None:
    src = make_jpeg(tmp_path / "card" / "IMG_0001.JPG", capture_time=datetime(2024, 5, 1, 12))
    data = src.read_bytes()
    want = hashlib.sha256(data).hexdigest()
    spool = tmp_path / "spool"
    got = import_file(src, spool)
    assert got == ImportedFile(want, spool / want[:2] / f"{want}.jpg", len(data), src)
    assert got.spool_path.read_bytes() == data
    assert spool_files(spool) == [got.spool_path]  # no temp left behind
    assert src.read_bytes() == data


def test_the_same_photo_at_two_paths_has_one_hash_and_one_spool_copy(tmp_path: Path) -> None:
    a = make_jpeg(tmp_path / "a" / "x.jpg", seed=1)
    b = tmp_path / "b" / "renamed.JPEG"
    b.parent.mkdir()
    shutil.copyfile(a, b)
    other = make_jpeg(tmp_path / "a" / "y.jpg", seed=2)
    assert hash_file(a) == hash_file(b) != hash_file(other)
    assert hash_file(a) == (hashlib.sha256(a.read_bytes()).hexdigest(), a.stat().st_size)
    spool = tmp_path / "spool"
    first, second = import_file(a, spool), import_file(b, spool)
    assert first.hash == second.hash and first.spool_path == second.spool_path
    assert second.src == b
    assert len(spool_files(spool)) == 1


def test_a_card_pulled_out_mid_copy_is_imported_again_in_full(tmp_path: Path) -> None:
    card = tmp_path / "media" / "CARD"
    src = card / "DCIM" / "100CANON" / "BIG.JPG"
    blob = big_photo(src, 40)
    spool = tmp_path / "spool"
    parked = tmp_path / "parked"
    pulled = threading.Event()
    calls: list[int] = []

    def pull_the_card() -> None:
        shutil.move(card, parked)  # the whole card goes, while the copy is running
        pulled.set()

    def progress(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 3:
            threading.Thread(target=pull_the_card).start()
            assert pulled.wait(10)

    with pytest.raises(SourceGone):
        import_file(src, spool, progress=progress)
    assert 3 <= len(calls) < len(blob) // (1 << 20)  # stopped early, not at the end
    assert spool_files(spool) == []
    # The card is back: the photo is imported whole.
    shutil.move(parked, card)
    got = import_file(src, spool)
    assert got.size == len(blob)
    assert got.hash == hashlib.sha256(blob).hexdigest()
    assert got.spool_path.read_bytes() == blob
    assert spool_files(spool) == [got.spool_path]


def test_a_source_that_shrinks_mid_copy_leaves_nothing(tmp_path: Path) -> None:
    src = tmp_path / "card" / "G.JPG"
    blob = big_photo(src, 8)
    spool = tmp_path / "spool"

    def progress(done: int, total: int) -> None:
        if done == 1 << 20:
            os.truncate(src, len(blob) // 2)

    with pytest.raises(SourceGone, match="changed while being copied"):
        import_file(src, spool, progress=progress)
    assert spool_files(spool) == []


def test_a_missing_source_is_gone_and_a_missing_spool_is_created(tmp_path: Path) -> None:
    with pytest.raises(SourceGone):
        import_file(tmp_path / "nowhere" / "x.jpg", tmp_path / "spool")
    assert spool_files(tmp_path / "spool") == []


def test_trouble_on_our_side_is_an_oserror_not_source_gone(tmp_path: Path) -> None:
    src = make_jpeg(tmp_path / "x.jpg")
    spool = tmp_path / "spool"
    spool.write_text("a file where the spool should be")
    with pytest.raises(OSError) as caught:
        import_file(src, spool)
    assert not isinstance(caught.value, SourceGone)
    with pytest.raises(OSError) as caught:
        import_batch([src], spool)  # a spool that cannot be made fails the whole batch
    assert not isinstance(caught.value, SourceGone)


def test_a_batch_is_imported_in_order_with_errors_as_values(tmp_path: Path) -> None:
    card = tmp_path / "card"
    srcs = [make_jpeg(card / f"IMG_{i:03d}.JPG", seed=i) for i in range(12)]
    twin = card / "twin.jpg"
    shutil.copyfile(srcs[0], twin)
    missing = card / "gone.jpg"
    spool = tmp_path / "spool"
    results = import_batch([*srcs[:6], missing, *srcs[6:], twin], spool, workers=3)
    assert isinstance(results[6], SourceGone)
    got = [r for r in results if isinstance(r, ImportedFile)]
    assert [r.src for r in got] == [*srcs, twin]
    for r in got:
        assert r.spool_path.read_bytes() == r.src.read_bytes()
        assert r.hash == hashlib.sha256(r.src.read_bytes()).hexdigest()
    assert got[-1].spool_path == got[0].spool_path
    assert spool_files(spool) == sorted({r.spool_path for r in got})
    assert len(spool_files(spool)) == 12


def test_a_track_keeps_its_extension(tmp_path: Path) -> None:
    src = tmp_path / "t.GPX"
    src.write_text("<gpx></gpx>\n")
    got = import_file(src, tmp_path / "spool" / "gpx")
    assert got.spool_path.name == f"{got.hash}.gpx"
    assert got.spool_path.read_text() == "<gpx></gpx>\n"


def test_spool_housekeeping(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    kept = import_file(make_jpeg(tmp_path / "a.jpg"), spool)
    leftover = spool / ".import-123-abc.part"
    leftover.write_bytes(b"half a photo")
    assert clean_spool_temps(spool) == 1
    assert spool_files(spool) == [kept.spool_path]
    # A GPX copy cut off in the spool's gpx/ folder is found too (the crash test found it).
    (tmp_path / "t.gpx").write_text("<gpx></gpx>\n")
    track = import_file(tmp_path / "t.gpx", spool / "gpx")
    (spool / "gpx" / ".import-9-def.part").write_text("<gpx>")
    assert clean_spool_temps(spool) == 1
    assert sorted(spool_files(spool)) == sorted([kept.spool_path, track.spool_path])
    remove_spool_file(track.spool_path, spool / "gpx")
    assert clean_spool_temps(tmp_path / "no-spool-yet") == 0
    original = make_jpeg(tmp_path / "original.jpg", seed=3)
    with pytest.raises(ValueError):
        remove_spool_file(original, spool)
    assert original.exists()
    remove_spool_file(kept.spool_path, spool)
    assert spool_files(spool) == [] and not kept.spool_path.parent.exists()


def test_free_space_is_read_from_the_nearest_existing_folder(tmp_path: Path) -> None:
    st = os.statvfs(tmp_path)
    expected = st.f_bavail * st.f_frsize / (1024 * 1024)
    got = free_mb(tmp_path / "not" / "yet" / "made")
    assert abs(got - expected) < 64  # other writers on the disk may move it a little
    assert got > 0


async def test_a_card_pulled_mid_import_is_imported_in_full_when_it_comes_back(
    tmp_path: Path,
) -> None:
    media, parked, spool = tmp_path / "media", tmp_path / "parked", tmp_path / "spool"
    folder = media / "CARD" / "DCIM" / "100GOPRO"
    make_jpeg(folder / "G0001.JPG", seed=1)
    head = jpeg_bytes(size=(320, 240), exif=None)
    big = folder / "G0002.JPG"
    big.write_bytes(head[:-2] + os.urandom(24 << 20) + b"\xff\xd9")
    make_jpeg(folder / "G0003.JPG", seed=3)
    want = {hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    sources = Sources(mount_roots=[media], settle_seconds=0.2, mount_poll_seconds=0.2)
    await sources.start()

    def pull(done: int, total: int) -> None:
        if done == 3 << 20:
            os.rename(media / "CARD" / "DCIM", parked)  # out it goes, mid-copy

    async def import_until_card_done(pull_on: Path | None) -> tuple[set[str], int]:
        imported, gone = set(), 0
        while True:
            event = await asyncio.wait_for(sources.next_event(), 15)
            if isinstance(event, CardImported):
                return imported, gone
            if isinstance(event, SettledFile):
                hook = pull if event.path == pull_on else None
                try:
                    got = await asyncio.to_thread(import_file, event.path, spool, hook)
                    imported.add(got.hash)
                except SourceGone:
                    gone += 1

    try:
        first, gone = await import_until_card_done(pull_on=big)
        assert gone == 2 and len(first) == 1  # G0001 in; G0002 cut off, G0003 gone with it
        assert spool_files(spool) == [spool / spool_name(h, ".jpg") for h in first]
        removed = await asyncio.wait_for(sources.next_event(), 10)
        assert isinstance(removed, CardRemoved)
        os.rename(parked, media / "CARD" / "DCIM")
        again, gone = await import_until_card_done(pull_on=None)
    finally:
        await sources.stop()
    assert gone == 0 and again == want
    assert sorted(spool_files(spool)) == sorted(spool / spool_name(h, ".jpg") for h in want)


@pytest.mark.parametrize("ways", [["copy_file_range"], ["sendfile"], ["read"]])
def test_every_way_of_copying_gives_the_same_bytes_and_hash(tmp_path: Path, ways) -> None:
    from daemon.intake.spool import _copy_and_hash, _kernel_ways

    if ways[0] not in _kernel_ways():
        pytest.skip(f"{ways[0]} is not available here")
    src = tmp_path / "card" / "BIG.JPG"
    blob = big_photo(src, 3)
    tmp = tmp_path / "copy.part"
    done: list[int] = []
    digest, size = _copy_and_hash(src, tmp, lambda n, _total: done.append(n), ways=[*ways, "read"])
    assert (digest, size) == (hashlib.sha256(blob).hexdigest(), len(blob))
    assert tmp.read_bytes() == blob
    assert done[-1] == len(blob) and len(done) >= 3  # progress and checks after each chunk


def test_a_card_on_another_file_system_is_copied_whole(tmp_path: Path) -> None:
    # /dev/shm is tmpfs: the kernel refuses copy_file_range across file systems (EXDEV)
    # and the importer goes on with the next way, as it must for a FAT card.
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second file system here")
    card = Path(tempfile.mkdtemp(dir=shm, prefix="card-"))
    try:
        srcs = [make_jpeg(card / "DCIM" / f"IMG_{i}.JPG", seed=i) for i in range(3)]
        srcs.append(card / "DCIM" / "BIG.JPG")
        big_photo(srcs[-1], 5)
        got = import_batch(srcs, tmp_path / "spool")
        for src, r in zip(srcs, got, strict=True):
            assert isinstance(r, ImportedFile)
            assert r.spool_path.read_bytes() == src.read_bytes()
            assert r.hash == hashlib.sha256(src.read_bytes()).hexdigest()
    finally:
        shutil.rmtree(card)


def test_a_name_left_on_unwritten_data_by_a_power_cut_is_repaired(tmp_path: Path) -> None:
    # A batch is renamed into place before its one flush: a cut in between can leave a final
    # name whose data never reached the disk (zeros, same size). The next copy repairs it.
    src = tmp_path / "card" / "G.JPG"
    blob = big_photo(src, 1)
    spool = tmp_path / "spool"
    digest = hashlib.sha256(blob).hexdigest()
    final = spool / spool_name(digest, ".JPG")
    final.parent.mkdir(parents=True)
    final.write_bytes(bytes(len(blob)))
    [got] = import_batch([src], spool)
    assert isinstance(got, ImportedFile) and got.spool_path == final
    assert final.read_bytes() == blob
    assert spool_files(spool) == [final]
    # A good copy already there is kept (same inode), the new one dropped.
    inode = final.stat().st_ino
    [again] = import_batch([src], spool)
    assert isinstance(again, ImportedFile) and final.stat().st_ino == inode
    assert spool_files(spool) == [final]


def test_a_photo_larger_than_one_hashing_window_hashes_whole(tmp_path: Path) -> None:
    from daemon.intake.spool import MAP_WINDOW

    src = tmp_path / "card" / "PANO.JPG"
    blob = big_photo(src, MAP_WINDOW // (1 << 20) * 2 + 3)  # two windows and a piece
    got = import_file(src, tmp_path / "spool")
    assert got.hash == hashlib.sha256(blob).hexdigest() and got.size == len(blob)
    assert got.spool_path.read_bytes() == blob


def test_the_spool_is_private_whatever_the_umask(tmp_path: Path) -> None:
    """It holds where someone drove: folders 0700, copies 0600, even under umask 022."""
    card = tmp_path / "card"
    card.mkdir()
    photo = make_jpeg(card / "G0001.JPG")
    spool = tmp_path / "data" / "spool"
    old = os.umask(0o022)
    try:
        (got,) = import_batch([photo], spool)
    finally:
        os.umask(old)
    assert not isinstance(got, Exception), got
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700
    assert spool.stat().st_mode & 0o777 == 0o700
    assert got.spool_path.parent.stat().st_mode & 0o777 == 0o700
    assert got.spool_path.stat().st_mode & 0o777 == 0o600
