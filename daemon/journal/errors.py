"""What the journal raises: one base error whose text is one line naming the journal file."""

from __future__ import annotations


class JournalError(Exception):
    """The journal cannot do what was asked; ``str(exc)`` is one line naming the file."""


class IllegalTransition(JournalError, ValueError):
    """A state change the state machine does not allow (a bug in the caller, not in the data)."""


class NotFound(JournalError, LookupError):
    """No file, sequence or upload with that key."""


class JournalGone(JournalError):
    """The journal file held open was deleted or replaced (or its folder removed) while in use:
    nothing more is written, since a restart would not find what was recorded."""
