"""The roots the sources look at, and the cards found under mount roots.

A root is a watch folder (read in place, watched whole) or a mount root (``/media``, where
cards appear). Each poll surveys the mount table and the roots (:func:`mounts.survey`); from
what changed, roots are watched again, folders marked for a rescan, and cards announced as
inserted, imported (every file handed on) or removed. An empty or vanished mount point means
"unmounted", never "deleted". A root is known by its real path; the path as configured is
surveyed, so one that is (or becomes) a symlink re-pointed elsewhere is followed there.
"""

from __future__ import annotations

import asyncio
import enum
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from daemon.core import log
from daemon.intake.events import Card, CardImported, CardInserted, CardRemoved, SourceEvent
from daemon.intake.mounts import Identity, Mount, folder_identity, identify_card, parse_mountinfo
from daemon.intake.mounts import survey as survey_mounts
from daemon.intake.settler import Settler
from daemon.intake.watcher import Watcher

Owner = tuple[Path, str, str | None]  # the watch root or card holding a path: folder, kind, id


class RootState(enum.Enum):
    """Where a root stands; the value is what ``status`` shows."""

    STARTING = "starting"
    SCANNING = "scanning"
    WATCHING = "watching"
    WAITING_FOR_CARDS = "waiting for cards"
    WATCH_MISSING = "missing (not mounted?)"
    MOUNTS_MISSING = "missing, waiting for it to appear"


@dataclass
class CardState:
    card: Card
    mount_id: int | None
    identity: Identity | None
    scanned: bool = False
    announced: bool = False
    round: int = 0  # of CardImported: a new one once files are pending again after it


@dataclass
class Root:
    path: Path  # the real path (symlinks resolved): the key, watched and scanned
    kind: str  # "watch" (a folder read in place) or "mounts" (a folder where cards appear)
    given: Path | None = None  # as configured (absolute): a symlink, or ``path`` itself
    identity: Identity | None = None
    state: RootState = RootState.STARTING
    cards: dict[Path, CardState] = field(default_factory=dict)
    removed: dict[Path, Card] = field(default_factory=dict)

    @property
    def surveyed(self) -> Path:
        """Where to look: a watch folder as configured (a symlink there may be re-pointed), a
        mount root at its real path (cards are found and known under it)."""
        return (self.given or self.path) if self.kind == "watch" else self.path


def _under(path: Path, prefix: Path) -> bool:
    return path == prefix or prefix in path.parents


class Rescans:
    """Folders to list again (folder → recursively?); marking one wakes the settle loop."""

    def __init__(self, wake: asyncio.Event) -> None:
        self.folders: dict[Path, bool] = {}
        self._wake = wake

    def __bool__(self) -> bool:
        return bool(self.folders)

    def mark(self, folder: Path, recursive: bool) -> None:
        self.folders[folder] = self.folders.get(folder, False) or recursive
        self._wake.set()

    def take(self) -> dict[Path, bool]:
        taken, self.folders = self.folders, {}
        return taken

    def busy_under(self, prefix: Path) -> bool:
        return any(_under(p, prefix) for p in self.folders)

    def drop_under(self, prefix: Path) -> None:
        for p in [p for p in self.folders if _under(p, prefix)]:
            del self.folders[p]


