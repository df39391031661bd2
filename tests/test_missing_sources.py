"""A missing source is not a changed one: the daemon waits for it, and notices what comes back.

The real daemon as a subprocess, real watch folders, the embedded server on 127.0.0.1 capped in
bandwidth so that the upload is still under way when the folder goes. Stories of issue 12: a
watch folder whose drive is unplugged for a few seconds mid-upload (renamed away and back) or
deleted mid-upload, a photo written slowly beside its neighbours, a watch root re-pointed as a
symlink, and a photo whose permissions are fixed while the daemon runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from daemon.demo.drive import Drive, plan_drive, write_drive, write_jpeg_bytes
from daemon.server import ServerConfig, ServerThread
from tests.daemon_proc import FAST, TOKEN, DaemonProc, base_env, new_daemon, wait_for

pytestmark = pytest.mark.timeout(180)

START = datetime(2024, 6, 1, 7, 0, 0, tzinfo=UTC)
# ~445 KB of photos at 20 KB/s: about 25 s of upload, so the folder goes mid-way.
BANDWIDTH = 20_000


@pytest.fixture
def slow_server() -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(tokens=(TOKEN,), bandwidth=BANDWIDTH)) as srv:
        yield srv


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(tokens=(TOKEN,))) as srv:
        yield srv


def short_drive(seed: int = 1) -> Drive:
    """159 photos in two stretches (the break makes two sequences)."""
    return plan_drive(START, seed=seed, stop_s=10.0, break_s=300.0)


def all_done(d: DaemonProc) -> bool:
    """Every sequence finished and every photo out of the way (finished or a duplicate)."""
    images = d.images()
    open_seqs = d.query("SELECT count(*) FROM sequences WHERE state != 'finished'")[0][0]
    settled = set(images) <= {"finished", "duplicate"}
    return bool(images) and settled and open_seqs == 0


def uploaded(d: DaemonProc) -> int:
    return d.query("SELECT count(*) FROM files WHERE handle IS NOT NULL")[0][0]


def server_names(server: ServerThread) -> Counter[str]:
    return Counter(i["filename"] for s in server.sequences() for i in s["images"])


def assert_every_photo_once(d: DaemonProc, server: ServerThread, paths: list[Path]) -> None:
    """The server holds each photo not skipped as a duplicate exactly once, in as many
    sequences as the journal made, and nothing was set aside."""
    images = d.images()
    assert images.get("rejected", 0) == 0 and images.get("failed", 0) == 0, images
    stats = server.stats()
    assert (stats["duplicate_images"], stats["duplicate_sequences"]) == (0, 0)
    names = server_names(server)
    assert set(names.values()) == {1}
    duplicates = {
        Path(p).name
        for (p,) in d.query(
            "SELECT p.path FROM file_paths p JOIN files f ON f.hash = p.hash "
            "WHERE f.state = 'duplicate'"
        )
    }
    assert set(names) == {p.name for p in paths} - duplicates
    assert stats["sequences"] == d.query("SELECT count(*) FROM sequences")[0][0]


def root_state(st: dict[str, Any], root: Path) -> str:
    return (st["daemon"].get("roots") or {}).get(str(root), "")


def status_text(d: DaemonProc) -> str:
    p = subprocess.run(
        [*d.command()[:3], "status", "--journal", str(d.journal)],
        env=d.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode == 0, p.stderr
    return p.stdout


# -- a drive unplugged mid-upload ---------------------------------------------------------------


def test_a_watch_folder_gone_for_8_s_mid_upload_waits_and_every_photo_goes_up_once(
    tmp_path: Path, slow_server: ServerThread, daemons: list[DaemonProc]
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    d = new_daemon(daemons, tmp_path / "work", slow_server.environment(), "--watch", str(inbox))
    d.start().wait_event("root_watched", 15)
    paths = write_drive(short_drive(), inbox / "2024-06-01")
    wait_for("the upload under way", lambda: uploaded(d) >= 15, 60, every=0.05)
    away = tmp_path / "unplugged"
    os.rename(inbox, away)  # the drive is pulled: the folder is simply not there
    gone_at = time.monotonic()

    def missing_and_waiting() -> dict[str, Any] | None:
        st = d.status()
        waiting = st.get("waiting_for_source", {}).get("images")
        return st if root_state(st, inbox).startswith("missing") and waiting else None

    st = wait_for("status: root missing, photos waiting", missing_and_waiting, 7.5, every=0.2)
    sent = uploaded(d)
    assert sent < len(paths), "the upload ended before the drive went"
    assert st["waiting_for_source"]["images"] + sent >= len(paths) - d.images().get("duplicate", 0)
    assert "waiting for their source" in status_text(d)
    assert d.images().get("rejected", 0) == 0
    time.sleep(max(0.0, 8.0 - (time.monotonic() - gone_at)))
    assert d.images().get("rejected", 0) == 0
    assert d.query("SELECT count(*) FROM sequences WHERE state != 'pending'")[0][0] == 0
    sent = uploaded(d)
    os.rename(away, inbox)  # plugged in again, unchanged
    wait_for("the upload going on by itself", lambda: uploaded(d) > sent, 10)
    wait_for("every sequence finished", lambda: all_done(d), 60)
    assert_every_photo_once(d, slow_server, paths)
    assert d.status()["waiting_for_source"] == {"images": 0, "sequences": 0}
    assert not d.events("image_set_aside")
    assert d.stop() == 0


def test_a_watch_folder_deleted_mid_upload_leaves_its_photos_waiting_not_rejected(
    tmp_path: Path, slow_server: ServerThread, daemons: list[DaemonProc]
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    d = new_daemon(daemons, tmp_path / "work", slow_server.environment(), "--watch", str(inbox))
    d.start().wait_event("root_watched", 15)
    folder = inbox / "2024-06-01"
    paths = write_drive(short_drive(), folder)
    backup = tmp_path / "backup"
    shutil.copytree(folder, backup)  # what the user restores later, with new mtimes
    wait_for("the upload under way", lambda: uploaded(d) >= 15, 60, every=0.05)
    shutil.rmtree(folder)

    def settled() -> dict[str, Any] | None:
        # Nothing in flight any more: every sequenced photo uploaded or waiting.
        left = d.query("SELECT count(*) FROM files WHERE state = 'sequenced' AND reason IS NULL")[
            0
        ][0]
        return d.status() if left == 0 else None

    st = wait_for("the rest waiting for its source", settled, 30)
    sent = uploaded(d)
    waiting = st["waiting_for_source"]
    assert 0 < sent < len(paths) and waiting["images"] > 0
    duplicates = d.images().get("duplicate", 0)
    assert sent + waiting["images"] == len(paths) - duplicates
    assert d.images().get("rejected", 0) == 0 and d.images().get("failed", 0) == 0
    # No sequence finished without the photos it was planned with.
    assert d.query(
        "SELECT count(*) FROM sequences s WHERE s.state = 'finished' AND EXISTS "
        "(SELECT 1 FROM files f WHERE f.sequence_id = s.uuid AND f.state = 'sequenced')"
    ) == [(0,)]
    # The root is there (only a folder of it went), and says so once the status is saved.
    wait_for("the root watched", lambda: root_state(d.status(), inbox).startswith("watch"), 15)
    assert f"{waiting['images']} images" in status_text(d)
    reasons = d.query("SELECT DISTINCT reason FROM files WHERE state = 'sequenced'")
    assert all(r.startswith("waiting for its source: ") for (r,) in reasons), reasons
    assert len(d.events("sequence_waiting_for_source")) <= 2  # said once per sequence
    finished_before = slow_server.stats()["images"]

    shutil.copytree(backup, folder)  # put back: the same photos, copied again
    wait_for("the upload going on by itself", lambda: uploaded(d) > sent, 10)
    wait_for("every sequence finished", lambda: all_done(d), 60)
    assert_every_photo_once(d, slow_server, paths)
    assert slow_server.stats()["images"] >= finished_before
    assert d.stop() == 0


# -- a photo still being written holds its folder's batch ---------------------------------------


def test_a_photo_written_slowly_joins_the_sequence_of_its_neighbours(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    d = new_daemon(daemons, tmp_path / "work", server.environment(), "--watch", str(inbox))
    d.start().wait_event("root_watched", 15)
    drive = short_drive()
    folder = inbox / "2024-06-01"
    folder.mkdir()
    (folder / "track.gpx").write_text(drive.gpx_text(), encoding="utf-8")
    slow = drive.photos[40]  # in the middle of the first stretch
    data = write_jpeg_bytes(slow, jpeg_size=(320, 240), quality=90)
    target = folder / f"G{slow.index:07d}.JPG"
    pieces = [len(data) * i // 10 for i in range(11)]
    # The slow camera has begun; the others arrive whole meanwhile.
    with target.open("wb") as fh:
        fh.write(data[: pieces[1]])
        fh.flush()
        names = []
        for photo in drive.photos:
            if photo is not slow:
                path = folder / f"G{photo.index:07d}.JPG"
                path.write_bytes(write_jpeg_bytes(photo))
                names.append(path.name)
        # ~10 s for the rest of it: far longer than the settle time and the batch quiet time.
        for start, end in zip(pieces[1:-1], pieces[2:], strict=True):
            time.sleep(1.0)
            fh.write(data[start:end])
            fh.flush()
    wait_for("everything uploaded", lambda: all_done(d), 60)
    assert not d.events("file_incomplete")
    (slow_seq,) = d.query("SELECT sequence_id FROM files WHERE size = ?", len(data))[0:1]
    together = d.query("SELECT count(*) FROM files WHERE sequence_id = ?", slow_seq[0])[0][0]
    assert together > 1, "the slow photo became a sequence of its own"
    sizes = sorted(
        n
        for (n,) in d.query(
            "SELECT count(*) FROM files WHERE sequence_id IS NOT NULL GROUP BY sequence_id"
        )
    )
    assert len(sizes) == 2 and min(sizes) > 1, sizes  # the drive's two stretches, nothing else
    batch = d.events("batch_processed")[0]  # one batch: every photo, kept or a duplicate
    assert batch["images"] + batch["duplicates"] == len(drive.photos)
    assert d.stop() == 0


# -- a watch root that is a symlink, re-pointed -------------------------------------------------


def test_a_watch_root_symlink_re_pointed_is_followed_to_its_new_target(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    first, second = tmp_path / "drive-a", tmp_path / "drive-b"
    link = tmp_path / "in"
    link.symlink_to(first, target_is_directory=True)
    old = write_drive(plan_drive(START, seed=1, stop_s=10.0, break_s=300.0), first / "d1")
    d = new_daemon(daemons, tmp_path / "work", server.environment(), "--watch", str(link))
    d.start().wait_event("root_watched", 15)
    wait_for("the first folder uploaded", lambda: all_done(d), 60)
    assert server.stats()["images"] >= len(old) - d.images().get("duplicate", 0)

    later = plan_drive(START.replace(day=2), seed=2, stop_s=10.0, break_s=300.0)
    new = write_drive(later, second / "d2", name_pattern="B%07d.JPG")
    swap = tmp_path / "in.new"
    swap.symlink_to(second, target_is_directory=True)
    os.replace(swap, link)  # re-pointed in one step, as `ln -sfn` does
    wait_for(
        "the new target's photos journaled",
        lambda: (
            d.query("SELECT count(*) FROM file_paths WHERE path LIKE ?", f"{second}%")[0][0]
            == len(new)
        ),
        30,
    )
    wait_for("everything uploaded", lambda: all_done(d), 60)
    assert_every_photo_once(d, server, old + new)
    (moved,) = d.events("root_moved")
    assert (moved["was"], moved["now"]) == (str(first), str(second))
    roots = {r for (r,) in d.query("SELECT DISTINCT source_root FROM files")}
    assert roots == {str(first), str(second)}
    assert d.stop() == 0


# -- permissions fixed while the daemon runs ----------------------------------------------------


class UnprivilegedDaemon(DaemonProc):
    """The daemon as user nobody: root reads a file whatever its mode."""

    def command(self, *extra: str) -> list[str]:
        drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        return [*drop, *super().command(*extra)]


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder user nobody can use (pytest's own are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="missing-perm-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"),
    reason="needs root and setpriv to run the daemon as another user",
)
def test_a_photo_whose_permissions_are_fixed_is_imported_without_a_restart(
    open_dir: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    inbox, work = open_dir / "in", open_dir / "work"
    for folder in (inbox, work):
        folder.mkdir()
        os.chown(folder, 65534, 65534)
    home = {"HOME": str(work), "XDG_CONFIG_HOME": str(work), "XDG_STATE_HOME": str(work)}
    env = {**base_env(server.environment()), **home}
    d = UnprivilegedDaemon(work, env, [*FAST, "--watch", str(inbox)])
    daemons.append(d)
    d.start().wait_event("root_watched", 15)
    drive = short_drive()
    photos = drive.photos[:12]
    locked = inbox / "G0000005.JPG"
    # Written unreadable (a sync tool keeping a mode of 000, a copy as another user).
    fd = os.open(locked, os.O_WRONLY | os.O_CREAT, 0o000)
    with os.fdopen(fd, "wb") as fh:
        fh.write(write_jpeg_bytes(photos[4], with_gps_in_exif=True))
    for photo in photos:
        path = inbox / f"G{photo.index:07d}.JPG"
        if path != locked:
            path.write_bytes(write_jpeg_bytes(photo, with_gps_in_exif=True))
    wait_for("the readable ones journaled", lambda: sum(d.images().values()) == 11, 20)
    time.sleep(2.0)
    assert sum(d.images().values()) == 11
    locked.chmod(0o644)  # the user fixes it
    wait_for("the fixed photo journaled", lambda: sum(d.images().values()) == 12, 20)
    wait_for("everything uploaded", lambda: all_done(d), 60)
    assert server.stats()["images"] == 12 - d.images().get("duplicate", 0)
    assert d.stop() == 0


def test_an_unreadable_file_set_aside_is_looked_at_again_later_and_taken_once_fixed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The settler's side, past its give-up: handed on set aside once, then looked at again
    after 5 s, 10 s, ... (each failed look hands it on at once, without a new wait or log line),
    and handed on complete once it can be read. Unreadability is faked here: this runs as root
    too, which reads any file; the test above has the real thing."""
    from daemon.intake import complete, settler
    from daemon.intake.complete import Verdict

    photo = tmp_path / "w" / "a.jpg"
    photo.parent.mkdir()
    photo.write_bytes(write_jpeg_bytes(short_drive().photos[0]))
    st = photo.stat()
    readable = {"now": False}

    def verdict(path: Any) -> Verdict:
        if readable["now"]:
            return complete.verdict(path)
        return Verdict(False, "cannot read: Permission denied", unreadable=True)

    monkeypatch.setattr(settler, "verdict", verdict)
    s = settler.Settler(0.3, 1.0, give_up_seconds=60.0)
    said: list[str] = []

    class Log:
        def warning(self, event: str, **_fields: Any) -> None:
            said.append(event)

        debug = warning  # file_incomplete: a debug line (the intake says file_set_aside)

    s.log = Log()
    root = photo.parent

    def tick(now: float) -> list[Any]:
        s.look_again(now)
        looks = settler.Settler.look(s.snapshot())
        settled = s.apply(looks, now)
        s.batches(now)  # as the settle loop does: the folder's batch is not what is due here
        return settled

    s.sync_folder(root, [(photo.name, st.st_size, st.st_mtime)], root, "watch", None, 0.0)
    assert tick(1.0) == [] and tick(30.0) == []  # waiting: permissions may be fixed
    (aside,) = tick(61.5)
    assert not aside.complete and aside.reason == "cannot read: Permission denied"
    assert s.next_delay(61.5) == pytest.approx(5.0)
    assert tick(64.0) == [] and not s.candidates  # not yet due
    (again,) = tick(66.6)  # due: looked at, still unreadable, handed on at once
    assert not again.complete
    assert s.next_delay(66.6) == pytest.approx(10.0)  # twice as long before the next look
    # A hint (the chmod's event) makes the next rescan look at once.
    s.sync_folder(root, [(photo.name, st.st_size, st.st_mtime)], root, "watch", None, 70.0)
    readable["now"] = True
    (taken,) = tick(70.0)
    assert taken.complete and taken.path == photo
    assert not s.unreadable and not s.candidates and s.next_delay(70.0) is None
    assert said == ["file_incomplete"]  # said once, not on every look again
