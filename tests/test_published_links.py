"""Is this photo on the map? After finish_upload the journal keeps the cluster with the files it
covers, and a low-frequency follow-up asks the graph API which sequence and images it became,
so `status` answers with links. Real journals on disk, the embedded server on 127.0.0.1 (with a
processing delay where the story needs one), the daemon as a subprocess."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from daemon.core import config
from daemon.journal import MIGRATIONS, AsyncJournal, FileState, Journal, SequenceState
from daemon.mapillary import RetryPolicy
from daemon.runtime.state import RunStats, Runtime, Wakeups
from daemon.runtime.uploading import Uploading
from daemon.server import ServerConfig
from daemon.server.runner import ServerThread
from daemon.upload.client import UploadClient
from daemon.upload.published import FIRST_DELAY, PublishedIds
from daemon.web.tracks import read_tracks
from tests.daemon_proc import TOKEN as DAEMON_TOKEN
from tests.daemon_proc import DaemonProc, new_daemon, wait_for
from tests.test_upload_cmd import geotagged
from tests.test_upload_worker import FAST, TOKEN, described_folder, queue_folder, upload

ROOT = Path(__file__).resolve().parents[1]
VIEWER = "https://www.mapillary.com/app/?pKey="


def md5_of(journal: Journal, file_hash: str) -> str:
    row = journal.get_upload(file_hash)
    assert row is not None
    return row.md5


async def queued(path: Path, folder: Path) -> tuple[AsyncJournal, str]:
    """A new journal at ``path`` with ``folder`` queued as one sequence, opened for uploading;
    the sequence's uuid."""
    with Journal.open(path) as j:
        (uuid,) = queue_folder(j, folder)
    return await AsyncJournal.open(path), uuid


