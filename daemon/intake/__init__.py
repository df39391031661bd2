"""Intake: what is seen in watched folders and on cards, settled, and copied into the spool.

events (what the sources report), scan (listing folders), complete (is a file whole?), mounts
(the mount table and card identity), watcher (the watchdog bridge), settler (complete and
quiet), roots (roots and cards, surveyed), sources (all of it as one queue), spool (the
importer: cards copied in, hashed, durably).
"""

from daemon.intake.events import (
    BatchReady,
    CardImported,
    CardInserted,
    CardRemoved,
    SettledFile,
    SourceEvent,
)
from daemon.intake.sources import Sources
from daemon.intake.spool import (
    SourceGone,
    SpoolError,
    clean_spool_temps,
    commit_staged,
    free_mb,
    import_file,
    remove_spool_file,
    stage_files,
)

__all__ = [
    "BatchReady",
    "CardImported",
    "CardInserted",
    "CardRemoved",
    "SettledFile",
    "SourceEvent",
    "SourceGone",
    "Sources",
    "SpoolError",
    "clean_spool_temps",
    "commit_staged",
    "free_mb",
    "import_file",
    "remove_spool_file",
    "stage_files",
]
