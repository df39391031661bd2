"""The states of an image and of a sequence, and the moves allowed between them."""

from __future__ import annotations

from enum import StrEnum

from daemon.journal.errors import IllegalTransition


class FileState(StrEnum):
    """Where an image is on its way; stored as the string value."""

    DISCOVERED = "discovered"
    IMPORTED = "imported"
    DESCRIBED = "described"
    WAITING_FOR_POSITION = "waiting_for_position"
    REJECTED = "rejected"
    SEQUENCED = "sequenced"
    DUPLICATE = "duplicate"
    UPLOADED = "uploaded"
    FINISHED = "finished"
    FAILED = "failed"


class SequenceState(StrEnum):
    """A sequence is pending until its cluster id is recorded; failed keeps it for a user retry."""

    PENDING = "pending"
    FINISHED = "finished"
    FAILED = "failed"


_F = FileState
# Forward moves of the flow, plus the ways back a user retry takes (rejected, failed, duplicate
# and waiting images can be processed again from `imported`; a failed image can be re-queued).
# A sequenced image that can no longer be read as it was hashed is rejected: its sequence goes up
# without it.
TRANSITIONS: dict[FileState, frozenset[FileState]] = {
    _F.DISCOVERED: frozenset({_F.IMPORTED, _F.REJECTED}),
    _F.IMPORTED: frozenset({_F.DESCRIBED, _F.WAITING_FOR_POSITION, _F.REJECTED}),
    _F.WAITING_FOR_POSITION: frozenset({_F.DESCRIBED, _F.REJECTED, _F.IMPORTED}),
    _F.DESCRIBED: frozenset({_F.SEQUENCED, _F.DUPLICATE, _F.REJECTED, _F.IMPORTED}),
    _F.REJECTED: frozenset({_F.IMPORTED}),
    _F.DUPLICATE: frozenset({_F.IMPORTED}),
    _F.SEQUENCED: frozenset({_F.UPLOADED, _F.FAILED, _F.REJECTED}),
    _F.UPLOADED: frozenset({_F.FINISHED, _F.FAILED}),
    _F.FINISHED: frozenset(),
    _F.FAILED: frozenset({_F.SEQUENCED, _F.IMPORTED}),
}
NEEDS_REASON = frozenset({_F.REJECTED, _F.FAILED})
SEQUENCE_TRANSITIONS: dict[SequenceState, frozenset[SequenceState]] = {
    SequenceState.PENDING: frozenset({SequenceState.FINISHED, SequenceState.FAILED}),
    SequenceState.FAILED: frozenset({SequenceState.PENDING}),
    SequenceState.FINISHED: frozenset(),
}


def check_transition(old: FileState, new: FileState) -> None:
    """Raise IllegalTransition unless ``old → new`` is allowed (staying put always is).

    >>> check_transition(FileState.IMPORTED, FileState.DESCRIBED)
    >>> check_transition(FileState.FINISHED, FileState.IMPORTED)
    Traceback (most recent call last):
    ...
    daemon.journal.errors.IllegalTransition: illegal state change finished → imported
    """
    if old != new and new not in TRANSITIONS[old]:
        raise IllegalTransition(f"illegal state change {old} → {new}")


def check_sequence_transition(old: SequenceState, new: SequenceState) -> None:
    """Raise IllegalTransition unless a sequence may go from ``old`` to ``new``.

    >>> check_sequence_transition(SequenceState.FAILED, SequenceState.PENDING)
    >>> check_sequence_transition(SequenceState.FINISHED, SequenceState.PENDING)
    Traceback (most recent call last):
    ...
    daemon.journal.errors.IllegalTransition: illegal sequence state change finished → pending
    """
    if old != new and new not in SEQUENCE_TRANSITIONS[old]:
        raise IllegalTransition(f"illegal sequence state change {old} → {new}")
