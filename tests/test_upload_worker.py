"""The sequence uploader on real files, a real journal and the embedded server on 127.0.0.1.

Photos are real JPEGs carrying a Mapillary description in EXIF (as `add-tags` leaves them) and are
queued with the `upload` command's own queue, so the journal holds what a user's run would: each
photo's path with the size and mtime it had when it was hashed. Each story then changes the world
between queueing and uploading (an edit in place, a deletion, a crash, an outage) and checks the
server and the journal afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import piexif
import pytest

from daemon.journal import AsyncJournal, FileState, Journal, NewFile, SequenceState, StateChange
from daemon.mapillary import (
    AuthError,
    RejectedError,
    RetriesExhausted,
    RetryPolicy,
    most_serious,
)
from daemon.mapillary.upload_service import session_key
from daemon.media.exif import tagged_bytes
from daemon.server import ServerConfig, ServerThread, running_server
from daemon.upload.client import UploadClient
from daemon.upload.queue import collect, queue
from daemon.upload.worker import SequenceResult, SequenceUploader, description_of
from tests.jpegs import make_jpeg

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "worker-test-token-" + "q" * 10
FAST = RetryPolicy(max_attempts=3, max_delay=0.02, jitter=0.0)
START = datetime(2024, 6, 1, 10, 0, 0)


def described_folder(
    folder: Path, n: int, seed: int = 0, size: tuple[int, int] = (96, 64), quality: int = 85
) -> list[Path]:
    """``n`` real JPEGs, one per second along a street, each with its Mapillary description."""
    folder.mkdir(parents=True)
    paths = []
    for i in range(n):
        moment = START + timedelta(seconds=seed * 100 + i)
        desc = {
            "MAPLatitude": round(48.1 + (seed * 100 + i) * 2e-5, 7),
            "MAPLongitude": 11.5,
            "MAPCaptureTime": moment.strftime("%Y_%m_%d_%H_%M_%S_000"),
            "MAPCompassHeading": {"TrueHeading": 0.0, "MagneticHeading": 0.0},
            "MAPOrientation": 1,
        }
        paths.append(
            make_jpeg(
                folder / f"IMG_{i:04d}.jpg",
                size=size,
                seed=seed * 100 + i,
                capture_time=moment,
                description=json.dumps(desc),
                quality=quality,
            )
        )
    return paths


def queue_folder(journal: Journal, folder: Path) -> list[str]:
    """What `upload FOLDER` records before it sends anything: the folder's sequences."""
    found = collect(folder)
    assert not found.skipped, found.skipped
    queued = queue(journal, folder.resolve(), found.photos)
    assert not queued.unreadable
    return queued.sequences + queued.resumed


def edit_make(path: Path, make: bytes) -> None:
    """What a photo editor does: change one EXIF tag, rewriting the file in place."""
    exif = piexif.load(str(path))
    exif["0th"][piexif.ImageIFD.Make] = make
    piexif.insert(piexif.dump(exif), str(path))


def flip_make_in_place(path: Path) -> None:
    """A one-byte edit of the Make tag: same size, new mtime, new content."""
    data = path.read_bytes()
    assert data.count(b"TestCam") == 1
    with open(path, "r+b") as fh:
        fh.seek(data.index(b"TestCam"))
        fh.write(b"TestCaM")


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[AsyncJournal]:
    aj = await AsyncJournal.open(tmp_path / "journal.sqlite3")
    try:
        yield aj
    finally:
        await aj.aclose()


async def upload(
    journal: AsyncJournal,
    server: Any,
    uuids: list[str] | None = None,
    source_wait: float = 7 * 86400,
    **kwargs: Any,
) -> list[SequenceResult]:
    kwargs.setdefault("policy", FAST)
    async with UploadClient(TOKEN, server.graph_url, server.upload_url, **kwargs) as client:
        worker = SequenceUploader(journal, client, source_wait=source_wait)
        return await worker.upload_all(uuids)


def server_images(server: Any) -> list[str]:
    """Every image the server holds in a finished sequence, by file name."""
    return sorted(i["filename"] for s in server.sequences() for i in s["images"])


# -- 1. a photo edited in place ------------------------------------------------------------------


