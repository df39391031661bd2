"""Source roots as the stages see them: the daemon's own note on each, and intake's activity.

The notes are an enum; their display text is used only where the status is written, so that no
decision is ever taken by reading a string meant for a person.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum


class RootState(Enum):
    """The daemon's note on a root (beside the sources' live state); the value is what
    ``status`` shows."""

    IDLE = "idle"
    PROCESSING = "processing"
    CARD_INSERTED = "card inserted, importing"
    CARD_IMPORTED = "card imported: you may remove it"
    CARD_REMOVED = "card removed"
    CARD_PULLED = "card removed before all its files were copied: insert it again"


# Notes that say less than the sources' live state ("watching, 3 file(s) settling",
# "importing, 12 file(s) left"): where the sources know the root, theirs is shown.
_SAYS_LESS = frozenset({RootState.IDLE, RootState.CARD_INSERTED})


@dataclass
class CardSafety:
    """Whether a card may go: ``safe`` once every file on it is journaled (or set aside with
    its reason), ``trouble`` why not while copies into the spool fail."""

    safe: bool = False
    removed: bool = False
    trouble: str | None = None

    def state(self, live: str, paused: str | None) -> str:
        """The card's one-line state (``live``: what the sources say of it).

        >>> CardSafety(safe=True).state("card C: all files handed on", None)
        'card imported: you may remove it'
        >>> CardSafety(trouble="3 file(s) not copied").state("card C: scanning", None)
        '3 file(s) not copied'
        >>> CardSafety(removed=True).state("card C: card removed", None)
        'card removed before all its files were copied: insert it again'
        >>> CardSafety().state("card C: all files handed on", "card import paused: 3 MB free")
        'card import paused: 3 MB free'
        """
        if self.removed:
            return (RootState.CARD_REMOVED if self.safe else RootState.CARD_PULLED).value
        if self.safe:
            return RootState.CARD_IMPORTED.value
        return self.trouble or paused or live


def shown_states(live: Mapping[str, str], notes: Mapping[str, RootState]) -> dict[str, str]:
    """Per root, the text ``status`` shows: our note over the sources' live state (watching,
    N settling, importing N left, missing), unless ours says less.

    >>> shown_states({"/a": "watching", "/b": "watching"},
    ...              {"/a": RootState.IDLE, "/b": RootState.PROCESSING, "/c": RootState.IDLE})
    {'/a': 'watching', '/b': 'processing', '/c': 'idle'}
    """
    out = dict(live)
    for root, note in notes.items():
        if root not in live or note not in _SAYS_LESS:
            out[root] = note.value
    return out


@dataclass
class RootActivity:
    """What intake knows of each root that processing needs: when a file of it last came (a
    batch is ready once its root has been quiet long enough), and which cards are still being
    imported (their batch is not ready at all)."""

    last_file: dict[str, float] = field(default_factory=dict)  # root → time.monotonic()
    importing: set[str] = field(default_factory=set)

    def touch(self, root: str) -> None:
        self.last_file[root] = time.monotonic()

    def quiet_for(self, root: str) -> float:
        """Seconds since the last file of ``root`` came (forever, if none came this run)."""
        return time.monotonic() - self.last_file.get(root, 0.0)
