"""The status page in a real headless browser (Debian's ``chromium``; skipped where it is not
installed), against the running daemon and the embedded server: the script fills the page from
``/api/status`` with the counts `status --json` gives, draws one track per sequence, shows a
clicked sequence's photos, re-queues a failed sequence when Retry is clicked, and shows a name
a card brings as text. Driven over chromium's DevTools protocol (tests/browser.py);
``--dump-dom`` and ``--screenshot`` give the page as the script left it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from daemon.demo.drive import plan_drive, write_drive
from daemon.server.config import ServerConfig
from daemon.server.runner import ServerThread
from tests.browser import CHROMIUM, Browser, dump_dom, screenshot
from tests.daemon_proc import TOKEN, DaemonProc, free_port, new_daemon, wait_for
from tests.test_web import failed_behind_the_page

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install chromium)"),
]
START = datetime(2024, 6, 1, 7, 0, 0, tzinfo=UTC)
XSS = "<img src=x onerror=alert(1)>.jpg"
# An alert() would be the XSS going off: counted in the page's title, which the tests read.
NO_ALERTS = "window.alert=()=>{document.title='ALERTED'};"
LABELS = {"pending": "waiting", "uploading": "uploading", "finished": "on Mapillary",
          "failed": "failed"}  # fmt: skip


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(tokens=(TOKEN,))) as srv:
        yield srv


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


# What the page shows, read in the browser.
QUEUE = """(()=>{const out={};let part="images";
 for(const tr of document.querySelectorAll("#queue tr")){const [k,v]=[...tr.children]
  .map(c=>c.textContent);if(k==="sequences"){part=k;continue}
  if(v&&v!=="count")out[part+":"+k]=Number(v)}
 return document.getElementById("updated").textContent?out:null})()"""
TRACKS = """[...document.querySelectorAll("#map polyline.track")].map(p=>
 [p.dataset.uuid,p.getAttribute("points").trim().split(/\\s+/).length])"""
THUMBS = """(()=>{const li=[...document.querySelectorAll("#photos li.photo")];
 return li.length?li.map(l=>[l.dataset.id,l.className,l.textContent]):null})()"""
# Each thumbnail as the browser decodes it (they load lazily, as they scroll into view).
DECODED = """Promise.all([...document.querySelectorAll("#photos li.photo img")].map(i=>
 fetch(i.src).then(r=>r.blob()).then(createImageBitmap).then(b=>[b.width,b.height])))"""


def shown_counts(st: dict[str, Any]) -> dict[str, int]:
    counts = {f"images:{k}": v for k, v in st["images"].items() if v}
    counts.update({f"sequences:{LABELS[k]}": v for k, v in st["sequences"].items() if v})
    return counts


def test_the_page_shows_the_counts_the_map_a_sequences_photos_and_names_as_text(
    tmp_path: Path, server: ServerThread, daemons: list[DaemonProc]
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    port = free_port()
    d = new_daemon(daemons, tmp_path / "work", server.environment(), "--watch", str(inbox),
                   "--web-listen", f"127.0.0.1:{port}")  # fmt: skip
    d.start().wait_event("web_page", 15)
    drive = plan_drive(START, seed=5, stop_s=30.0, break_s=300.0)
    staged = tmp_path / "staged" / "d"
    paths = write_drive(drive, staged, gpx_name="log.gpx")  # the GPX drawn behind the photos
    paths[5] = paths[5].rename(paths[5].with_name(XSS))  # a photo with a name a card could bring
    (staged / "bad").mkdir()
    (staged / "bad" / XSS).write_bytes(b"not a photo at all" * 100)  # set aside, with its name
    staged.rename(inbox / "d")

    def settled() -> bool:
        images = d.images()
        done = images.get("finished", 0) + images.get("duplicate", 0)
        gpx = d.query("SELECT count(*) FROM settings WHERE key = 'gpx_files'")[0][0]
        aside = d.status()["recent_events"]  # the bad file, set aside before the journal
        return done == len(paths) and any(XSS in e["message"] for e in aside) and gpx

    wait_for("the drive uploaded and the bad file set aside", settled, 90)
    st = d.status()
    base = f"http://127.0.0.1:{port}/"
    seqs = dict(d.query("SELECT sequence_id, count(*) FROM files WHERE sequence_id IS NOT NULL "
                        "GROUP BY sequence_id"))  # fmt: skip
    duplicates = d.query("SELECT count(*) FROM files WHERE state = 'duplicate'")[0][0]
    xss_seq = d.query("SELECT sequence_id, hash FROM files "
                      "WHERE json_extract(metadata, '$.filename') = ?", XSS)  # fmt: skip
    assert len(seqs) >= 2 and duplicates and len(xss_seq) == 1
    with Browser(tmp_path / "profile") as b:
        b.call("Page.addScriptToEvaluateOnNewDocument", source=NO_ALERTS)
        b.open(base)
        # The counts on the page equal `status --json` (the daemon is idle: nothing moves).
        assert b.wait("the queue", QUEUE) == shown_counts(st)
        # The map: one path per sequence, one point per photo; duplicates marked; GPX behind.
        assert dict(b.wait("the map", TRACKS)) == seqs
        assert b.eval("document.querySelectorAll('#map text.mark[data-state=duplicate]').length")
        assert b.eval("document.querySelectorAll('#map polyline.gpx').length") == 1
        # Clicking a track shows its photos' thumbnails (loaded) and the left-out duplicates.
        uuid, xss_id = xss_seq[0]
        b.eval(f"document.querySelector('polyline.track[data-uuid=\"{uuid}\"]')"
               ".dispatchEvent(new MouseEvent('click'))")  # fmt: skip
        thumbs = b.wait("the sequence's thumbnails", THUMBS)
        ordered = d.query("SELECT hash FROM files WHERE sequence_id = ? ORDER BY seq_index", uuid)
        in_seq = [t for t in thumbs if "duplicate" not in t[1]]
        assert [t[0] for t in in_seq] == [h for (h,) in ordered]
        marked = [t for t in thumbs if t[1] == "photo duplicate"]
        all_dups = {h for (h,) in d.query("SELECT hash FROM files WHERE state = 'duplicate'")}
        assert {t[0] for t in marked} <= all_dups
        assert all("duplicate" in text for _, _, text in marked)
        assert any(t[0] == xss_id and XSS in t[2] for t in in_seq)  # the name, as text
        sizes = b.eval(DECODED)
        assert len(sizes) == len(thumbs) and all(0 < w <= 240 and h > 0 for w, h in sizes)
        first = "document.querySelector('#photos li.photo img')"
        assert b.wait("the first thumbnail shown", f"{first}.complete&&{first}.naturalWidth")
        # Its link on Mapillary, once the map data has one; nothing when not.
        url = next(s.get("url") for s in b.eval("fetch('api/map').then(r=>r.json())")["sequences"]
                   if s["uuid"] == uuid)  # fmt: skip
        links = b.eval("[...document.querySelectorAll('#photos a.mly')].map(a=>a.href)")
        assert links == ([url] if url else [])
        assert XSS in b.eval("document.getElementById('aside').textContent")
        assert b.eval("document.querySelectorAll('img[src=x],[onerror]').length") == 0
        assert b.eval("document.title") == "mapillary-daemon"  # no alert() ran
    dom = Dom(dump_dom(base + f"#sequence={uuid}", tmp_path / "profile2"))
    assert not any(tag == "img" and a.get("src") == "x" for tag, a in dom.tags)
    assert XSS in dom.text["photos"] and XSS in dom.text["aside"]
    shot = screenshot(base + f"#sequence={uuid}", tmp_path / "profile3", tmp_path / "page.png")
    from PIL import Image

    with Image.open(shot) as png:
        assert png.format == "PNG" and png.size == (412, 915)
        assert len(png.getcolors(1 << 16) or range(1 << 16)) > 20  # drawn, not a blank page


def test_a_card_is_marked_safe_to_remove_on_the_page_only_once_it_is(
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
    root = str((media / "CARD1").resolve())
    safe_shown = "[...document.querySelectorAll('#roots .safe')].map(e=>e.parentNode.textContent)"
    with Browser(tmp_path / "profile") as b:
        b.open(base)
        b.wait("the page filled", "document.getElementById('updated').textContent")
        assert b.eval(safe_shown) == []
        staged.rename(media / "CARD1")  # mounted
        # Each look at the page, then at `status --json`: safe on the page means safe already.
        looks = 0
        while True:
            on_page = b.eval(safe_shown)
            cards = d.status()["daemon"].get("cards") or {}
            if on_page:
                assert cards[root]["safe_to_remove"] is True, (on_page, cards)
                break
            looks += 1
            assert looks < 600, "the page never said the card may go"
            b.eval("new Promise(r=>setTimeout(r,100))")
        assert "you may remove it" in b.eval("document.getElementById('roots').textContent")
        assert root in b.eval("document.getElementById('roots').textContent")


def test_retry_on_the_page_re_queues_a_failed_sequence(
    tmp_path: Path, daemons: list[DaemonProc]
) -> None:
    past = failed_behind_the_page(tmp_path, daemons)
    d, failed = past.daemon, past.failed
    uuid = failed[0]["uuid"]
    base = f"http://127.0.0.1:{past.web_port}/"
    button = f"document.querySelector('button.retry[data-uuid=\"{uuid}\"]')"
    with (
        ServerThread(past.server_again) as server,
        Browser(tmp_path / "profile") as b,
    ):
        b.open(base)
        b.wait("the Retry button", f"!!{button}")
        assert failed[0]["reason"] in b.eval("document.getElementById('failed').textContent")
        b.eval(f"{button}.click()")
        assert b.wait("the answer", f"{button}.textContent!=='Retry'&&{button}.textContent") == (
            "queued again"
        )
        d.wait_event("sequence_retry", 10)
        state = "SELECT state FROM sequences WHERE uuid = ?"
        wait_for("the sequence up", lambda: d.query(state, uuid) == [("finished",)], 60)
        # The page follows: the sequence leaves the failed list, and the counts are those of
        # `status --json` (the other sequence may fail, or be retried, meanwhile: re-read).
        b.wait("the retried sequence off the failed list", f"!{button}")

        def same() -> bool:
            shown = b.eval(QUEUE)
            mapillary = bool(shown) and shown.get("sequences:on Mapillary", 0) >= 1
            return mapillary and shown == shown_counts(d.status())

        wait_for("the page's counts to follow status --json", same, 30, every=0.5)
        stats = server.stats()
        assert stats["duplicate_images"] == 0 and stats["duplicate_sequences"] == 0


class PageThread:
    """The page's server (the daemon's own WebPage) on a loop in a thread, over a journal."""

    def __init__(self, journal: Path) -> None:
        import asyncio

        from daemon.web import WebPage

        self.loop = asyncio.new_event_loop()
        self.page = WebPage(journal, "127.0.0.1:0")
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self.page.start(), self.loop).result(10)

    def close(self) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self.page.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def test_gps_zone_clock_offset_a_suggestion_and_why_photos_wait_are_shown(
    tmp_path: Path,
) -> None:
    from daemon.journal import RUNTIME_META, Journal
    from daemon.runtime.state import Runtime

    runtime = Runtime()  # this process stands for the running daemon (its pid is alive)
    runtime.activity = "processing"
    runtime.gps = {"state": "fix", "server": "127.0.0.1:2947", "satellites": 9, "mode": 3,
                   "last_fix": "2024-06-01T07:31:00+00:00", "track": "gpsd-2024-06-01.gpx",
                   "fixes": 412}  # fmt: skip
    runtime.clock = {"tz": "Europe/Berlin", "time_offset": -3.0, "source": "config",
                     "suggestion": {"tz": "+01:00", "time_offset": 3597.0, "confidence": 0.9,
                                    "photos": 120, "reason": "the GPX fits an hour later"}}  # fmt: skip
    runtime.waiting = {"settling": 3, "card_copying": 0, "position": 7}
    journal = tmp_path / "journal.sqlite3"
    with Journal.open(journal) as j:
        j.set_meta(RUNTIME_META, runtime.as_dict())
    page = PageThread(journal)
    try:
        with Browser(tmp_path / "profile") as b:
            b.open(page.url)
            clock = b.wait("the clock table", "document.getElementById('clock').textContent")
            for said in ("fix (3D), 9 satellites, 412 fixes logged", "127.0.0.1:2947",
                         "gpsd-2024-06-01.gpx", "Europe/Berlin (config)", "-3 s",
                         "the photos suggest zone +01:00 and clock offset +3597 s (90% sure, "
                         "120 photos): the GPX fits an hour later"):  # fmt: skip
                assert said in clock
            assert b.eval("document.querySelectorAll('#clock .warn').length") == 1
            rows = b.eval("[...document.querySelectorAll('#waiting tr')].map(t=>t.textContent)")
            assert rows == ["position7", "settling3"]  # most first; nothing of a reason with none
            # None of it known (no gpsd, a daemon from before): said so, nothing broken.
            runtime.gps = runtime.clock = None
            runtime.waiting = {}
            with Journal.open(journal) as j:
                j.set_meta(RUNTIME_META, runtime.as_dict())
            b.wait("the page to follow", "document.getElementById('clock').textContent"
                   ".includes('no gpsd')")  # fmt: skip
            clock = b.eval("document.getElementById('clock').textContent")
            assert "not said by this daemon" in clock and "suggest" not in clock
            assert b.eval("document.getElementById('waiting').textContent") == "nothing waits"
            assert b.eval("document.getElementById('daemon').textContent").startswith("running")
    finally:
        page.close()