async def test_a_photo_edited_in_place_is_set_aside_and_uploaded_once(
    tmp_path: Path, journal: AsyncJournal
) -> None:
    folder = tmp_path / "watch"
    paths = described_folder(folder, 6)
    (uuid,) = await journal.run(lambda j: queue_folder(j, folder))
    hashes = [r.hash for r in await journal.sequence_images(uuid)]
    # Same size, new mtime, new content: only the hash can tell.
    size_before = paths[2].stat().st_size
    time.sleep(0.01)
    flip_make_in_place(paths[2])
    assert paths[2].stat().st_size == size_before
    edit_make(paths[4], b"an editor wrote a longer make")

    async with running_server(ServerConfig(data_dir=tmp_path / "srv")) as server:
        (result,) = await upload(journal, server, [uuid])
        first = server.sequences()
        # The rerun a user makes: the edited photos are new content, queued as new photos.
        again = await journal.run(lambda j: queue_folder(j, folder))
        await upload(journal, server, again)
        stats = server.stats()
        everything = server_images(server)

    assert result.cluster_id and result.images == 4 and len(result.set_aside) == 2
    assert [i["filename"] for i in first[0]["images"]] == [
        p.name for i, p in enumerate(paths) if i not in (2, 4)
    ]
    for index in (2, 4):
        row = journal.journal.get_file(hashes[index])
        assert row is not None and row.state == FileState.REJECTED
        assert row.reason == f"changed since import: {paths[index].resolve()}"
    # Each photo once: 6 images, never the edited bytes under the old photo's description.
    assert everything == sorted(p.name for p in paths)
    assert stats["images"] == 6 and stats["duplicate_images"] == 0
    assert journal.journal.get_sequence(uuid).state == SequenceState.FINISHED  # type: ignore[union-attr]


async def test_a_touched_photo_goes_up_and_an_unchanged_copy_stands_in_for_an_edited_one(
    tmp_path: Path, journal: AsyncJournal
) -> None:
    folder = tmp_path / "rides"
    paths = described_folder(folder, 3)
    (uuid,) = await journal.run(lambda j: queue_folder(j, folder))
    rows = await journal.sequence_images(uuid)
    # A copy of the first photo seen later elsewhere (a backup folder): same content hash.
    backup = tmp_path / "backup" / paths[0].name
    backup.parent.mkdir()
    backup.write_bytes(paths[0].read_bytes())
    st = backup.stat()
    await journal.add_file(
        NewFile(rows[0].hash, backup, "watch", backup.parent, st.st_size, st.st_mtime)
    )
    edit_make(paths[0], b"edited")  # the first place it was seen no longer holds it
    os.utime(paths[1], (time.time() - 3600, time.time() - 3600))  # touched, not changed
    expected = {
        r.hash: hashlib.md5(tagged_bytes(p, description_of(r))).hexdigest()
        for r, p in zip(rows, [backup, paths[1], paths[2]], strict=True)
    }

    async with running_server(ServerConfig(data_dir=tmp_path / "srv")) as server:
        (result,) = await upload(journal, server, [uuid])
        held = sorted(i["md5"] for i in server.sequences()[0]["images"])

    assert result.cluster_id and result.images == 3 and result.set_aside == []
    assert held == sorted(expected.values())


# -- 2. a photo removed before upload ------------------------------------------------------------


