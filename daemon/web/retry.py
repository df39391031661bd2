"""Retry of a failed sequence, as the page's Retry button asks: the journal's own retry (the one
`mapillary-daemon retry` uses), so the uploader takes it up on its next pass. Photos the server
already holds keep their handles: nothing is sent twice."""

from __future__ import annotations

from daemon.journal import Journal, SequenceState


def retry_sequence(journal: Journal, uuid: str) -> str | None:
    """None when the sequence is pending again, else why not."""
    seq = journal.get_sequence(uuid)
    if seq is None:
        return "no such sequence"
    if seq.state != SequenceState.FAILED:
        return f"the sequence is {seq.state}, not failed"
    if not journal.retry_sequences([uuid]):
        return "the sequence is no longer failed"
    return None
