"""The failures a command tells the user in one line, each with the exit code it ends with.

Exit codes everywhere: 0 all went well, 1 some files were set aside or some work failed,
2 a usage or configuration error, 3 could not finish (the journal or the spool failed: I/O),
4 the journal was deleted or replaced while the daemon ran,
130 interrupted (Ctrl-C). ``daemon.cli`` prints any
:class:`DaemonError` that reaches it as ``mapillary-daemon COMMAND: error: MESSAGE`` and exits
with its ``exit_code``.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_SET_ASIDE = 1
EXIT_USAGE = 2
EXIT_IO = 3  # could not finish: the journal or the spool could not be read or written
# The journal was deleted or replaced while the daemon ran: it stopped. Not a usage error,
# and not one to restart on by itself (a new journal would upload everything again), so the
# systemd units name it in RestartPreventExitStatus.
EXIT_JOURNAL_GONE = 4
EXIT_INTERRUPTED = 130


class DaemonError(Exception):
    """A failure the user can act on; ``str(exc)`` is one line saying what is wrong."""

    exit_code = EXIT_USAGE


class UsageError(DaemonError):
    """A bad argument or setting found after parsing."""


class ConfigError(UsageError):
    """A bad configuration: one line naming the source, the key and what is wrong."""


class TokenStoreError(DaemonError):
    """The token file cannot be read or written; the message names the file."""