async def test_a_deleted_photo_waits_and_its_sequence_finishes_with_it_once_it_is_back(
    tmp_path: Path, journal: AsyncJournal
) -> None:
    folder = tmp_path / "watch"
    paths = described_folder(folder, 8)
    (uuid,) = await journal.run(lambda j: queue_folder(j, folder))
    gone = paths[5]
    gone_hash = (await journal.sequence_images(uuid))[5].hash
    parked = tmp_path / "parked.jpg"
    os.rename(gone, parked)  # not changed: not there (a drive unplugged, a folder moved away)

    async with running_server(ServerConfig(data_dir=tmp_path / "srv")) as server:
        (waiting,) = await upload(journal, server, [uuid], concurrency=3)
        assert server.stats()["sequences"] == 0  # never finished without it
        j = journal.journal
        assert (waiting.cluster_id, waiting.error, waiting.waiting) == (None, None, 1)
        assert j.get_sequence(uuid).state == SequenceState.PENDING  # type: ignore[union-attr]
        row = j.get_file(gone_hash)
        assert row is not None and row.state == FileState.SEQUENCED
        assert row.reason == f"waiting for its source: {gone.resolve()}: No such file or directory"
        summary = j.summary()
        assert summary["waiting_for_source"] == {"images": 1, "sequences": 1}
        assert summary["recent_errors"] == [] and summary["failed_sequences"] == []
        assert j.count_by_state()[FileState.UPLOADED] == 7

        os.rename(parked, gone)  # back
        (result,) = await upload(journal, server, [uuid], concurrency=3)
        listing = server.sequences()
        stats = server.stats()

    assert result.cluster_id and result.images == 8 and result.set_aside == []
    (sequence,) = listing
    assert [i["filename"] for i in sequence["images"]] == [p.name for p in paths]
    assert (stats["images"], stats["duplicate_images"]) == (8, 0)
    assert journal.journal.count_by_state()[FileState.FINISHED] == 8
    assert journal.journal.summary()["waiting_for_source"] == {"images": 0, "sequences": 0}


async def test_a_photo_missing_longer_than_source_wait_is_left_out_with_that_reason(
    tmp_path: Path, journal: AsyncJournal
) -> None:
    folder = tmp_path / "watch"
    paths = described_folder(folder, 8)
    (uuid,) = await journal.run(lambda j: queue_folder(j, folder))
    gone = paths[5]
    gone_hash = (await journal.sequence_images(uuid))[5].hash
    gone.unlink()

    async with running_server(ServerConfig(data_dir=tmp_path / "srv")) as server:
        (first,) = await upload(journal, server, [uuid], source_wait=0.5, concurrency=3)
        assert first.waiting == 1 and server.stats()["sequences"] == 0
        time.sleep(0.6)  # the wait is over: its final reason, and the rest goes up
        (result,) = await upload(journal, server, [uuid], source_wait=0.5, concurrency=3)
        listing = server.sequences()

    reason = f"source missing for more than {0.5 / 86400:g} days: {gone.resolve()}: No such file or directory"
    assert result.cluster_id and result.images == 7 and result.error is None
    assert result.set_aside == [reason]
    (sequence,) = listing
    assert [i["filename"] for i in sequence["images"]] == [p.name for p in paths if p != gone]
    j = journal.journal
    assert j.get_sequence(uuid).state == SequenceState.FINISHED  # type: ignore[union-attr]
    counts = j.count_by_state()
    assert (counts[FileState.FINISHED], counts[FileState.REJECTED]) == (7, 1)
    assert counts[FileState.SEQUENCED] == counts[FileState.UPLOADED] == 0
    summary = j.summary()
    assert summary["bytes_to_upload"] == 0 and summary["failed_sequences"] == []
    assert [(e["hash"], e["reason"]) for e in summary["recent_errors"]] == [(gone_hash, reason)]


async def test_a_sequence_whose_photos_are_all_gone_for_good_fails_with_a_reason(
    tmp_path: Path, journal: AsyncJournal
) -> None:
    kept, lost = tmp_path / "kept", tmp_path / "lost"
    described_folder(kept, 2, seed=1)
    lost_paths = described_folder(lost, 3, seed=2)
    (kept_uuid,) = await journal.run(lambda j: queue_folder(j, kept))
    (lost_uuid,) = await journal.run(lambda j: queue_folder(j, lost))
    for p in lost_paths:
        p.unlink()

    async with running_server(ServerConfig(data_dir=tmp_path / "srv")) as server:
        results = await upload(journal, server, source_wait=0.0)
        stats = server.stats()

    by_uuid = {r.uuid: r for r in results}
    assert by_uuid[kept_uuid].cluster_id and stats["sequences"] == 1 and stats["images"] == 2
    lost_result = by_uuid[lost_uuid]
    assert lost_result.cluster_id is None and len(lost_result.set_aside) == 3
    assert lost_result.set_aside[0].startswith("source missing for more than 0 days: ")
    reason = f"no image left to upload: 3 set aside ({lost_result.set_aside[0]})"
    assert lost_result.error == reason
    j = journal.journal
    seq = j.get_sequence(lost_uuid)
    assert seq is not None and (seq.state, seq.reason) == (SequenceState.FAILED, reason)
    summary = j.summary()
    assert summary["failed_sequences"] == [
        {"uuid": lost_uuid, "reason": reason, "images": 3, "next_try": None}
    ]
    assert summary["bytes_to_upload"] == 0


