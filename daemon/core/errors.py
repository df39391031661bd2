"""Exit codes a command ends with, beyond 0 (all went well), 1 (some files were set aside or
some work failed) and 2 (a usage or configuration error)."""

from __future__ import annotations

# The journal was deleted or replaced while the daemon ran: it stopped. Not a usage error,
# and not one to restart on by itself (a new journal would upload everything again), so the
# systemd units name it in RestartPreventExitStatus.
EXIT_JOURNAL_GONE = 4
