"""Status page benchmark: what the page costs the idle daemon, and how fast it answers.

Starts the real daemon (watching an empty folder) twice, with the page off and on, lets it go
idle, and prints its RSS (VmRSS, Linux) and the CPU it uses over an idle window; then times
``GET /``, ``/api/status`` and ``/api/map`` over a journal of ``--photos`` photos (default 50,000,
in sequences of 500, written straight into the journal), and the page's load in chromium (from
navigation to every track drawn, over the DevTools protocol); last, one thumbnail of a 12 MP
photo: the camera's EXIF one, a draft-mode decode against a full decode, and a cached one.
Targets (issue 17): < 10 MB more RSS, no measurable idle CPU, a page load under 1 s with 50,000
photos.

    python tests/bench/bench_web.py
    python tests/bench/bench_web.py --photos 5000 --idle 5
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.request import urlopen

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from daemon.journal import Journal, NewFile  # noqa: E402
from daemon.server.config import ServerConfig  # noqa: E402
from daemon.server.runner import ServerThread  # noqa: E402
from tests.browser import CHROMIUM, Browser  # noqa: E402
from tests.daemon_proc import TOKEN, DaemonProc, free_port, new_daemon  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def fill(journal: Path, photos: int, per_sequence: int = 500) -> None:
    """``photos`` journaled photos with positions, in pending sequences (as after a long drive
    offline)."""
    j = Journal.open(journal)
    entries = [
        NewFile(
            hash=hashlib.sha256(str(n).encode()).hexdigest(),
            path=f"/media/card/DCIM/100GOPRO/G{n:07d}.JPG",
            source_kind="card",
            source_root="/media/card",
            size=4_000_000,
            mtime=1.7e9 + n,
            metadata={"filename": f"G{n:07d}.JPG", "lat": 52.5 + n * 1e-5, "lon": 13.4},
        )
        for n in range(photos)
    ]
    j.add_files(entries)
    j.close()
    db = sqlite3.connect(journal)
    with db:
        for start in range(0, photos, per_sequence):
            seq = str(uuid.uuid4())
            db.execute(
                "INSERT INTO sequences (uuid, state, created_at) VALUES (?, 'pending', ?)",
                (seq, time.time()),
            )
            for i, e in enumerate(entries[start : start + per_sequence]):
                db.execute(
                    "UPDATE files SET state = 'sequenced', sequence_id = ?, seq_index = ? "
                    "WHERE hash = ?",
                    (seq, i, e.hash),
                )
    db.close()


def timed_get(url: str, times: int = 5) -> tuple[float, float, int]:
    """The first answer's time, the median of the next ones' (nothing changed in between: the
    page's kept answer) and the size."""
    took, size = [], 0
    for _ in range(times):
        began = time.perf_counter()
        with urlopen(url, timeout=60) as r:
            size = len(r.read())
        took.append(time.perf_counter() - began)
    return took[0], statistics.median(took[1:]) if times > 1 else took[0], size


def idle_figures(work: Path, server: ServerThread, listen: str, idle: float) -> dict[str, float]:
    daemons: list[DaemonProc] = []
    inbox = work / "in"
    inbox.mkdir(parents=True)
    d = new_daemon(daemons, work / "work", server.environment(), "--watch", str(inbox),
                   "--web-listen", listen, "--log-level", "info")  # fmt: skip
    try:
        d.start().wait_event("root_watched", 30)
        if listen != "off":
            d.wait_event("web_page", 30)
            timed_get(f"http://{listen}/api/status", 1)  # the page as a user opens it once
        time.sleep(3)  # startup's allocations settle
        assert d.proc is not None
        pid = d.proc.pid
        cpu0 = cpu_seconds(pid)
        time.sleep(idle)
        return {"rss_mb": rss_mb(pid), "cpu_s": cpu_seconds(pid) - cpu0}
    finally:
        d.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=50_000)
    parser.add_argument("--idle", type=float, default=10.0, help="idle window, s")
    parser.add_argument("--no-browser", action="store_true", help="no page load in chromium")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="bench-web-") as tmp,
        ServerThread(ServerConfig(tokens=(TOKEN,))) as server,
    ):
        off = idle_figures(Path(tmp) / "off", server, "off", args.idle)
        on = idle_figures(Path(tmp) / "on", server, f"127.0.0.1:{free_port()}", args.idle)
        print(f"idle RSS   page off {off['rss_mb']:.1f} MB, on {on['rss_mb']:.1f} MB "
              f"(+{on['rss_mb'] - off['rss_mb']:.1f} MB; target < 10)")  # fmt: skip
        print(f"idle CPU   page off {off['cpu_s']:.2f} s, on {on['cpu_s']:.2f} s "
              f"over {args.idle:g} s")  # fmt: skip
        work = Path(tmp) / "big"
        work.mkdir()
        began = time.perf_counter()
        (work / "work").mkdir()
        fill(work / "work" / "journal.sqlite3", args.photos)
        print(f"journal    {args.photos} photos written in {time.perf_counter() - began:.1f} s")
        port = free_port()
        daemons: list[DaemonProc] = []
        (work / "in").mkdir()
        d = new_daemon(daemons, work / "work", server.environment(), "--watch", str(work / "in"),
                       "--web-listen", f"127.0.0.1:{port}", "--upload-delay", "1e9")  # fmt: skip
        try:
            d.start().wait_event("web_page", 60)
            base = f"http://127.0.0.1:{port}/"
            time.sleep(3)  # the daemon's own start (its scan) over
            assert d.proc is not None
            before = last = rss_mb(d.proc.pid)
            for name in ("", "api/status", "api/map"):
                first, kept, size = timed_get(base + name)
                now = rss_mb(d.proc.pid)
                print(f"GET /{name:<10} {first * 1000:7.1f} ms read, {kept * 1000:6.1f} ms kept  "
                      f"{size / 1024:8.1f} KB  RSS +{now - last:.1f} MB")  # fmt: skip
                last = now
            after = rss_mb(d.proc.pid)
            print(f"page open  RSS {before:.1f} MB before its answers, {after:.1f} MB after "
                  f"(+{after - before:.1f} MB: the answers kept; target < 10)")  # fmt: skip
            page = json.loads(urlopen(base + "api/status", timeout=60).read())
            print(f"           images {page['images']}")
            tracks = -(-args.photos // 500)
            if args.no_browser:
                print("page load  skipped (--no-browser)")
            elif CHROMIUM is None:
                print("page load  skipped: no chromium (apt-get install chromium)")
            else:
                for fresh in (True, False):
                    loads, empty = [], []
                    for n in range(3):
                        if fresh:  # nothing kept: every answer read from the journal
                            d.stop()
                            d.start().wait_event("web_page", 60)
                            time.sleep(3)  # the daemon's own start (its scan) over, as idle
                        took, baseline = page_load(base, tracks, work / f"profile{fresh}{n}")
                        loads.append(took)
                        empty.append(baseline)
                    said = "daemon just started" if fresh else "answers kept"
                    print(
                        f"page load  {statistics.median(loads) * 1000:7.1f} ms in chromium, "
                        f"{said} (navigation to {tracks} tracks drawn, median of 3; "
                        f"target < 1000); an empty page {statistics.median(empty) * 1000:.0f} ms"
                    )
        finally:
            d.stop()
        thumbnail_figures(work)
    return 0


def page_load(base: str, tracks: int, profile: Path) -> tuple[float, float]:
    """Seconds from navigating to the page until all ``tracks`` are on the map (a fresh
    browser profile each time: nothing cached), and, as the baseline, to load a page of the
    same address that reads nothing (a 404): chromium's own start is not the page's load."""
    with Browser(profile) as b:
        b.open(base + "favicon.ico")
        b.wait("the first page", "document.readyState === 'complete'", timeout=60)
        began = time.perf_counter()
        b.open(base + "favicon.ico?again")
        b.wait("the empty page", "document.readyState === 'complete'", timeout=60, every=0.01)
        empty = time.perf_counter() - began
        began = time.perf_counter()
        b.open(base)
        drawn = f"document.querySelectorAll('#map polyline.track').length === {tracks}"
        b.wait("the tracks drawn", drawn, timeout=60, every=0.01)
        return time.perf_counter() - began, empty


def thumbnail_figures(work: Path) -> None:
    import io

    import piexif
    from PIL import Image

    from daemon.web.thumbnails import make_thumbnail

    photo = work / "12mp.jpg"
    Image.effect_noise((4000, 3000), 60).convert("RGB").save(photo, "JPEG", quality=90)
    began = time.perf_counter()
    with Image.open(photo) as img:
        img.convert("RGB").thumbnail((240, 480))  # the baseline: a full decode, then shrunk
    full = time.perf_counter() - began
    draft = min(_timed(lambda: make_thumbnail(str(photo))) for _ in range(3))
    out = io.BytesIO()
    Image.new("RGB", (160, 120), (90, 90, 90)).save(out, "JPEG")
    exif = piexif.load(str(photo))
    exif["thumbnail"], exif["1st"] = out.getvalue(), {piexif.ImageIFD.Compression: 6}
    piexif.insert(piexif.dump(exif), str(photo))
    own = min(_timed(lambda: make_thumbnail(str(photo))) for _ in range(3))
    print(f"thumbnail  12 MP photo: full decode {full * 1000:.0f} ms, draft mode "
          f"{draft * 1000:.0f} ms ({full / draft:.1f}x faster), EXIF thumbnail "
          f"{own * 1000:.1f} ms ({full / own:.0f}x)")  # fmt: skip


def _timed(work: object) -> float:
    assert callable(work)
    began = time.perf_counter()
    work()
    return time.perf_counter() - began


if __name__ == "__main__":
    sys.exit(main())
