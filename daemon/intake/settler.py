"""Settling: a file is handed on once it is complete and quiet, a folder's batch once the
folder is quiet.

A candidate is *settled* when it is complete (see :mod:`daemon.intake.complete`) and its size
and mtime have not changed for ``settle_seconds``. A quiet file that can never become complete
(no JPEG start marker, not XML, not ``<gpx>``) is handed on at once marked not complete; one
that may still be growing (empty, cut off) only after ``give_up_seconds``. One that cannot be
read (permissions) is handed on set aside like a cut one, then looked at again now and then
(sooner on a hint: a chmod is one), so that a fix is noticed without a restart.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from daemon.core import log
from daemon.intake.complete import Verdict, verdict
from daemon.intake.events import BatchReady, SettledFile
from daemon.intake.scan import Entry

TICK_SECONDS = 0.5  # settling checks, only while something is pending
MIN_GIVE_UP_SECONDS = 60.0
# An unreadable watch-folder file set aside is looked at again after this, then twice as long
# each time it still cannot be read, up to the cap: a fix shows within minutes at a few failed
# opens an hour.
RECHECK_FIRST_SECONDS = 5.0
RECHECK_MAX_SECONDS = 600.0


@dataclass(slots=True)  # one per file of a card not yet handed on: kept small
class _Candidate:
    root: Path
    kind: str
    card_id: str | None
    size: int
    mtime: float
    since: float  # monotonic time since when (size, mtime) has not changed
    checked: tuple[int, float] | None = None  # (size, mtime) found incomplete
    verdict: Verdict | None = None  # what was found then
    recheck: float = 0.0  # an unreadable file looked at again: the wait before this look


@dataclass
class _Folder:
    root: Path
    kind: str
    last_change: float
    settled: int = 0


Look = tuple[Path, int | None, float | None, Verdict | None]  # path, size, mtime, if read


class Settler:
    """Candidates until they are complete and quiet; folders until they are quiet.

    Pure bookkeeping on the loop; the only I/O is in :meth:`look`, which runs in a thread.
    Reported files are remembered per folder by (size, mtime), so a rescan skips them unless
    they changed, and a file that changes after settling is examined again.
    """

    def __init__(
        self,
        settle_seconds: float,
        batch_quiet_seconds: float,
        give_up_seconds: float | None = None,
    ) -> None:
        self.settle_seconds = settle_seconds
        self.batch_quiet_seconds = batch_quiet_seconds
        self.give_up_seconds = give_up_seconds or max(MIN_GIVE_UP_SECONDS, 10 * settle_seconds)
        # Nothing writes to a card in a reader: an unfinished file there is cut off for good,
        # and waiting a minute for it would keep the user from pulling the card.
        self.card_give_up_seconds = min(self.give_up_seconds, max(2.0, 2 * settle_seconds))
        self.candidates: dict[Path, _Candidate] = {}
        self.reported: dict[Path, dict[str, tuple[int, float]]] = {}
        self.folders: dict[Path, _Folder] = {}
        # Unreadable files handed on: path → (when to look again, the wait before that look).
        self.unreadable: dict[Path, tuple[_Candidate, float, float]] = {}
        self.log = log.get("sources")

    def consider(
        self,
        path: Path,
        size: int,
        mtime: float,
        root: Path,
        kind: str,
        card_id: str | None,
        now: float,
    ) -> None:
        """A file seen by a scan: a candidate, unless it was reported as it is."""
        if self.reported.get(path.parent, {}).get(path.name) == (size, mtime):
            later = self.unreadable.get(path)
            if later is not None:  # looked at again (a hint, e.g. a chmod): try it now
                self.unreadable[path] = (later[0], now, later[2])
            return
        cand = self.candidates.get(path)
        if cand is None:
            since = now
            if kind == "card":
                # A card in a reader is not being written: its mtime says how long it has
                # been quiet already. Watch folders wait the full settle time.
                since = now - max(0.0, min(time.time() - mtime, self.settle_seconds))
            self.candidates[path] = _Candidate(root, kind, card_id, size, mtime, since)
            self._touch(path.parent, root, kind, now)

    def sync_folder(
        self,
        folder: Path,
        entries: list[Entry] | None,
        root: Path,
        kind: str,
        card_id: str | None,
        now: float,
    ) -> None:
        """Take a fresh listing of ``folder`` (None: it is gone) and forget what left it."""
        if entries is None:
            self.forget(folder)
            return
        names = set()
        for name, size, mtime in sorted(entries):  # handed on in name order, like the camera's
            names.add(name)
            self.consider(folder / name, size, mtime, root, kind, card_id, now)
        known = self.reported.get(folder)
        if known:
            for name in [n for n in known if n not in names]:
                del known[name]
                self.unreadable.pop(folder / name, None)

    def forget(self, prefix: Path) -> None:
        """Drop everything at or below ``prefix`` (a removed card, root or folder)."""

        def under(p: Path) -> bool:
            return p == prefix or prefix in p.parents

        for table in (self.candidates, self.reported, self.folders, self.unreadable):
            for p in [p for p in table if under(p)]:
                del table[p]

    def drop_candidates(self, prefix: Path) -> None:
        for p in [p for p in self.candidates if prefix in p.parents]:
            del self.candidates[p]

    def recheck(self, path: Path) -> None:
        """Forget that ``path`` was reported, so the next scan offers it again."""
        self.reported.get(path.parent, {}).pop(path.name, None)

    def pending_under(self, prefix: Path) -> int:
        return sum(
            1 for c in self.candidates.values() if c.root == prefix or prefix in c.root.parents
        )

    def snapshot(self, limit: int | None = None) -> list[tuple[Path, int, float, bool]]:
        """What :meth:`look` should examine: stat those still settling, read those quiet long
        enough, at most ``limit`` of them (the oldest candidates first). Quiet ones beyond the
        limit are left out entirely, neither read nor stat'ed, until there is room."""
        now = time.monotonic()
        room = len(self.candidates) if limit is None else max(0, limit)
        out = []
        for path, c in self.candidates.items():
            # An unreadable one is tried on every tick: a fix must not wait for a change.
            again = c.checked != (c.size, c.mtime) or bool(c.verdict and c.verdict.unreadable)
            quiet = now - c.since >= self.settle_seconds and again
            if quiet:
                if not room:
                    continue
                room -= 1
            out.append((path, c.size, c.mtime, quiet))
        return out

    @staticmethod
    def look(items: list[tuple[Path, int, float, bool]]) -> list[Look]:
        """Stat each candidate; check completeness of those quiet and unchanged (blocking)."""
        out: list[Look] = []
        for path, size, mtime, quiet in items:
            try:
                st = os.stat(path)
            except OSError:
                out.append((path, None, None, None))
                continue
            same = (st.st_size, st.st_mtime) == (size, mtime)
            # Empty files too: one that stays empty must reach the give-up like a cut one.
            found = verdict(path) if quiet and same else None
            out.append((path, st.st_size, st.st_mtime, found))
        return out

    def apply(self, looks: list[Look], now: float) -> list[SettledFile]:
        settled = []
        for path, size, mtime, found in sorted(looks, key=lambda x: x[0]):
            cand = self.candidates.get(path)
            if cand is None:
                continue
            if size is None or mtime is None:
                del self.candidates[path]  # gone: deleted, renamed away, or the card pulled out
                continue
            if (size, mtime) != (cand.size, cand.mtime):
                cand.size, cand.mtime, cand.since = size, mtime, now
                cand.checked = cand.verdict = None
                self._touch(path.parent, cand.root, cand.kind, now)
                continue
            if found is not None and found.complete:
                settled.append(self._settle(path, cand))
                continue
            if found is not None:
                cand.checked, cand.verdict = (size, mtime), found
            if found is not None and found.foreign:  # e.g. a camera's version.txt: not ours
                self._settle(path, cand)  # remembered as seen, handed on to no one
                continue
            reason = self._given_up(cand, now)
            if reason is not None:
                if not cand.recheck:  # the intake names it (file_set_aside): once, not twice
                    self.log.debug("file_incomplete", file=str(path), reason=reason)
                settled.append(self._settle(path, cand, reason))
                if found is not None and found.unreadable and cand.kind == "watch":
                    wait = min(RECHECK_MAX_SECONDS, 2 * cand.recheck or RECHECK_FIRST_SECONDS)
                    self.unreadable[path] = (cand, now + wait, wait)
        return settled

    def look_again(self, now: float) -> None:
        """Unreadable files due for another look become candidates again (read next tick)."""
        for path, (cand, due, wait) in list(self.unreadable.items()):
            if due > now or path in self.candidates:
                continue
            del self.unreadable[path]
            self.reported.get(path.parent, {}).pop(path.name, None)
            cand.since, cand.checked, cand.verdict = now - self.settle_seconds, None, None
            cand.recheck = wait
            self.candidates[path] = cand

    def _given_up(self, cand: _Candidate, now: float) -> str | None:
        """Why a candidate found not complete is handed on now, or None to keep waiting."""
        found = cand.verdict
        if found is None or cand.checked != (cand.size, cand.mtime):
            return None
        if found.hopeless or (cand.recheck and found.unreadable):
            return found.reason  # still unreadable on a look again: no new wait for it
        limit = self.card_give_up_seconds if cand.kind == "card" else self.give_up_seconds
        if now - cand.since < limit:
            return None
        if found.dated:
            return f"{found.reason} {now - cand.since:.0f} s after its last change"
        return found.reason

    def _settle(self, path: Path, cand: _Candidate, reason: str | None = None) -> SettledFile:
        del self.candidates[path]
        self.reported.setdefault(path.parent, {})[path.name] = (cand.size, cand.mtime)
        folder = self.folders.get(path.parent)
        if folder is not None:
            folder.settled += 1
        return SettledFile(
            path,
            cand.root,
            cand.kind,
            cand.card_id,
            cand.size,
            cand.mtime,
            complete=reason is None,
            reason=reason,
        )

    def _touch(self, folder: Path, root: Path, kind: str, now: float) -> None:
        if kind != "watch":
            return  # a card's batch ends with CardImported
        state = self.folders.get(folder)
        if state is None:
            self.folders[folder] = _Folder(root, kind, now)
        else:
            state.last_change = now

    def batches(self, now: float) -> list[BatchReady]:
        """Watched folders whose files settled and that have been quiet long enough."""
        if not self.folders:
            return []  # a card's files: no folder batches, and no walk over its candidates
        busy = {p.parent for p in self.candidates}
        ready = []
        for path, folder in list(self.folders.items()):
            if path in busy or now - folder.last_change < self.batch_quiet_seconds:
                continue
            if folder.settled:
                ready.append(BatchReady(path, folder.root, folder.settled))
            del self.folders[path]
        return ready

    def next_delay(self, now: float) -> float | None:
        """Seconds until work is due: a tick while candidates wait, a batch deadline, a look
        again at an unreadable file, or None."""
        if self.candidates:
            return TICK_SECONDS
        dues = [due for _cand, due, _wait in self.unreadable.values()]
        if self.folders:
            dues.append(
                min(f.last_change for f in self.folders.values()) + self.batch_quiet_seconds
            )
        return max(0.05, min(dues) - now) if dues else None
