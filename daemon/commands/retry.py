"""`retry`: queue failed sequences again, also while the daemon runs.

With no daemon running, `retry` opens the journal as its one writer and queues them itself.
While a daemon holds the journal, `retry` only leaves a request in it
(``journal.sequences.request_retry``) which the daemon's upload stage takes on its next
periodic check and applies with its own writer, as the status page's Retry is.

That request is the one write a second process makes to a journal a daemon holds, against the
one-writer rule of DESIGN.md; it is safe, and cheaper than a side channel (a request file the
daemon would have to poll, clean up after a crash and keep private), because:
- the journal is in WAL mode: SQLite itself serialises writers; the request is one
  ``BEGIN IMMEDIATE`` transaction (one upsert, milliseconds), so the daemon's next write waits
  at most that long, well inside its busy timeout, and readers are never blocked;
- it touches one settings row that nothing else writes and only ``take_retry_requests``
  reads and clears, in the daemon's own transaction: no row the daemon caches or the state
  machines guard is changed behind its back, and a request merged into one still pending
  (uuids, or "all") loses neither;
- it is committed with ``synchronous=FULL`` like every journal write: once `retry` has said
  so, the request survives a power cut, and a daemon that stops before taking it takes it when
  it starts again.
"""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path

from daemon.commands.common import add_command, add_config_flag
from daemon.core import config
from daemon.core.errors import EXIT_IO, EXIT_OK, DaemonError, UsageError
from daemon.journal import Journal, JournalError, SequenceState
from daemon.journal.sequences import request_retry

EPILOG = """\
examples:
  mapillary-daemon retry --all
  mapillary-daemon retry 55035e00-4afe-57ef-b9d4-bf5bf0916afe

`status` lists the failed sequences with their reason and next try. Failed sequences are also
tried again by themselves, after growing delays (retry_failed_after, doubled each time).
A running daemon takes the request on its next periodic check (within half a minute)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "retry",
        "queue failed sequences for upload again",
        "Queue the named failed sequences (or --all of them) for upload again.",
        EPILOG,
    )
    p.add_argument("sequences", nargs="*", metavar="SEQUENCE", help="failed sequence uuids")
    p.add_argument("--all", action="store_true", help="every failed sequence")
    p.add_argument("--journal", type=Path, help="journal file (default: from the configuration)")
    add_config_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if bool(args.sequences) == bool(args.all):
        raise UsageError("name the failed sequences to retry, or give --all")
    settings = config.load(args.config)
    path = args.journal or settings.journal_path
    if not path.exists():
        raise UsageError(f"no journal at {path}")
    wanted = None if args.all else list(args.sequences)
    try:
        journal = Journal.open(path, busy_timeout=1.0)
    except JournalError as exc:
        if "locked by another process" not in str(exc):
            raise UsageError(str(exc)) from None
        _check_known(path, wanted)
        try:
            request_retry(path, wanted)
        except sqlite3.Error as exc:
            raise JournalUnwritable(f"{path}: cannot leave the retry request: {exc}") from None
        print("asked the running daemon to retry " + _what(wanted))
        return EXIT_OK
    with journal:
        _check_known_in(journal, wanted)
        done = journal.retry_sequences(wanted)
    print(f"queued {len(done)} failed sequence{'' if len(done) == 1 else 's'} again")
    return EXIT_OK


class JournalUnwritable(DaemonError):
    exit_code = EXIT_IO


def _what(wanted: list[str] | None) -> str:
    return "every failed sequence" if wanted is None else ", ".join(wanted)


def _check_known(path: Path, wanted: list[str] | None) -> None:
    journal = Journal.open_readonly(path)
    try:
        _check_known_in(journal, wanted)
    finally:
        journal.close()


def _check_known_in(journal: Journal, wanted: list[str] | None) -> None:
    """A name that is no failed sequence is a usage error: say which (a typo, or finished)."""
    failed = {r.uuid for r in journal.sequences_in_state(SequenceState.FAILED)}
    unknown = [u for u in wanted or [] if u not in failed]
    if unknown:
        raise UsageError("not a failed sequence: " + ", ".join(unknown))
