"""The records the journal takes and gives back, and how they map to and from SQLite rows.

Paths are stored as text, or as raw bytes when a name is not valid UTF-8 (a card written by
another system), so every name comes back exactly as it was seen.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from daemon.journal.states import FileState, SequenceState


@dataclass(frozen=True)
class NewFile:
    """A file to record. ``path`` is where it was seen; ``spool_path`` the copy we own, if any.

    ``source_kind`` is "card", "watch" or "cli"; ``source_root`` the watch folder or card mount.
    ``metadata`` must be JSON-serialisable (capture time as an ISO string, lat, lon, ...).
    """

    hash: str
    path: str | os.PathLike[str]
    source_kind: str
    source_root: str | os.PathLike[str]
    size: int
    mtime: float
    spool_path: str | os.PathLike[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    state: FileState = FileState.IMPORTED


@dataclass(frozen=True)
class FileRow:
    """A file as recorded. ``paths`` lists every path it was seen at, oldest first."""

    hash: str
    state: FileState
    reason: str | None
    source_kind: str
    source_root: str
    spool_path: str | None
    size: int
    mtime: float
    metadata: dict[str, Any]
    sequence_id: str | None
    seq_index: int | None
    handle: str | None
    created_at: float
    updated_at: float
    paths: tuple[str, ...]

    @property
    def readable_path(self) -> str:
        """Where to read its bytes: our spool copy if there is one, else where it was seen."""
        return self.spool_path or self.paths[0]


@dataclass(frozen=True)
class StateChange:
    """One entry of ``set_file_states``; ``fields`` as in ``set_file_state``."""

    hash: str
    state: FileState
    reason: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SequenceRow:
    uuid: str
    state: SequenceState
    reason: str | None
    source_root: str | None
    cluster_id: str | None
    manifest_key: str | None
    manifest_handle: str | None
    created_at: float
    finished_at: float | None
    image_count: int


@dataclass(frozen=True)
class UploadRow:
    """One upload object: ``key`` is the session key ``mly_tools_<md5>.jpg``; ``handle`` is set
    once the server holds all of it."""

    file_hash: str
    key: str
    md5: str
    size: int
    handle: str | None
    updated_at: float


@dataclass(frozen=True)
class Event:
    id: int
    at: float
    kind: str
    message: str
    file_hash: str | None


# -- values ---------------------------------------------------------------------------------------


def path_value(path: str | os.PathLike[str] | None) -> str | bytes | None:
    """A path as SQLite can store it: text, or raw bytes for names that are not valid UTF-8."""
    if path is None:
        return None
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text)
    return text


@overload
def path_text(value: str | bytes) -> str: ...
@overload
def path_text(value: None) -> None: ...
@overload
def path_text(value: str | bytes | None) -> str | None: ...
def path_text(value: str | bytes | None) -> str | None:
    """A stored path as the program's text (the inverse of ``path_value``)."""
    return os.fsdecode(value) if isinstance(value, bytes) else value


def dump(value: Any) -> str:
    """JSON as stored: compact, keys sorted (equal values give equal text)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# -- rows -----------------------------------------------------------------------------------------

FILE_SELECT = (
    "SELECT f.hash, f.state, f.reason, f.source_kind, f.source_root, f.spool_path, f.size, "
    "f.mtime, f.metadata, f.sequence_id, f.seq_index, f.handle, f.created_at, f.updated_at "
    "FROM files f"
)
SEQUENCE_SELECT = (
    "SELECT s.uuid, s.state, s.reason, s.source_root, s.cluster_id, s.manifest_key, "
    "s.manifest_handle, s.created_at, s.finished_at, "
    "(SELECT count(*) FROM files WHERE sequence_id = s.uuid) FROM sequences s"
)
UPLOAD_SELECT = "SELECT u.file_hash, u.key, u.md5, u.size, u.handle, u.updated_at FROM uploads u"
EVENT_SELECT = "SELECT id, at, kind, message, file_hash FROM events"


def file_row(row: Sequence[Any], paths: Sequence[str]) -> FileRow:
    """A FILE_SELECT row with the paths the file was seen at."""
    return FileRow(
        hash=row[0],
        state=FileState(row[1]),
        reason=row[2],
        source_kind=row[3],
        source_root=path_text(row[4]),
        spool_path=path_text(row[5]),
        size=row[6],
        mtime=row[7],
        metadata=json.loads(row[8]),
        sequence_id=row[9],
        seq_index=row[10],
        handle=row[11],
        created_at=row[12],
        updated_at=row[13],
        paths=tuple(paths),
    )


def sequence_row(row: Sequence[Any]) -> SequenceRow:
    """A SEQUENCE_SELECT row."""
    return SequenceRow(
        uuid=row[0],
        state=SequenceState(row[1]),
        reason=row[2],
        source_root=path_text(row[3]),
        cluster_id=row[4],
        manifest_key=row[5],
        manifest_handle=row[6],
        created_at=row[7],
        finished_at=row[8],
        image_count=row[9],
    )


def upload_row(row: Sequence[Any]) -> UploadRow:
    """An UPLOAD_SELECT row."""
    return UploadRow(*row)


def event_row(row: Sequence[Any]) -> Event:
    """An EVENT_SELECT row."""
    return Event(*row)
