"""The status page: the real daemon as a subprocess serves it on ``web_listen``; what it says is
what `status --json` says, read from the same journal; loopback only unless a password is set."""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
import time
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

import pytest

from daemon.demo.drive import plan_drive, write_drive
from daemon.server.config import ServerConfig
from daemon.server.runner import ServerThread
from daemon.web import hash_password
from tests.daemon_proc import TOKEN, DaemonProc, free_port, new_daemon, wait_for

pytestmark = pytest.mark.timeout(120)

START = datetime(2024, 6, 1, 7, 0, 0, tzinfo=UTC)
XSS = "<img src=x onerror=alert(1)>.jpg"


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(tokens=(TOKEN,))) as srv:
        yield srv


def get(url: str, auth: str | None = None) -> tuple[int, str, dict[str, str]]:
    req = Request(url)
    if auth is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urlopen(req, timeout=10) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def finished(d: DaemonProc, total: int) -> bool:
    images = d.images()
    done = images.get("finished", 0) + images.get("duplicate", 0)
    pending = d.query("SELECT count(*) FROM sequences WHERE state != 'finished'")[0][0]
    return done == total and pending == 0


def same_as_status(d: DaemonProc, base: str) -> dict[str, Any]:
    """/api/status equals `status --json` (retried briefly: the daemon's own figures, its
    activity and rate, may move between the two reads)."""

    def equal() -> dict[str, Any] | None:
        _, body, _ = get(base + "api/status")
        page = json.loads(body)
        return page if page == d.status() else None

    return wait_for("/api/status to equal status --json", equal, 20, every=0.5)


