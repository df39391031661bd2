"""The journal's side of "why do photos wait": photos imported but not processed yet (per
root), photos waiting for a position (and the capture times they span), and the images of
pending sequences the server does not hold yet (those past their upload delay and those not)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from daemon.journal.base import JournalBase
from daemon.journal.rows import path_text
from daemon.journal.states import FileState, SequenceState


@dataclass
class WaitingFigures:
    imported: dict[str, int] = field(default_factory=dict)  # root → photos not processed yet
    for_position: int = 0
    position_span: tuple[str, str] | None = None  # first and last capture time (ISO), if known
    to_send: int = 0  # images of pending sequences past their upload delay, not sent yet
    delayed: int = 0  # ... of pending sequences still within their upload delay


class WaitingStore(JournalBase):
    def waiting_figures(self, upload_delay: float, now: float | None = None) -> WaitingFigures:
        """What waits where; see ``WaitingFigures``. Images waiting for their source (a
        reason on a sequenced image) are left to ``status``'s own line about them."""
        now = time.time() if now is None else now
        out = WaitingFigures()
        imported = self._read(
            "SELECT source_root, count(*) FROM files WHERE state = ? GROUP BY source_root",
            (str(FileState.IMPORTED),),
        )
        out.imported = {path_text(root): n for root, n in imported}
        n, first, last = self._read(
            "SELECT count(*), min(json_extract(metadata, '$.capture_time')), "
            "max(json_extract(metadata, '$.capture_time')) FROM files WHERE state = ?",
            (str(FileState.WAITING_FOR_POSITION),),
        )[0]
        out.for_position = n
        out.position_span = (first, last) if first and last else None
        for due, count in self._read(
            "SELECT s.created_at <= ?, count(*) FROM files f "
            "JOIN sequences s ON s.uuid = f.sequence_id "
            "WHERE f.state = ? AND f.reason IS NULL AND s.state = ? GROUP BY 1",
            (now - upload_delay, str(FileState.SEQUENCED), str(SequenceState.PENDING)),
        ):
            if due:
                out.to_send = count
            else:
                out.delayed = count
        return out