async def test_an_outage_keeps_the_sequence_pending_and_a_later_pass_finishes_it(
    tmp_path: Path, journal: AsyncJournal
) -> None:
    folder = tmp_path / "watch"
    described_folder(folder, 4)
    (uuid,) = await journal.run(lambda j: queue_folder(j, folder))
    outage = ServerConfig(data_dir=tmp_path / "srv", outage=(0.0, 600.0))
    async with running_server(outage) as server:
        with pytest.raises(RetriesExhausted):
            await upload(journal, server, [uuid])
    j = journal.journal
    assert j.get_sequence(uuid).state == SequenceState.PENDING  # type: ignore[union-attr]
    assert j.count_by_state()[FileState.SEQUENCED] == 4
    assert j.summary()["bytes_to_upload"] == sum(p.stat().st_size for p in folder.iterdir())

    async with running_server(ServerConfig(data_dir=tmp_path / "srv")) as server:
        (result,) = await upload(journal, server, [uuid])
        assert server.stats()["images"] == 4
    assert result.cluster_id and result.images == 4 and result.set_aside == []


# -- 3. a refused image, and what a crash between two writes used to leave ------------------------


def _sequence_by_hand(
    journal: Journal, folder: Path, bad_index: int | None = None, cut_index: int | None = None
) -> str:
    """A sequence recorded straight through the journal API (the way the daemon records
    processed photos), optionally with one description the server refuses or one photo cut
    short before it was hashed."""
    paths = described_folder(folder, 4, seed=7)
    hashes = []
    for i, p in enumerate(paths):
        desc = json.loads(piexif.load(str(p))["0th"][piexif.ImageIFD.ImageDescription])
        desc["MAPFilename"] = p.name
        if i == bad_index:
            desc["MAPLatitude"] = 91.0  # the server's validation refuses it for good
        if i == cut_index:
            p.write_bytes(p.read_bytes()[:-300])  # a card pulled mid-write
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        st = p.stat()
        journal.add_file(NewFile(digest, p, "watch", folder, st.st_size, st.st_mtime))
        meta = {"description": desc, "filename": p.name}
        journal.set_file_states(
            [StateChange(digest, FileState.DESCRIBED, None, {"metadata": meta})]
        )
        hashes.append(digest)
    journal.create_sequence("seq-by-hand", hashes, source_root=folder)
    return "seq-by-hand"


async def test_a_photo_hashed_as_it_is_but_unreadable_is_set_aside_with_its_reason(
    tmp_path: Path, journal: AsyncJournal
) -> None:
    folder = tmp_path / "card"
    uuid = await journal.run(lambda j: _sequence_by_hand(j, folder, cut_index=1))
    async with running_server(ServerConfig(data_dir=tmp_path / "srv")) as server:
        (result,) = await upload(journal, server, [uuid])
    assert result.cluster_id and result.images == 3
    (line,) = result.set_aside
    cut = folder / "IMG_0001.jpg"
    assert line.startswith(f"{cut}: cannot read: ") and "end-of-image" in line, line
    row = journal.journal.sequence_images(uuid)[1]
    assert (row.state, row.reason) == (FileState.REJECTED, line)


async def test_a_refused_image_fails_itself_and_its_sequence_together(
    tmp_path: Path, journal: AsyncJournal
) -> None:
    uuid = await journal.run(lambda j: _sequence_by_hand(j, tmp_path / "w", bad_index=2))
    async with running_server(ServerConfig(data_dir=tmp_path / "srv")) as server:
        (result,) = await upload(journal, server, concurrency=1)
        assert server.stats()["sequences"] == 0
    assert (
        result.error and "refused by the server" in result.error and "MAPLatitude" in result.error
    )
    j = journal.journal
    seq = j.get_sequence(uuid)
    assert seq is not None and (seq.state, seq.reason) == (SequenceState.FAILED, result.error)
    bad = j.sequence_images(uuid)[2]
    assert (bad.state, bad.reason) == (FileState.FAILED, result.error)
    assert j.summary()["failed_sequences"] == [
        {"uuid": uuid, "reason": result.error, "images": 4, "next_try": None}
    ]


