"""The daemon's intake in-process: real card files, a real spool and journal, the real Daemon;
only the order of events is driven by hand, to hit the moments a stop or a second flush lands."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

from daemon.core import config
from daemon.intake import SettledFile
from daemon.runtime.daemon import Daemon


def card_files(root: Path, count: int, megabytes: int, prefix: str = "G") -> list[SettledFile]:
    out = []
    for i in range(count):
        path = root / "DCIM" / "100GOPRO" / f"{prefix}{i:07d}.JPG"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\xff\xd8" + os.urandom(megabytes << 20) + b"\xff\xd9")
        st = path.stat()
        out.append(SettledFile(path, root, "card", "card-1", st.st_size, st.st_mtime))
    return out


def new_daemon(work: Path, once: bool = False) -> Daemon:
    settings = config.Settings(
        journal=work / "journal.sqlite3",
        spool=work / "spool",
        min_free_mb=1,
        settle_seconds=0.2,
        batch_quiet_seconds=0.2,
        tz="+02:00",
    )
    return Daemon(settings, once=once)


def shown(d: Daemon, root: Path) -> str:
    """What status shows of a root, from the daemon's own note on it."""
    note = d.runtime.roots.get(str(root))
    return note.value if note else ""


def journaled(work: Path) -> int:
    with sqlite3.connect(work / "journal.sqlite3") as db:
        return db.execute("SELECT count(*) FROM files").fetchone()[0]


async def test_a_stop_mid_flush_never_frees_a_card_before_its_photos_are_journaled(
    tmp_path: Path,
) -> None:
    root = tmp_path / "media" / "CARD"
    files = card_files(root, 40, 2)
    d = new_daemon(tmp_path / "work")
    await d.startup()
    d.activity.importing.add(str(root))
    d.intake._card_files = list(files)
    d.intake._card_done.add(str(root))  # CardImported came: its flush copies the whole card
    intake = asyncio.create_task(d.intake.flush())
    await asyncio.sleep(0.02)
    intake.cancel()  # SIGTERM: main() cancels the intake task mid-copy
    await asyncio.gather(intake, return_exceptions=True)
    await d.shutdown()
    said = shown(d, root)
    assert "you may remove it" in said
    assert journaled(tmp_path / "work") == len(files)
    assert not [p for p in (tmp_path / "work" / "spool").iterdir() if p.is_file()]  # no temps


async def test_two_flushes_at_once_journal_every_photo_once(tmp_path: Path) -> None:
    # --once: its final flush and the intake's timeout flush may run together.
    root = tmp_path / "media" / "CARD"
    first = card_files(root, 20, 2)
    last = card_files(root, 1, 1, prefix="L")
    d = new_daemon(tmp_path / "work", once=True)
    await d.startup()
    d.activity.importing.add(str(root))
    d.intake._card_files = list(first)
    await d.intake.flush(drain=False)  # the first batch is being flushed
    d.intake._card_files = list(last)
    d.intake._card_done.add(str(root))
    a = asyncio.create_task(d.intake.flush())
    await asyncio.sleep(0.02)
    b = asyncio.create_task(d.intake.flush())
    await asyncio.gather(a, b)
    await d.shutdown()
    assert journaled(tmp_path / "work") == 21
    assert (d.stats.imported, d.stats.known) == (21, 0)
    assert "you may remove it" in shown(d, root)
