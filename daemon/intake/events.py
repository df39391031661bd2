"""What the sources tell the daemon: cards, settled files, ready batches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Card:
    """A camera card: where it is mounted and who it is (UUID and label when the system says)."""

    mount: Path
    card_id: str
    uuid: str | None = None
    label: str | None = None
    device: str | None = None


@dataclass(frozen=True)
class SettledFile:
    """A file that is complete and quiet, or one handed on to be set aside: ``complete`` is
    False for a file that can never be used (not a JPEG, not a GPX: at once) or that stayed
    unfinished (empty, cut off) long after its last change. ``reason`` then says why in one
    line ("empty file", "not a JPEG: no start-of-image marker", "not a GPX file: <parser
    message>", "cut off: no end-of-image marker 60 s after its last change"); None when
    complete."""

    path: Path
    root: Path
    kind: str  # "watch" (read in place) or "card" (to be copied into the spool)
    card_id: str | None
    size: int
    mtime: float
    complete: bool = True
    reason: str | None = None


@dataclass(frozen=True)
class BatchReady:
    """A watched folder had files settle and has been quiet for ``batch_quiet_seconds``."""

    folder: Path
    root: Path
    files: int


@dataclass(frozen=True)
class _CardEvent:
    card: Card

    @property
    def root(self) -> Path:
        return self.card.mount

    @property
    def card_id(self) -> str:
        return self.card.card_id


@dataclass(frozen=True)
class CardInserted(_CardEvent):
    """A card appeared under a mount root (its files follow as SettledFile events)."""


@dataclass(frozen=True)
class CardImported(_CardEvent):
    """Every file of the card has been handed on (queued before this event). ``round``
    counts the announcements of this card: one that is no longer the latest (a file was
    offered again after it was sent) says nothing any more (``Sources.still_imported``)."""

    round: int = 0


@dataclass(frozen=True)
class CardRemoved(_CardEvent):
    """The card's mount point went away or emptied: unmounted, never "deleted"."""


SourceEvent = SettledFile | BatchReady | CardInserted | CardImported | CardRemoved