def test_the_page_shows_what_status_json_says_and_the_map_has_each_sequence(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    port = free_port()
    d = new_daemon(
        daemons, tmp_path / "work", server.environment(), "--watch", str(inbox),
        "--web-listen", f"127.0.0.1:{port}",
    )  # fmt: skip
    d.start()
    said = d.wait_event("web_page", 15)[0]
    base = f"http://127.0.0.1:{port}/"
    assert said["url"] == base and said["protected"] is False
    drive = plan_drive(START, seed=3, stop_s=10.0, break_s=300.0)
    paths = write_drive(drive, inbox / "2024-06-01")
    paths[5] = paths[5].rename(paths[5].with_name(XSS))  # a name a card could bring
    wait_for("the drive uploaded", lambda: finished(d, len(paths)), 60)

    page = same_as_status(d, base)
    assert page["images"]["finished"] > 0 and page["daemon"]["web"] == base
    # The map: one track per sequence, one point per photo of it (all have a position).
    _, body, _ = get(base + "api/map")
    tracks = json.loads(body)
    journal = dict(d.query("SELECT sequence_id, count(*) FROM files WHERE sequence_id IS NOT NULL "
                           "GROUP BY sequence_id"))  # fmt: skip
    assert {s["uuid"]: len(s["points"]) for s in tracks["sequences"]} == journal
    assert len(journal) >= 2 and all(s["state"] == "finished" for s in tracks["sequences"])
    names = [p["name"] for p in tracks["photos"]]
    for s in tracks["sequences"]:
        names += [
            p["name"] for p in json.loads(get(base + f"api/sequence/{s['uuid']}")[1])["photos"]
        ]
    assert XSS in names  # as data, for the page to show as text

    status, html, headers = get(base)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "<svg" in html and "api/status" in html and "innerHTML" not in html
    assert XSS not in html and "onerror" not in html  # the page holds no data to escape
    for text in (html, json.dumps(page), body):
        assert TOKEN not in text and str(d.journal) not in text
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    # `status` says where the page is.
    text = subprocess.run(
        [sys.executable, "-m", "daemon", "status", "--journal", str(d.journal)],
        env=d.env, capture_output=True, text=True, timeout=30,
    ).stdout  # fmt: skip
    assert f"page: {base}" in text
    assert d.stop() == 0
    with pytest.raises(OSError):
        urlopen(base, timeout=2)


def test_another_address_without_a_password_serves_no_page_but_the_daemon_runs(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    port = free_port()
    d = new_daemon(
        daemons, tmp_path / "work", server.environment(), "--watch", str(inbox),
        "--web-listen", f"0.0.0.0:{port}",
    )  # fmt: skip
    d.start()
    refused = d.wait_event("web_page_refused", 15)[0]
    assert "password" in refused["reason"] and refused["level"] == "error"
    d.wait_event("root_watched", 15)
    with pytest.raises(OSError):
        urlopen(f"http://127.0.0.1:{port}/", timeout=2)
    assert d.running() and d.stop() == 0


def test_another_address_with_a_password_asks_for_it(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    port = free_port()
    (tmp_path / "in").mkdir()
    d = new_daemon(
        daemons, tmp_path / "work", server.environment(), "--watch", str(tmp_path / "in"),
        "--web-listen", f"0.0.0.0:{port}",
    )  # fmt: skip
    stored = hash_password("glovebox")
    d.env["MAPILLARY_DAEMON_WEB_PASSWORD_HASH"] = stored
    d.start()
    assert d.wait_event("web_page", 15)[0]["protected"] is True
    base = f"http://127.0.0.1:{port}/"
    for auth in (None, "me:wrong"):
        status, body, headers = get(base + "api/status", auth)
        assert status == 401 and "Basic" in headers["WWW-Authenticate"]
    status, body, _ = get(base + "api/status", "me:glovebox")
    assert status == 200 and stored not in body and "glovebox" not in body
    assert get(base, "me:glovebox")[0] == 200
    assert "glovebox" not in d.all_output() and stored not in d.all_output()
    assert d.stop() == 0


def test_off_serves_nothing(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    (tmp_path / "in").mkdir()
    d = new_daemon(
        daemons, tmp_path / "work", server.environment(), "--watch", str(tmp_path / "in"),
        "--web-listen", "off",
    )  # fmt: skip
    d.start().wait_event("daemon_started", 15)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and not d.events("web_page"):
        time.sleep(0.2)
    assert not d.events("web_page") and not d.events("web_page_refused")
    assert d.status()["daemon"].get("web") is None
    assert d.stop() == 0


def test_a_bad_listen_value_is_refused_at_start(tmp_path: Path) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "daemon", "run", "--journal", str(tmp_path / "j"),
         "--web-listen", "8764"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert p.returncode != 0 and "web_listen" in p.stderr + p.stdout


def test_config_web_password_stores_only_a_salted_hash(tmp_path: Path) -> None:
    from daemon.core import config
    from daemon.web import verify_password

    path = tmp_path / "config.toml"
    path.write_text("[sources]\nsettle_seconds = 2\n")
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "daemon", "config", "web-password", "--config", str(path)]
    for _ in range(2):  # a second run replaces the line, never adds one
        p = subprocess.run(cmd, input="drive safely\n", env=env, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
    text = path.read_text()
    assert "drive safely" not in text and text.count("web_password_hash") == 1
    stored = config.load(path).web_password_hash
    assert stored is not None and verify_password("drive safely", stored)
    assert not verify_password("drive safely!", stored)
    short = subprocess.run(cmd, input="short\n", env=env, capture_output=True, text=True)
    assert short.returncode != 0 and path.read_text() == text


def post_retry(base: str, uuid: str, csrf: str | None, origin: str | None = None) -> int:
    req = Request(base + "api/retry", data=json.dumps({"sequence": uuid}).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    if csrf is not None:
        req.add_header("X-CSRF-Token", csrf)
    if origin is not None:
        req.add_header("Origin", origin)
    try:
        with urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


@dataclass
class FailedBehindThePage:
    """A daemon with its status page up whose sequences failed at their finish."""

    daemon: DaemonProc
    failed: list[dict[str, Any]]  # `status --json`'s failed_sequences
    web_port: int
    env: dict[str, str]  # the endpoints the daemon was given
    server_again: ServerConfig  # a server at the same place that takes the manifests


def failed_behind_the_page(tmp_path: Path, daemons: list[DaemonProc]) -> FailedBehindThePage:
    """A drive watched by a daemon serving its page while the server refuses every manifest
    (photos already up), until a sequence has failed; the server is gone again."""
    data, port = tmp_path / "server", free_port()
    strict = ServerConfig(port=port, data_dir=data, tokens=(TOKEN,), max_manifest_bytes=10)
    inbox, web_port = tmp_path / "in", free_port()
    inbox.mkdir()
    with ServerThread(strict) as server:
        d = new_daemon(
            daemons, tmp_path / "work", server.environment(), "--watch", str(inbox),
            "--web-listen", f"127.0.0.1:{web_port}",
        )  # fmt: skip
        d.start().wait_event("web_page", 15)
        paths = write_drive(plan_drive(START, seed=4, stop_s=10.0, break_s=300.0), inbox / "d")
        assert paths
        failed = wait_for("a failed sequence", lambda: d.status()["failed_sequences"], 60)
        env = server.environment()
    again = ServerConfig(port=port, data_dir=data, tokens=(TOKEN,))
    return FailedBehindThePage(d, failed, web_port, env, again)


def test_retry_on_the_page_queues_a_failed_sequence_again_and_it_goes_up(
    tmp_path: Path, daemons: list[DaemonProc]
) -> None:
    import re

    past = failed_behind_the_page(tmp_path, daemons)
    d, failed, env = past.daemon, past.failed, past.env
    d.wait_event("sequence_failed", 30)
    uuid = failed[0]["uuid"]
    base = f"http://127.0.0.1:{past.web_port}/"
    _, html, _ = get(base)
    csrf = re.search(r'<meta name="csrf" content="([^"]+)">', html)
    assert csrf is not None
    # Without the token, with a wrong one, or from another site's page: refused, nothing changed.
    assert post_retry(base, uuid, None) == 403
    assert post_retry(base, uuid, "forged") == 403
    assert post_retry(base, uuid, csrf[1], origin="http://evil.example") == 403
    assert d.query("SELECT state FROM sequences WHERE uuid = ?", uuid) == [("failed",)]
    with ServerThread(past.server_again) as server:
        assert server.environment() == env
        assert post_retry(base, uuid, csrf[1], origin=base.rstrip("/")) == 200
        d.wait_event("sequence_retry", 10)
        wait_for(
            "the retried sequence finished",
            lambda: d.query("SELECT state FROM sequences WHERE uuid = ?", uuid) == [("finished",)],
            60,
        )
        stats = server.stats()
        assert stats["duplicate_images"] == 0 and stats["duplicate_sequences"] == 0
    assert post_retry(base, uuid, csrf[1]) == 409  # finished: nothing to retry


def test_a_taken_port_is_said_and_the_daemon_runs_on(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    import socket

    (tmp_path / "in").mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        d = new_daemon(
            daemons, tmp_path / "work", server.environment(), "--watch", str(tmp_path / "in"),
            "--web-listen", f"127.0.0.1:{port}",
        )  # fmt: skip
        d.start()
        refused = d.wait_event("web_page_refused", 15)[0]
        assert "cannot listen" in refused["reason"]
        d.wait_event("root_watched", 15)
        assert d.running() and d.stop() == 0


def add_exif_thumbnail(path: Path, colour: tuple[int, int, int]) -> bytes:
    """Give a photo a camera-made EXIF thumbnail; the thumbnail's bytes as the file holds them
    (read back with exiftool where there is one: another reader than the daemon's)."""
    import io
    import shutil

    import piexif
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (160, 120), colour).save(out, "JPEG")
    exif = piexif.load(str(path))
    exif["thumbnail"], exif["1st"] = out.getvalue(), {piexif.ImageIFD.Compression: 6}
    piexif.insert(piexif.dump(exif), str(path))
    if shutil.which("exiftool"):
        cmd = ["exiftool", "-b", "-ThumbnailImage", str(path)]
        return subprocess.run(cmd, capture_output=True, check=True, timeout=30).stdout
    return bytes(piexif.load(str(path))["thumbnail"])


def get_bytes(url: str) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urlopen(url, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def test_a_sequence_lists_its_photos_and_their_thumbnails_come_from_the_journals_files(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    import hashlib
    import io

    from PIL import Image

    inbox, staged = tmp_path / "in", tmp_path / "staged" / "2024-06-01"
    inbox.mkdir()
    paths = write_drive(plan_drive(START, seed=8, stop_s=30.0, break_s=300.0), staged)
    embedded = {p.name: add_exif_thumbnail(p, (200, 40, 40)) for p in paths[:3]}
    port = free_port()
    d = new_daemon(
        daemons, tmp_path / "work", server.environment(), "--watch", str(inbox),
        "--web-listen", f"127.0.0.1:{port}",
    )  # fmt: skip
    d.start().wait_event("web_page", 15)
    staged.rename(inbox / staged.name)
    wait_for("the drive uploaded", lambda: finished(d, len(paths)), 60)
    base = f"http://127.0.0.1:{port}/"
    rows = d.query(
        "SELECT sequence_id, hash, json_extract(metadata, '$.filename'), state FROM files "
        "WHERE sequence_id IS NOT NULL ORDER BY sequence_id, seq_index"
    )
    by_seq: dict[str, list[tuple[str, str]]] = {}
    for seq, file_id, name, _ in rows:
        by_seq.setdefault(seq, []).append((file_id, name))
    duplicates = {r[0] for r in d.query("SELECT hash FROM files WHERE state = 'duplicate'")}
    assert len(by_seq) >= 2 and duplicates  # a stop of 30 s: photos standing still
    left_out: set[str] = set()
    for seq, photos in by_seq.items():
        _, body, _ = get(base + f"api/sequence/{seq}")
        shown = json.loads(body)
        assert [(p["id"], p["name"]) for p in shown["photos"]] == photos
        left_out |= {p["id"] for p in shown["left_out"] if p["state"] == "duplicate"}
    assert left_out and left_out <= duplicates  # the stop's duplicates, beside their sequence
    assert get(base + "api/sequence/no-such-sequence")[0] == 404
    names = {name: file_id for _, file_id, name, _ in rows}
    for name, thumb in embedded.items():  # the camera's own thumbnail, as it is in the file
        status, data, headers = get_bytes(base + f"api/photo/{names[name]}/thumbnail")
        assert status == 200 and headers["Content-Type"] == "image/jpeg"
        assert data == thumb and headers["X-Thumbnail"] == "exif"
    plain = names[paths[10].name]
    status, data, headers = get_bytes(base + f"api/photo/{plain}/thumbnail")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert headers["X-Thumbnail"] == "decoded"
    moved = inbox / staged.name / paths[10].name
    with Image.open(io.BytesIO(data)) as small, Image.open(moved) as big:
        assert small.format == "JPEG" and small.width <= 240
        assert small.width / small.height == pytest.approx(big.width / big.height, rel=0.05)
    # Only the journal's files: an unknown id, a path, a name; never read from the URL.
    unknown = hashlib.sha256(b"a photo the journal never saw").hexdigest()
    for ident in (unknown, "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "G0000001.JPG"):
        assert get_bytes(base + f"api/photo/{ident}/thumbnail")[0] == 404
    assert d.stop() == 0


def test_thumbnails_are_kept_in_a_bounded_cache_and_read_where_the_journal_says(
    tmp_path: Path,
) -> None:
    import hashlib

    from PIL import Image

    from daemon.journal import Journal, NewFile
    from daemon.web.thumbnails import NoThumbnail, Thumbnails

    card, spool = tmp_path / "card", tmp_path / "spool"
    card.mkdir()
    spool.mkdir()
    ids = []
    j = Journal.open(tmp_path / "journal.sqlite3")
    for n in range(12):
        photo = card / f"P{n:03d}.JPG"
        # Noise: each thumbnail is a few KB, as a real one is.
        Image.effect_noise((1200, 900), 40 + n).convert("RGB").save(photo, "JPEG", quality=90)
        data = photo.read_bytes()
        file_id = hashlib.sha256(data).hexdigest()
        copy = spool / file_id
        copy.write_bytes(data)
        j.add_file(NewFile(hash=file_id, path=photo, source_kind="card", source_root=card,
                           size=len(data), mtime=0.0, spool_path=copy))  # fmt: skip
        ids.append(file_id)
    j.close()
    thumbs = Thumbnails(tmp_path / "journal.sqlite3", limit=60_000)
    first = thumbs.get(ids[0])
    assert first.source == "decoded" and len(first.data) < 60_000
    with Image.open(spool / ids[0]) as big:
        assert big.size == (1200, 900)
    assert thumbs.get(ids[0]) is first  # from the cache: not read again
    for file_id in ids:
        thumbs.get(file_id)
    assert thumbs.held <= 60_000 and 1 <= len(thumbs) < len(ids)
    again = thumbs.get(ids[0])  # pushed out by the later ones, made again: the same picture
    assert again is not first and again.data == first.data
    # The spool copy gone (uploaded, cleaned up): the card's original, where it was seen.
    (spool / ids[5]).unlink()
    assert thumbs.get(ids[5]).content_type == "image/jpeg"
    (card / "P005.JPG").unlink()
    fresh = Thumbnails(tmp_path / "journal.sqlite3")
    with pytest.raises(NoThumbnail, match="no copy of the photo is readable"):
        fresh.get(ids[5])
    with pytest.raises(NoThumbnail, match="no such photo"):
        fresh.get(hashlib.sha256(b"unknown").hexdigest())
    with pytest.raises(NoThumbnail):
        fresh.get(str(card / "P001.JPG"))  # a path is no file id


def test_a_card_path_holding_another_photo_now_gives_no_thumbnail_of_it(tmp_path: Path) -> None:
    # A card formatted and filled again names its photos as before: the journal's old photo
    # (its spool copy gone after the upload) must not be shown with the new one's picture,
    # which the browser would keep for a day under the old photo's id.
    import hashlib

    from PIL import Image

    from daemon.journal import Journal, NewFile
    from daemon.web.thumbnails import NoThumbnail, Thumbnails

    card = tmp_path / "card"
    card.mkdir()
    photo = card / "DSC00001.JPG"
    Image.effect_noise((640, 480), 50).convert("RGB").save(photo, "JPEG", quality=90)
    data = photo.read_bytes()
    old_id = hashlib.sha256(data).hexdigest()
    with Journal.open(tmp_path / "journal.sqlite3") as j:
        j.add_file(NewFile(hash=old_id, path=photo, source_kind="card", source_root=card,
                           size=len(data), mtime=0.0, spool_path=None))  # fmt: skip
    assert Thumbnails(tmp_path / "journal.sqlite3").get(old_id).content_type == "image/jpeg"
    Image.effect_noise((640, 480), 90).convert("RGB").save(photo, "JPEG", quality=70)
    assert photo.stat().st_size != len(data)
    with pytest.raises(NoThumbnail, match="no copy of the photo is readable"):
        Thumbnails(tmp_path / "journal.sqlite3").get(old_id)


def test_sighup_with_a_new_web_listen_moves_the_page(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    import signal

    inbox, conf = tmp_path / "in", tmp_path / "config.toml"
    inbox.mkdir()
    first, second = free_port(), free_port()

    def configure(listen: str) -> None:
        tmp = conf.with_suffix(".tmp")
        tmp.write_text(f'watch = ["{inbox}"]\nweb_listen = "{listen}"\n')
        tmp.replace(conf)

    configure(f"127.0.0.1:{first}")
    d = new_daemon(daemons, tmp_path / "work", server.environment(), "--config", str(conf))
    d.start().wait_event("web_page", 15)
    old, new = f"http://127.0.0.1:{first}/", f"http://127.0.0.1:{second}/"
    assert get(old)[0] == 200
    configure(f"127.0.0.1:{second}")
    d.signal(signal.SIGHUP)
    d.wait_event("config_reloaded", 15)
    moved = d.wait_event("web_page", 15, count=2)[-1]
    assert moved["url"] == new and d.events("web_page_closed")[0]["url"] == old
    assert get(new)[0] == 200 and json.loads(get(new + "api/status")[1])["daemon"]["web"] == new
    with pytest.raises(OSError):
        urlopen(old, timeout=2)
    wait_for("status to say the new address", lambda: d.status()["daemon"]["web"] == new, 10)
    configure("off")  # and off: nothing served, status says no page
    d.signal(signal.SIGHUP)
    d.wait_event("web_page_closed", 15, count=2)
    with pytest.raises(OSError):
        urlopen(new, timeout=2)
    wait_for("status to say no page", lambda: d.status()["daemon"].get("web") is None, 10)
    assert d.running() and d.stop() == 0


def test_answers_are_read_again_exactly_when_the_journal_changed(tmp_path: Path) -> None:
    from daemon.journal import Journal
    from daemon.journal.status import status_json
    from daemon.web.answers import JournalAnswers

    path = tmp_path / "journal.sqlite3"
    Journal.open(path).close()
    answers = JournalAnswers(path)
    reads: list[str] = []

    def read() -> str:
        reads.append(json.dumps(status_json(path, 10)))
        return reads[-1]

    first = answers.get("status", read)
    assert answers.get("status", read) == first and len(reads) == 1  # nothing changed
    with Journal.open(path) as j:  # the daemon's connection commits
        j.set_meta("web_test", {"n": 1})
        j.record_event("set_aside", "IMG_1.JPG: cut off")
    second = answers.get("status", read)
    assert len(reads) == 2 and second != first and "IMG_1.JPG" in second
    assert answers.get("status", read) == second and len(reads) == 2
    answers.close()


def test_the_map_says_which_sequence_is_uploading_while_it_goes_up(
    tmp_path: Path, daemons: list[DaemonProc]
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    port = free_port()
    # A slow line: the drive takes seconds to go up, long enough to be seen going.
    with ServerThread(ServerConfig(tokens=(TOKEN,), bandwidth=60_000)) as server:
        d = new_daemon(
            daemons, tmp_path / "work", server.environment(), "--watch", str(inbox),
            "--web-listen", f"127.0.0.1:{port}",
        )  # fmt: skip
        d.start().wait_event("web_page", 15)
        paths = write_drive(plan_drive(START, seed=9, stop_s=10.0, break_s=300.0), inbox / "d")
        base = f"http://127.0.0.1:{port}/"
        seen: set[str] = set()

        def states() -> list[str]:
            got = [s["state"] for s in json.loads(get(base + "api/map")[1])["sequences"]]
            seen.update(got)
            return got

        wait_for("a sequence uploading", lambda: "uploading" in states(), 60, every=0.2)
        going = [s for s in json.loads(get(base + "api/map")[1])["sequences"]
                 if s["state"] == "uploading"]  # fmt: skip
        for s in going:  # the journal: waiting, some of its photos sent or being sent
            assert d.query("SELECT state FROM sequences WHERE uuid = ?", s["uuid"]) in (
                [("pending",)],
                [("finished",)],  # done between the two reads
            )
        wait_for("the drive uploaded", lambda: finished(d, len(paths)), 90)
        assert states() == ["finished"] * len(states()) and "uploading" in seen
    assert d.stop() == 0


def test_the_maps_positions_are_read_again_only_for_sequences_that_changed(
    tmp_path: Path,
) -> None:
    import hashlib

    from daemon.journal import FileState, Journal, NewFile
    from daemon.web.tracks import KeptPoints, read_tracks

    path = tmp_path / "journal.sqlite3"
    j = Journal.open(path)
    seqs: dict[str, list[str]] = {"a" * 8: [], "b" * 8: []}
    for s, (uuid, hashes) in enumerate(seqs.items()):
        for n in range(5):
            file_id = hashlib.sha256(f"{uuid}{n}".encode()).hexdigest()
            meta = {"filename": f"P{n}.JPG", "lat": 52.5 + s + n * 1e-4, "lon": 13.4}
            j.add_file(NewFile(hash=file_id, path=f"/card/{uuid}/P{n}.JPG", source_kind="card",
                               source_root="/card", size=1, mtime=0.0))  # fmt: skip
            j.set_file_state(file_id, FileState.DESCRIBED, metadata=meta)
            hashes.append(file_id)
        j.create_sequence(uuid, hashes, source_root="/card")
    kept: KeptPoints = {}
    first = read_tracks(path, kept)
    assert first == read_tracks(path) and len(kept) == 2
    points = {s["uuid"]: s["points"] for s in json.loads(first)["sequences"]}
    assert points["a" * 8][2] == [52.5002, 13.4]
    untouched = kept["b" * 8][1]
    # One photo of the first sequence moves on (and its position is corrected on the way).
    j.set_file_state(seqs["a" * 8][2], FileState.UPLOADED, metadata={"lat": 10.0, "lon": 20.0})
    again = read_tracks(path, kept)
    assert again == read_tracks(path)  # as a read from nothing
    points = {s["uuid"]: s["points"] for s in json.loads(again)["sequences"]}
    assert points["a" * 8][2] == [10.0, 20.0] and kept["b" * 8][1] is untouched
    # A Pi without a clock set back at boot: the photos' last changes lie ahead of now, and
    # a photo's position changed now is still seen.
    ahead = time.time() + 3600
    with sqlite3.connect(path) as other:  # as the journal was written before the set-back
        other.execute("UPDATE files SET updated_at = ? WHERE sequence_id = ?", (ahead, "b" * 8))
    read_tracks(path, kept)
    j.set_file_state(seqs["b" * 8][1], FileState.UPLOADED, metadata={"lat": 11.0, "lon": 21.0})
    points = {s["uuid"]: s["points"] for s in json.loads(read_tracks(path, kept))["sequences"]}
    assert points["b" * 8][1] == [11.0, 21.0]
    j.close()


def test_the_maps_json_holds_each_sequences_positions_in_its_order_as_the_journal_does(
    tmp_path: Path,
) -> None:
    import hashlib

    from daemon.journal import FileState, Journal, NewFile
    from daemon.web.tracks import read_tracks

    path = tmp_path / "journal.sqlite3"
    j = Journal.open(path)

    def photo(name: str, meta: dict[str, Any]) -> str:
        file_id = hashlib.sha256(name.encode()).hexdigest()
        j.add_file(NewFile(hash=file_id, path=f"/card/{name}", source_kind="card",
                           source_root="/card", size=1, mtime=0.0))  # fmt: skip
        j.set_file_state(file_id, FileState.DESCRIBED, metadata={"filename": name, **meta})
        return file_id

    # Taken west to east, sequenced east to west: the map follows the sequence, not the rows.
    east = [photo(f"E{n}.JPG", {"lat": 48.1234567891 + n, "lon": -3.0000004 - n}) for n in range(4)]
    east.insert(2, photo("NOFIX.JPG", {}))  # sequenced without a position: no point for it
    j.create_sequence("e" * 8, east[::-1], source_root="/card")
    j.create_sequence("z" * 8, [photo("Z0.JPG", {"lat": 10, "lon": 20})], source_root="/card")
    j.create_sequence("n" * 8, [photo("N0.JPG", {})], source_root="/card")
    dup = photo('"dup" <b>.JPG', {"lat": 1.5, "lon": 2.5})
    j.set_file_state(dup, FileState.DUPLICATE, reason="same place as E1.JPG")
    j.close()

    tracks = json.loads(read_tracks(path))
    db = sqlite3.connect(path)
    want: dict[str, list[list[float]]] = {}
    for seq, meta in db.execute(
        "SELECT sequence_id, metadata FROM files WHERE sequence_id IS NOT NULL "
        "ORDER BY sequence_id, seq_index"
    ):
        at = json.loads(meta)
        points = want.setdefault(seq, [])
        if "lat" in at:
            points.append([round(at["lat"], 6), round(at["lon"], 6)])
    order = [u for (u,) in db.execute("SELECT uuid FROM sequences ORDER BY created_at, rowid")]
    db.close()
    assert [s["uuid"] for s in tracks["sequences"]] == order
    assert {s["uuid"]: s["points"] for s in tracks["sequences"]} == want
    assert want["e" * 8] == [[51.123457, -6.0], [50.123457, -5.0], [49.123457, -4.0],
                             [48.123457, -3.0]]  # fmt: skip
    assert want["z" * 8] == [[10.0, 20.0]] and want["n" * 8] == []
    assert {(k, v) for k, v in tracks["sequences"][0].items() if k != "points"} == {
        ("uuid", "e" * 8), ("state", "pending"), ("reason", None), ("cluster_id", None),
        ("url", None),
    }  # fmt: skip
    assert tracks["photos"] == [{"lat": 1.5, "lon": 2.5, "name": '"dup" <b>.JPG',
                                 "state": "duplicate", "reason": "same place as E1.JPG"}]  # fmt: skip
    assert tracks["gpx"] == []


def test_a_name_other_than_loopback_in_host_is_refused_against_dns_rebinding(
    tmp_path: Path,
) -> None:
    import asyncio
    import http.client

    from daemon.journal import Journal
    from daemon.web.app import WebPage

    path = tmp_path / "journal.sqlite3"
    Journal.open(path).close()

    def ask(port: int, host: str, method: str = "GET", url: str = "/") -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            headers = {"Host": host, "Content-Type": "application/json"}
            body = '{"sequence": "x"}' if method == "POST" else None
            conn.request(method, url, body=body, headers=headers)
            r = conn.getresponse()
            return r.status, r.read().decode()
        finally:
            conn.close()

    async def story() -> dict[str, tuple[int, str]]:
        page = WebPage(path, "127.0.0.1:0")
        await page.start()
        try:
            p = page.port
            return {
                "ip": await asyncio.to_thread(ask, p, f"127.0.0.1:{p}"),
                "localhost": await asyncio.to_thread(ask, p, f"localhost:{p}"),
                "rebound": await asyncio.to_thread(ask, p, f"evil.example:{p}"),
                "status": await asyncio.to_thread(ask, p, f"evil.example:{p}", url="/api/status"),
                "retry": await asyncio.to_thread(ask, p, "evil.example", "POST", "/api/retry"),
            }
        finally:
            await page.stop()

    said = asyncio.run(story())
    assert said["ip"][0] == 200 and said["localhost"][0] == 200 and "<svg" in said["ip"][1]
    for key in ("rebound", "status", "retry"):
        assert said[key][0] == 421, said[key]
        assert 'name="csrf"' not in said[key][1] and "images" not in said[key][1]