async def test_ids_are_asked_for_until_processed_and_each_photo_gets_its_own_image(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "ride"
    described_folder(folder, 4, seed=30)
    config = ServerConfig(tokens=(TOKEN,), processing_seconds=1.5)
    with ServerThread(config) as server:
        journal, uuid = await queued(tmp_path / "journal.sqlite3", folder)
        try:
            (result,) = await upload(journal, server)
            assert result.cluster_id
            follow = PublishedIds(journal)
            async with UploadClient(
                TOKEN, server.graph_url, server.upload_url, policy=FAST
            ) as client:
                now = time.time()
                # Right after the finish the service is still processing it.
                assert await follow.check_due(client, now) == 0
                cluster = await journal.run(lambda j: j.get_cluster(uuid))
                assert cluster is not None and cluster.mapillary_sequence is None
                assert cluster.note == "being processed by Mapillary"
                assert cluster.next_check is not None
                assert abs(cluster.next_check - (now + FIRST_DELAY)) < 1
                # Not due again before its next check: nothing is asked.
                before = server.stats()["requests"]
                assert await follow.check_due(client, now + FIRST_DELAY / 2) == 0
                assert server.stats()["requests"] == before
                # Once processed, the next due check records the ids.
                time.sleep(1.6)
                assert await follow.check_due(client, now + FIRST_DELAY + 1) == 1
            cluster = await journal.run(lambda j: j.get_cluster(uuid))
            photos = await journal.run(lambda j: j.published(uuid))
            md5s = await journal.run(lambda j: [md5_of(j, p["hash"]) for p in photos])
        finally:
            await journal.aclose()
        (made,) = server.sequences()
    assert cluster is not None and cluster.mapillary_sequence == made["id"]
    assert cluster.checks == 2 and cluster.next_check is None
    # Every local photo is linked to the server's image made of exactly its bytes.
    by_md5 = {image["md5"]: image["id"] for image in made["images"]}
    assert [p["image_id"] for p in photos] == [by_md5[m] for m in md5s]
    assert [Path(p["path"] or "").name for p in photos] == sorted(p.name for p in folder.iterdir())
    assert all(p["url"] == VIEWER + p["image_id"] for p in photos)


async def test_a_graph_api_that_does_not_answer_is_asked_again_later_with_the_reason(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "ride"
    described_folder(folder, 2, seed=50)
    with ServerThread(ServerConfig(tokens=(TOKEN,))) as server:
        journal, uuid = await queued(tmp_path / "journal.sqlite3", folder)
        try:
            (result,) = await upload(journal, server)
            # Another server (no such cluster there): the question is refused with a 404.
            with ServerThread(ServerConfig(tokens=(TOKEN,))) as other:
                async with UploadClient(TOKEN, other.graph_url, other.upload_url) as client:
                    assert await PublishedIds(journal).check_due(client) == 0
            cluster = await journal.run(lambda j: j.get_cluster(uuid))
        finally:
            await journal.aclose()
    assert cluster is not None and cluster.cluster_id == result.cluster_id
    assert cluster.mapillary_sequence is None and cluster.checks == 1
    assert cluster.note is not None and "graph API does not tell" in cluster.note
    assert "404" in cluster.note and cluster.next_check is not None


async def test_a_graph_api_in_an_outage_costs_one_request_a_pass_and_no_wait(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "ride"
    described_folder(folder, 2, seed=55)
    with ServerThread(ServerConfig(tokens=(TOKEN,))) as server:
        journal, uuid = await queued(tmp_path / "journal.sqlite3", folder)
        try:
            (result,) = await upload(journal, server)
            assert result.cluster_id
            down = ServerConfig(tokens=(TOKEN,), outage=(0.0, 3600.0))  # 503s and resets
            with ServerThread(down) as other:
                # The daemon's own policy (10 attempts, backoff to 16 s): a lookup does not
                # spend it, the follow-up's schedule is its retry.
                async with UploadClient(
                    TOKEN, other.graph_url, other.upload_url, policy=RetryPolicy()
                ) as client:
                    started = time.monotonic()
                    assert await PublishedIds(journal).check_due(client) == 0
                    took = time.monotonic() - started
                asked = other.stats()["requests"]
            cluster = await journal.run(lambda j: j.get_cluster(uuid))
        finally:
            await journal.aclose()
    # One attempt (aiohttp itself resends a GET once on a reset connection); 16 before.
    assert asked <= 2 and took < 5.0
    # Not counted as a check: still due, asked again at the next pass.
    assert cluster is not None and cluster.checks == 0 and cluster.mapillary_sequence is None
    assert cluster.next_check is not None and cluster.next_check <= time.time()


async def test_the_follow_up_after_a_reload_leaves_the_uploads_session_alone(
    tmp_path: Path,
) -> None:
    done, busy = tmp_path / "done", tmp_path / "busy"
    described_folder(done, 2, seed=57)
    described_folder(busy, 6, seed=58, size=(900, 700), quality=95)
    with ServerThread(ServerConfig(tokens=(TOKEN,), bandwidth=400_000)) as server:
        with Journal.open(tmp_path / "journal.sqlite3") as j:
            (finished,) = queue_folder(j, done)
            (sending,) = queue_folder(j, busy)
        journal = await AsyncJournal.open(tmp_path / "journal.sqlite3")
        settings = config.Settings(
            graph_endpoint=server.graph_url, upload_endpoint=server.upload_url
        )
        stage = Uploading(
            settings=settings,
            token=TOKEN,
            journal=journal,
            missing_roots=set,
            wake=Wakeups(),
            stats=RunStats(),
            runtime=Runtime(),
        )
        try:
            (first,) = await upload(journal, server, [finished])  # its cluster is due now
            assert first.cluster_id
            received = server.stats()["bytes_received"]
            task = asyncio.create_task(stage.upload(TOKEN, [sending]))
            deadline = time.monotonic() + 30
            while server.stats()["bytes_received"] == received:  # bodies under way
                assert time.monotonic() < deadline and not task.done()
                await asyncio.sleep(0.02)
            stage.settings = dataclasses.replace(settings, concurrency=2)  # SIGHUP's reload
            assert await stage.check_published()
            await asyncio.wait_for(task, 60)  # the pass in flight was not cut
            asked = await journal.run(lambda j: j.get_cluster(finished))
            state = await journal.run(lambda j: j.get_sequence(sending))
        finally:
            await stage.close()
            await journal.aclose()
    assert state is not None and state.state == SequenceState.FINISHED
    assert stage.stats.finished == 1 and stage.stats.failed == 0
    assert asked is not None and asked.checks == 1  # and the follow-up did ask


def test_finished_sequences_of_an_older_journal_get_their_cluster_and_files(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.sqlite3"
    folder = tmp_path / "ride"
    described_folder(folder, 3, seed=70)
    with Journal.open(path) as j:
        (uuid,) = queue_folder(j, folder)
        images = j.sequence_images(uuid)
    # Back to the version before clusters, with the sequence finished as that version did it.
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE cluster_files")
    conn.execute("DROP TABLE clusters")
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) - 1}")
    first, second, third = (r.hash for r in images)
    conn.execute("UPDATE files SET state = 'finished' WHERE hash IN (?, ?)", (first, third))
    conn.execute("UPDATE files SET state = 'rejected', reason = 'gone' WHERE hash = ?", (second,))
    conn.execute(
        "UPDATE sequences SET state = 'finished', cluster_id = '777', finished_at = 5.0 "
        "WHERE uuid = ?",
        (uuid,),
    )
    conn.commit()
    conn.close()
    with Journal.open(path) as j:
        (due,) = j.clusters_due(now=10.0)
        assert (due.cluster_id, due.sequence_uuid, due.checks) == ("777", uuid, 0)
        assert j.cluster_files("777") == [first, third]  # the set-aside photo is not covered
        positions = j._conn.execute(
            "SELECT file_hash, position FROM cluster_files ORDER BY position"
        ).fetchall()
        assert positions == [(first, 0), (third, 1)]  # manifest places, as a finish records
        j.record_ids("777", "seq-abc", ["11", "33"])
        assert [p["image_id"] for p in j.published(uuid)] == ["11", "33"]
        assert j.get_file(second).state == FileState.REJECTED  # type: ignore[union-attr]


def status(d: DaemonProc, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", "status", "--journal", str(d.journal), *args],
        env=dict(d.env, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_status_links_a_daemons_uploads_once_they_are_on_the_map(
    tmp_path: Path, daemons: list[DaemonProc]
) -> None:
    with ServerThread(ServerConfig(tokens=(DAEMON_TOKEN,))) as server:
        work = tmp_path / "work"
        inbox = work / "inbox"
        inbox.mkdir(parents=True)
        d = new_daemon(daemons, work, server.environment(), "--watch", str(inbox))
        d.start().wait_event("root_watched", 15)
        geotagged(inbox / "ride", 3, 48.3, seed=80)

        def linked() -> dict | None:
            ups = json.loads(status(d, "--json").stdout)["recent_uploads"]
            return ups[0] if ups and ups[0]["url"] else None

        shown = wait_for("a link in status --json", linked, 90, every=0.5)
        (made,) = server.sequences()
        d.stop()
    assert shown["mapillary_sequence"] == made["id"] and shown["images"] == 3
    assert shown["url"] == VIEWER + made["images"][0]["id"]
    text = status(d).stdout
    head = f"recent uploads:\n  {shown['uuid']} (3 images, cluster {shown['cluster_id']}): "
    assert head + f"on the map: {shown['url']}" in text
    one = status(d, "--sequence", shown["uuid"])
    assert one.returncode == 0, one.stderr
    for image in made["images"]:
        assert f"{image['filename']}: {VIEWER}{image['id']}" in one.stdout
    detail = json.loads(status(d, "--sequence", shown["uuid"], "--json").stdout)
    assert [p["image_id"] for p in detail["photos"]] == [i["id"] for i in made["images"]]
    (seq,) = json.loads(read_tracks(d.journal))["sequences"]
    assert seq["url"] == shown["url"]
    missing = status(d, "--sequence", "no-such-uuid")
    assert missing.returncode == 2 and "no sequence no-such-uuid" in missing.stderr


def test_run_once_asks_about_its_finished_uploads_so_a_cron_job_gets_links_too(
    tmp_path: Path, daemons: list[DaemonProc]
) -> None:
    with ServerThread(ServerConfig(tokens=(DAEMON_TOKEN,))) as server:
        work = tmp_path / "work"
        inbox = work / "inbox"
        geotagged(inbox / "ride", 2, 48.4, seed=90)
        d = new_daemon(daemons, work, server.environment(), "--watch", str(inbox))
        done = d.once()
        assert done.returncode == 0, done.stderr
        (made,) = server.sequences()
    (shown,) = json.loads(status(d, "--json").stdout)["recent_uploads"]
    assert shown["mapillary_sequence"] == made["id"]
    assert shown["url"] == VIEWER + made["images"][0]["id"]