class Roots:
    """Every root and card, kept up to date by :meth:`check`; events go to ``emit``."""

    def __init__(
        self, settler: Settler, rescans: Rescans, emit: Callable[[SourceEvent], None]
    ) -> None:
        self.settler = settler
        self.rescans = rescans
        self.emit = emit
        self.watcher: Watcher | None = None  # set once the loop runs (Sources.start)
        self._roots: dict[Path, Root] = {}
        self._mountinfo: str | None = None
        self._mounts: dict[str, Mount] = {}
        self._lock = asyncio.Lock()
        self.log = log.get("sources")

    def add(self, path: Path, kind: str, given: Path | None = None) -> bool:
        """A new root at its real ``path``, configured as ``given`` (False when it is one
        already)."""
        if path in self._roots:
            return False
        self._roots[path] = Root(path, kind, given)
        return True

    def find(self, path: Path) -> Path | None:
        """The real path of the root configured or known as ``path``."""
        if path in self._roots:
            return path
        return next((r.path for r in self._roots.values() if r.given == path), None)

    def missing(self) -> set[str]:
        """The roots that are not there right now."""
        gone = (RootState.WATCH_MISSING, RootState.MOUNTS_MISSING)
        return {str(root.path) for root in self._roots.values() if root.state in gone}

    def remove(self, path: Path) -> Root | None:
        root = self._roots.pop(path, None)
        if root is None:
            return None
        for mount in list(root.cards):
            self._drop_card(root, mount, announce=False)
        if self.watcher is not None:
            self.watcher.unwatch(root.path)
        self.settler.forget(root.path)
        self.rescans.drop_under(root.path)
        return root

    def owner(self, path: Path) -> Owner | None:
        """The watch root or card holding ``path``."""
        for root in self._roots.values():
            if root.kind == "watch" and _under(path, root.path):
                return root.path, "watch", None
            for mount, entry in root.cards.items():
                if _under(path, mount):
                    return mount, "card", entry.card.card_id
        return None

    def under_mount_root(self, path: Path) -> bool:
        return any(r.kind == "mounts" and r.path in path.parents for r in self._roots.values())

    def present_watch_roots(self) -> list[Path]:
        present = [r for r in self._roots.values() if r.identity is not None]
        return [r.path for r in present if r.kind == "watch"]

    def scanned(self, folder: Path) -> None:
        """A whole scan of ``folder`` is done: a watch root is now watched, a card scanned."""
        for root in self._roots.values():
            if root.kind == "watch" and root.path == folder and root.state is RootState.SCANNING:
                root.state = RootState.WATCHING
            entry = root.cards.get(folder)
            if entry is not None:
                entry.scanned = True

    # -- the survey ---------------------------------------------------------------------------

    async def check(self) -> None:
        async with self._lock:  # the poll, a hint and add_root may all ask at once
            await self._check_locked()

    async def _check_locked(self) -> None:
        roots = [(r.surveyed, r.kind) for r in self._roots.values()]
        cards = [m for r in self._roots.values() for m in r.cards]
        survey = await asyncio.to_thread(survey_mounts, roots, cards)
        if survey.mountinfo != self._mountinfo:
            self._mountinfo = survey.mountinfo
            self._mounts = parse_mountinfo(survey.mountinfo or "")
        for root in list(self._roots.values()):
            if root.surveyed in survey.identities:
                identity = survey.identities[root.surveyed]
                followed = await self._follow(root) if identity != root.identity else root
                if followed is not None:
                    self._update_root(followed, identity)
            if root.kind == "mounts":
                present = survey.cards.get(root.path, set())
                await self._update_cards(root, present, survey.card_ids)
        self.announce_cards()

    async def _follow(self, root: Root) -> Root | None:
        """Another folder is at the root's configured path: if the path now leads elsewhere (a
        symlink made or re-pointed), the root moves there and its old real path is let go
        (None: it leads to another root, which stays)."""
        target = Path(await asyncio.to_thread(os.path.realpath, root.surveyed))
        if target == root.path:
            return root
        self.remove(root.path)
        if target in self._roots:
            self.log.info("root_moved", root=str(root.given), was=str(root.path), now=str(target))
            return None
        moved = Root(target, root.kind, root.given or root.path)
        self._roots[target] = moved
        self.log.info("root_moved", root=str(moved.given), was=str(root.path), now=str(target))
        return moved

    def _update_root(self, root: Root, identity: Identity | None) -> None:
        assert self.watcher is not None
        if identity == root.identity and (identity is None or self.watcher.watching(root.path)):
            if identity is None and root.state is RootState.STARTING:
                self._root_missing(root)
            return
        root.identity = identity
        if identity is None:
            self._root_missing(root)
            return
        # Appeared, or replaced (unmounted and mounted again): the old watch is dead.
        recursive = root.kind == "watch"
        if not self.watcher.watch(root.path, recursive=recursive):
            root.identity = None
            return
        if recursive:
            root.state = RootState.SCANNING
            self.rescans.mark(root.path, True)
        else:
            root.state = RootState.WAITING_FOR_CARDS
        self.log.info("root_watched", root=str(root.path), kind=root.kind)

    def _root_missing(self, root: Root) -> None:
        assert self.watcher is not None
        self.watcher.unwatch(root.path)
        if root.kind == "watch":
            root.state = RootState.WATCH_MISSING
            self.settler.drop_candidates(root.path)  # unreadable now; what was reported stays
            self.log.warning("watch_root_missing", root=str(root.path))
        else:
            root.state = RootState.MOUNTS_MISSING

    async def _update_cards(
        self, root: Root, present: set[Path], card_ids: dict[Path, Identity | None]
    ) -> None:
        for mount in list(root.cards):
            entry = root.cards[mount]
            table = self._mounts.get(str(mount))
            remounted = entry.mount_id is not None and (
                table is None or table.mount_id != entry.mount_id
            )
            gone = mount in card_ids and card_ids[mount] != entry.identity
            if mount not in present or gone or remounted:
                self._drop_card(root, mount, announce=True)
        for mount in sorted(present - root.cards.keys()):
            await self._add_card(root, mount)

    async def _add_card(self, root: Root, mount: Path) -> None:
        assert self.watcher is not None
        card, identity = await asyncio.to_thread(
            lambda: (identify_card(mount, self._mounts), folder_identity(mount))
        )
        entry = self._mounts.get(str(mount))
        root.cards[mount] = CardState(card, entry.mount_id if entry else None, identity)
        root.removed.pop(mount, None)
        self.watcher.watch(mount, recursive=True)  # before the scan: nothing slips between
        self.emit(CardInserted(card))
        self.log.info("card_found", root=str(mount), card=card.card_id, label=card.label)
        self.rescans.mark(mount, True)

    def _drop_card(self, root: Root, mount: Path, announce: bool) -> None:
        entry = root.cards.pop(mount)
        if self.watcher is not None:
            self.watcher.unwatch(mount)
        # Unmounted, not deleted: forget what we reported, so a reinserted card is offered
        # again in full (the journal knows which files it already has).
        self.settler.forget(mount)
        self.rescans.drop_under(mount)
        if announce:
            root.removed[mount] = entry.card
            self.emit(CardRemoved(entry.card))
            self.log.info("card_removed", root=str(mount), card=entry.card.card_id)

    def announce_cards(self) -> None:
        """CardImported for each card scanned whole with nothing left to hand on."""
        for root in self._roots.values():
            for mount, entry in root.cards.items():
                busy = self.settler.pending_under(mount) or self.rescans.busy_under(mount)
                if busy:
                    self._unannounce(entry)
                elif entry.scanned and not entry.announced:
                    entry.announced = True
                    self.emit(CardImported(entry.card, entry.round))

    @staticmethod
    def _unannounce(entry: CardState) -> None:
        if entry.announced:
            entry.round += 1  # the CardImported sent (maybe not yet taken) is out of date
        entry.announced = False

    def offered_again(self, path: Path) -> None:
        """A file of a card goes back to be offered again: the card is not imported until
        it is handed on anew (or found gone), and then announced again."""
        for root in self._roots.values():
            for mount, entry in root.cards.items():
                if _under(path, mount):
                    self._unannounce(entry)

    def still_imported(self, event: CardImported) -> bool:
        """Whether ``event`` is the card's latest word: nothing was offered again since."""
        for root in self._roots.values():
            entry = root.cards.get(event.root)
            if entry is not None:
                return entry.announced and entry.round == event.round
        return False

    # -- what status shows --------------------------------------------------------------------

    def status(self, polling: str = "") -> dict[str, str]:
        """Root or card → its state in words; ``polling`` is added to roots present."""
        out: dict[str, str] = {}
        for root in self._roots.values():
            state = root.state.value
            pending = self.settler.pending_under(root.path)
            if root.kind == "watch" and root.state is RootState.WATCHING and pending:
                state = f"watching, {pending} file(s) settling"
            out[str(root.path)] = state + (polling if root.identity else "")
            for mount, card in root.removed.items():
                out[str(mount)] = f"card {card.card_id}: card removed"
            for mount, entry in root.cards.items():
                out[str(mount)] = f"card {entry.card.card_id}: {self._card_state(entry)}"
        return out

    def _card_state(self, entry: CardState) -> str:
        if not entry.scanned:
            return "scanning"
        left = self.settler.pending_under(entry.card.mount)
        return f"importing, {left} file(s) left" if left else "all files handed on"
