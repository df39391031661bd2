"""The status page in a real headless browser (Debian's ``chromium``; skipped where it is not
installed): the script runs, fills the page from ``/api/status`` and draws the map, and a name a
card brings is shown as text. ``--dump-dom`` gives the page as the script left it."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from daemon.demo.drive import plan_drive, write_drive
from daemon.server.config import ServerConfig
from daemon.server.runner import ServerThread
from tests.daemon_proc import TOKEN, DaemonProc, free_port, new_daemon, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install chromium)"),
]
START = datetime(2024, 6, 1, 7, 0, 0, tzinfo=UTC)
XSS = "<img src=x onerror=alert(1)>.jpg"


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(tokens=(TOKEN,))) as srv:
        yield srv


def browser(url: str, *extra: str) -> str:
    assert CHROMIUM is not None
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--window-size=412,915", "--virtual-time-budget=6000", *extra, url]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90).stdout


class Dom(HTMLParser):
    """The elements and the text of each element with an id, as the browser left them."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: dict[str, str] = {}
        self._open: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        ident = dict(attrs).get("id")
        if ident:
            self._open.append(ident)
            self.text.setdefault(ident, "")

    def handle_data(self, data: str) -> None:
        for ident in self._open:
            self.text[ident] += data + " "

    def handle_endtag(self, tag: str) -> None:
        pass  # ids stay open to the end: text of sections in document order is enough here


def test_the_page_in_a_browser_shows_the_counts_the_map_and_names_as_text(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    port = free_port()
    d = new_daemon(daemons, tmp_path / "work", server.environment(), "--watch", str(inbox),
                   "--web-listen", f"127.0.0.1:{port}")  # fmt: skip
    d.start().wait_event("web_page", 15)
    drive = plan_drive(START, seed=5, stop_s=10.0, break_s=300.0)
    paths = write_drive(drive, inbox / "d")
    (inbox / "d" / "log.gpx").write_text(drive.gpx_text())  # drawn behind the photos
    (inbox / "d" / XSS).write_bytes(b"not a photo at all" * 100)  # set aside, with its name

    def settled() -> bool:
        images = d.images()
        done = images.get("finished", 0) + images.get("duplicate", 0)
        aside = sum(images.values()) + len(d.status()["recent_events"]) > done
        gpx = d.query("SELECT count(*) FROM settings WHERE key = 'gpx_files'")[0][0]
        return done == len(paths) and aside and gpx

    wait_for("the drive uploaded and the bad file set aside", settled, 60)
    st = d.status()
    base = f"http://127.0.0.1:{port}/"
    html = browser(base, "--dump-dom")
    dom = Dom(html)
    assert not any(tag == "img" for tag, _ in dom.tags), "a file name became markup"
    shown = " ".join(dom.text.values())
    assert XSS in shown  # as text (the parser unescaped &lt;img ...&gt;)
    queue = dom.text["queue"].split()
    assert queue[queue.index("finished") + 1] == str(st["images"]["finished"])
    lines = [a for tag, a in dom.tags if tag == "polyline" and a.get("class") == "track"]
    seqs = dict(d.query("SELECT sequence_id, count(*) FROM files WHERE sequence_id IS NOT NULL "
                        "GROUP BY sequence_id"))  # fmt: skip
    assert {a["data-uuid"]: len(re.findall(r"\S+", a["points"] or "")) for a in lines} == seqs
    assert sum(1 for tag, a in dom.tags if tag == "polyline" and a.get("class") == "gpx") == 1
    shot = tmp_path / "page.png"
    browser(base, f"--screenshot={shot}")
    assert shot.exists() and shot.stat().st_size > 5000


def test_a_card_is_marked_safe_to_remove_on_the_page_once_it_is(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    media = tmp_path / "media"
    media.mkdir()
    port = free_port()
    d = new_daemon(daemons, tmp_path / "work", server.environment(), "--mount-root", str(media),
                   "--web-listen", f"127.0.0.1:{port}")  # fmt: skip
    d.start().wait_event("web_page", 15)
    base = f"http://127.0.0.1:{port}/"
    staged = tmp_path / "staging" / "CARD1"
    write_drive(plan_drive(START, seed=6, stop_s=10.0, break_s=300.0), staged / "DCIM" / "100X")
    assert not [a for tag, a in Dom(browser(base, "--dump-dom")).tags if a.get("class") == "safe"]
    (media / "CARD1").parent.mkdir(exist_ok=True)
    staged.rename(media / "CARD1")  # mounted
    d.wait_event("card_imported", 60)
    root = str((media / "CARD1").resolve())

    def said() -> bool:
        return "may remove" in d.status()["daemon"]["roots"].get(root, "")

    wait_for("status to say the card may go", said, 30)
    dom = Dom(browser(base, "--dump-dom"))
    assert [a for tag, a in dom.tags if a.get("class") == "safe"]
    assert "you may remove it" in dom.text["roots"] and root in dom.text["roots"]
