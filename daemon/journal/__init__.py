"""The journal: one SQLite file, the single source of truth of the daemon and the upload command.

It records every file seen (identity = SHA-256 of its content), the paths it was seen at, its
state and reason, the sequences cut from those files, and each upload object with every figure
needed to resume after a crash or a power cut. On start the daemon resumes from the journal alone.

Durability: WAL with ``synchronous=FULL``; every state change is one transaction, made by the
caller after the work it records is durable. Each commit costs an fsync (slow on an SD card), so
the batch methods (``add_files``, ``set_file_states``) and ``transaction()`` group many changes
into one commit; an exception inside a batch leaves nothing of it behind.

Concurrency: one writer per journal, enforced with an exclusive ``flock`` on ``<path>.lock``
beside the real file, symlinks resolved (a second daemon gets a clear error, whatever path it was
given) and SQLite's own locks with a busy timeout. ``Journal`` is synchronous and thread-safe (one
connection behind a lock); ``AsyncJournal`` runs the same calls on one dedicated thread so the
event loop never blocks. Readers (``status``) use
``Journal.open_readonly``, which works while a writer is busy.

Watched and private: ``check_in_place()`` tells (a few stats, no SQL) when the file held open
was deleted or replaced, or its folder removed, while in use, and commits then refuse with
``JournalGone``: a restart would start from another file and upload everything again. The
journal's files are created 0600 and the folders made for them 0700, whatever the umask.

The modules: ``states`` (the state machines), ``schema`` (the file, its migrations, opening it),
``rows`` (the records in and out), ``place`` (the real path, private files, the watch), ``lock``
(the writer lock), ``base`` (connection and transactions), ``files``, ``sequences``, ``uploads``,
``events`` and ``meta`` (the stores), ``summary`` (the figures of ``status``), ``store``
(``Journal``) and ``facade`` (``AsyncJournal``).
"""

from daemon.journal.errors import IllegalTransition, JournalError, JournalGone, NotFound
from daemon.journal.events import EVENTS_KEPT
from daemon.journal.facade import AsyncJournal
from daemon.journal.failures import QUARANTINE_AFTER, Failure, FileFailures, journal_trouble
from daemon.journal.meta import ASIDE_META, FAILURES_META, GPX_META, RUNTIME_META
from daemon.journal.rows import Event, FileRow, NewFile, SequenceRow, StateChange, UploadRow
from daemon.journal.schema import MIGRATIONS, SCHEMA_VERSION, default_journal_path
from daemon.journal.states import FileState, SequenceState
from daemon.journal.store import Journal

__all__ = [
    "ASIDE_META",
    "EVENTS_KEPT",
    "FAILURES_META",
    "GPX_META",
    "MIGRATIONS",
    "QUARANTINE_AFTER",
    "RUNTIME_META",
    "SCHEMA_VERSION",
    "AsyncJournal",
    "Event",
    "Failure",
    "FileFailures",
    "FileRow",
    "FileState",
    "IllegalTransition",
    "Journal",
    "JournalError",
    "JournalGone",
    "NewFile",
    "NotFound",
    "SequenceRow",
    "SequenceState",
    "StateChange",
    "UploadRow",
    "default_journal_path",
    "journal_trouble",
]