async def test_a_failed_image_in_a_pending_sequence_fails_the_sequence_instead_of_crashing(
    tmp_path: Path, journal: AsyncJournal
) -> None:
    """The journal an older version left when the power went between failing an image and
    failing its sequence: two images uploaded, one failed, one still sequenced."""
    uuid = await journal.run(lambda j: _sequence_by_hand(j, tmp_path / "w"))
    rows = await journal.sequence_images(uuid)
    async with running_server(ServerConfig(data_dir=tmp_path / "srv")) as server:
        async with UploadClient(TOKEN, server.graph_url, server.upload_url, policy=FAST) as c:
            for r in rows[:2]:
                data = tagged_bytes(r.paths[0], description_of(r))
                key = session_key(data)
                handle = await c.upload_bytes(key, data)
                await journal.upsert_upload(r.hash, key, key[10:-4], len(data))
                await journal.record_handle(r.hash, key, handle)
        await journal.set_file_state(rows[2].hash, FileState.FAILED, "refused by the server: x")
        requests = server.stats()["requests"]

        results = await upload(journal, server)  # used to raise KeyError, every restart
        assert server.stats()["requests"] == requests  # nothing more sent

    (result,) = results
    assert result.error == f"{rows[2].metadata['filename']}: refused by the server: x"
    seq = journal.journal.get_sequence(uuid)
    assert seq is not None and seq.state == SequenceState.FAILED
    assert await journal.sequences_in_state(SequenceState.PENDING) == []


async def test_a_pending_sequence_with_images_set_aside_earlier_finishes_without_them(
    tmp_path: Path, journal: AsyncJournal
) -> None:
    """A crash right after an image was set aside: the next pass goes on without it."""
    uuid = await journal.run(lambda j: _sequence_by_hand(j, tmp_path / "w"))
    rows = await journal.sequence_images(uuid)
    await journal.set_file_state(rows[1].hash, FileState.REJECTED, "changed or removed: x")
    async with running_server(ServerConfig(data_dir=tmp_path / "srv")) as server:
        (result,) = await upload(journal, server)
        (sequence,) = server.sequences()
    assert result.cluster_id and result.images == 3
    assert [i["filename"] for i in sequence["images"]] == [f"IMG_000{i}.jpg" for i in (0, 2, 3)]
    states = [r.state for r in journal.journal.sequence_images(uuid)]
    assert states == [
        FileState.FINISHED,
        FileState.REJECTED,
        FileState.FINISHED,
        FileState.FINISHED,
    ]


async def test_an_image_in_a_state_a_sequence_cannot_hold_fails_it_before_anything_is_sent(
    tmp_path: Path, journal: AsyncJournal
) -> None:
    uuid = await journal.run(lambda j: _sequence_by_hand(j, tmp_path / "w"))
    rows = await journal.sequence_images(uuid)
    # A user retry of a failed image that never re-queued it: described, still in the sequence.
    await journal.set_file_state(rows[3].hash, FileState.FAILED, "refused")
    await journal.set_file_state(rows[3].hash, FileState.IMPORTED)
    await journal.set_file_state(rows[3].hash, FileState.DESCRIBED)
    async with running_server(ServerConfig(data_dir=tmp_path / "srv")) as server:
        (result,) = await upload(journal, server)
        assert server.stats()["requests"] == 0
    assert result.error and "is described in a pending sequence" in result.error
    assert journal.journal.get_sequence(uuid).state == SequenceState.FAILED  # type: ignore[union-attr]


# -- 4. hashing stays off the event loop ------------------------------------------------------------


async def test_the_event_loop_thread_does_not_hash_the_images(
    tmp_path: Path, journal: AsyncJournal
) -> None:
    # Load on the machine only adds to the loop's CPU time, so the least of up to three uploads
    # is the fair reading; a loop that hashed each image itself would cost 4/3 of md5_cpu in
    # every one of them.
    readings = []
    for attempt in range(3):
        loop_cpu, md5_cpu = await _loop_and_md5_cpu(tmp_path / f"try{attempt}", journal)
        readings.append((loop_cpu, md5_cpu))
        if loop_cpu < 0.7 * md5_cpu:
            break
    assert min(loop / md5 for loop, md5 in readings) < 0.7, readings


