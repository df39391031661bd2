"""Retry of a failed sequence, as the page's Retry button asks: the sequence pending again and
its failed photos back in it, in one transaction, so the uploader takes it up on its next pass.
Photos the server already holds keep their handles: nothing is sent twice."""

from __future__ import annotations

from daemon.journal import FileState, Journal, SequenceState


def retry_sequence(journal: Journal, uuid: str) -> str | None:
    """None when the sequence is pending again, else why not."""
    with journal.transaction():
        seq = journal.get_sequence(uuid)
        if seq is None:
            return "no such sequence"
        if seq.state != SequenceState.FAILED:
            return f"the sequence is {seq.state}, not failed"
        for row in journal.sequence_images(uuid):
            if row.state == FileState.FAILED:
                journal.set_file_state(row.hash, FileState.SEQUENCED)
        journal.set_sequence_state(uuid, SequenceState.PENDING)
    return None