async def _loop_and_md5_cpu(work: Path, journal: AsyncJournal) -> tuple[float, float]:
    """This thread's CPU time uploading 4 big images, and what hashing them all costs."""
    folder = work / "big"
    paths = described_folder(folder, 4, size=(4000, 3000), quality=95)  # ~14 MB of noise each
    (uuid,) = await journal.run(lambda j: queue_folder(j, folder))
    data = paths[0].read_bytes()
    costs = []
    for _ in range(3):
        started = time.thread_time()
        hashlib.md5(data).hexdigest()
        costs.append(time.thread_time() - started)
    md5_cpu = sorted(costs)[1] * len(paths)  # what hashing every image costs whoever does it
    del data
    # The server in its own thread, so this thread's CPU time is the loop's work alone: the
    # requests and the journal's replies, not the hashing (about 1/3 of md5_cpu here, against
    # 4/3 when the loop hashed each image itself).
    with ServerThread(ServerConfig(data_dir=work / "srv")) as server:
        async with UploadClient(
            TOKEN, server.graph_url, server.upload_url, policy=FAST, concurrency=2
        ) as client:
            uploader = SequenceUploader(journal, client)
            started = time.thread_time()
            (result,) = await uploader.upload_all([uuid])
            loop_cpu = time.thread_time() - started
    assert result.cluster_id and result.images == 4
    return loop_cpu, md5_cpu


# -- 5. status: what is left to upload, and failed sequences -------------------------------------


async def test_status_counts_only_pending_sequences_and_names_failed_ones(
    tmp_path: Path, journal: AsyncJournal
) -> None:
    waiting, broken = tmp_path / "waiting", tmp_path / "broken"
    waiting_paths = described_folder(waiting, 3, seed=3)
    (waiting_uuid,) = await journal.run(lambda j: queue_folder(j, waiting))
    broken_uuid = await journal.run(lambda j: _sequence_by_hand(j, broken, bad_index=0))
    async with running_server(ServerConfig(data_dir=tmp_path / "srv")) as server:
        await upload(journal, server, [broken_uuid], concurrency=1)
    summary = journal.journal.summary()
    # The failed sequence's three other images are still "sequenced" but will not be sent.
    assert journal.journal.count_by_state()[FileState.SEQUENCED] == 3 + 3
    assert summary["bytes_to_upload"] == sum(p.stat().st_size for p in waiting_paths)
    (failed,) = summary["failed_sequences"]
    assert failed["uuid"] == broken_uuid and failed["images"] == 4
    assert "MAPLatitude" in failed["reason"]
    assert journal.journal.get_sequence(waiting_uuid).state == SequenceState.PENDING  # type: ignore[union-attr]
    # `status` reads the journal while its writer (the daemon, here this test) holds it open.

    env = {k: v for k, v in os.environ.items() if not k.startswith("MAPILLARY")}
    env.update(PYTHONPATH=str(ROOT), XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    journal_path = str(tmp_path / "journal.sqlite3")
    shown = subprocess.run(
        [sys.executable, "-m", "daemon", "status", "--journal", journal_path],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "failed sequences:" in lines
    entry = lines[lines.index("failed sequences:") + 1]
    assert entry.startswith(f"  {broken_uuid} (4 images): ") and "MAPLatitude" in entry
    as_json = subprocess.run(
        [sys.executable, "-m", "daemon", "status", "--journal", journal_path, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert json.loads(as_json.stdout)["failed_sequences"] == summary["failed_sequences"]


# -- 6. one ranking of concurrent errors ---------------------------------------------------------


def test_concurrent_failures_are_ranked_auth_then_refusal_then_transient() -> None:
    auth = AuthError("token refused")
    refused = RejectedError("a.jpg: refused by the server: HTTP 400", 400)
    transient = RetriesExhausted("b.jpg: gave up")
    other = ValueError("a bug")
    nested = ExceptionGroup("x", [other, ExceptionGroup("y", [transient, refused]), auth])
    assert most_serious(nested) is auth
    assert most_serious(ExceptionGroup("x", [other, transient, refused])) is refused
    assert most_serious(ExceptionGroup("x", [other, transient])) is transient
    assert most_serious(ExceptionGroup("x", [other])) is other
