"""Queue described photos of a folder into the journal as sequences, for the `upload` command.

Two ways a folder can be described: a description file (ours from `process`, or mapillary_tools'
``mapillary_image_description.json``), or a Mapillary description in each photo's EXIF
ImageDescription (from `add-tags` or the Mapillary apps). Whatever the way, the journal decides:
a photo already queued or uploaded (same content hash) is never queued again.
"""

from __future__ import annotations

import json
import uuid as uuidlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.core.files import is_photo, walk
from daemon.core.hashing import hash_file
from daemon.journal import FileState, Journal, NewFile, StateChange
from daemon.media import exif
from daemon.pipeline.describe import DESCRIPTION_FILE, read_description_file, validate_description
from daemon.pipeline.records import DUPLICATE

SKIP_DIRS = ("duplicates", "errors")
# Sequence ids we derive are stable for the same images, so a rerun finds its own sequence.
_NAMESPACE = uuidlib.UUID("6f2b1f0e-4c7a-4d3e-9a51-6d2f3c1b7a90")


@dataclass
class Described:
    """One photo ready to upload: its file, its description and the sequence it belongs to."""

    path: Path
    description: dict[str, Any]
    sequence: str


@dataclass
class Collected:
    photos: list[Described] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (file, reason)


def _from_description_file(folder: Path, desc_file: Path, out: Collected) -> set[Path]:
    """Reads the file's photos into ``out``; returns every photo it names (also set aside)."""
    named: set[Path] = set()
    try:
        entries = read_description_file(desc_file)
    except ValueError as exc:
        out.skipped.append((desc_file, str(exc)))
        return named
    for entry in entries:
        path = Path(entry["filename"])
        path = path if path.is_absolute() else folder / path
        named.add(path)
        if "error" in entry:
            error = entry["error"]
            if isinstance(error, dict) and error.get("type") == DUPLICATE:
                continue  # a duplicate is left out on purpose: never a problem of the upload
            reason = error.get("message") if isinstance(error, dict) else None
            out.skipped.append((path, f"set aside by process: {reason or entry['error']}"))
            continue
        desc = {k: v for k, v in entry.items() if k.startswith("MAP")}
        # A description file names its sequences only within itself (mapillary_tools writes
        # "0", "1", ... in every folder), so the folder is part of the sequence's identity.
        _add(path, desc, f"folder:{folder}", out, scope=f"file:{desc_file}|")
    return named


def _from_exif(folder: Path, files: list[Path], out: Collected) -> None:
    for path in files:
        try:
            text = exif.read_exif(path).description
        except (OSError, exif.MediaError) as exc:
            out.skipped.append((path, f"cannot read EXIF: {exc}"))
            continue
        try:
            desc = json.loads(text) if text else None
        except json.JSONDecodeError:
            desc = None
        if not isinstance(desc, dict):
            out.skipped.append((path, "no Mapillary description (run process or add-tags first)"))
            continue
        _add(path, desc, f"folder:{folder}", out)


def _add(
    path: Path, desc: dict[str, Any], fallback_seq: str, out: Collected, scope: str = ""
) -> None:
    problem = validate_description(desc)
    if problem:
        out.skipped.append((path, f"invalid description: {problem}"))
        return
    desc.setdefault("MAPFilename", path.name)
    seq = desc.get("MAPSequenceUUID")
    out.photos.append(Described(path, desc, f"{scope}{seq}" if seq else fallback_seq))


def collect(root: Path, subfolders: bool = False) -> Collected:
    """Described photos under ``root`` (and its subfolders when asked), folder by folder."""
    out = Collected()
    listings = walk(root, is_photo, skip_names=SKIP_DIRS, recursive=subfolders, linked_folders=True)
    covered: set[Path] = set()  # named by a parent's description file (process after a split)
    for folder, entries in sorted(listings, key=lambda listing: listing[0]):
        files = sorted(p for e in entries if (p := folder / e.name) not in covered)
        desc_file = folder / DESCRIPTION_FILE
        if desc_file.exists():
            covered |= _from_description_file(folder, desc_file, out)
        elif files:
            _from_exif(folder, files, out)
    return out


def sequence_id(label: str, hashes: list[str]) -> str:
    """A stable sequence uuid for these images under this label.

    >>> sequence_id("a", ["h1", "h2"]) == sequence_id("a", ["h1", "h2"]) != sequence_id("a", ["h1"])
    True
    """
    return str(uuidlib.uuid5(_NAMESPACE, f"{label}|{','.join(hashes)}"))


@dataclass
class Queued:
    sequences: list[str]  # sequence uuids created now or found again
    already_done: list[tuple[Path, str]]  # (file, what the journal says)
    unreadable: list[tuple[Path, str]]
    resumed: list[str] = field(default_factory=list)  # unfinished sequences queued earlier


def queue(journal: Journal, root: Path, photos: list[Described]) -> Queued:
    """Hash the photos and record them as sequences, in one transaction per folder scan."""
    result = Queued([], [], [])
    hashed: list[tuple[Described, str, int, float]] = []
    for photo in photos:
        try:
            digest, size = hash_file(photo.path)
            mtime = photo.path.stat().st_mtime
        except OSError as exc:
            result.unreadable.append((photo.path, exc.strerror or str(exc)))
            continue
        hashed.append((photo, digest, size, mtime))
    groups: dict[str, list[tuple[Described, str]]] = defaultdict(list)
    with journal.transaction():
        entries = [
            NewFile(d, p.path, "cli", root, size, mtime, metadata={"filename": p.path.name})
            for p, d, size, mtime in hashed
        ]
        journal.add_files(entries)
        seen: set[str] = set()
        for photo, digest, _, _ in hashed:
            row = journal.get_file(digest)
            assert row is not None
            if digest in seen:
                result.already_done.append((photo.path, "same photo as another file here"))
                continue
            seen.add(digest)
            if row.state in (
                FileState.IMPORTED,
                FileState.DESCRIBED,
                FileState.REJECTED,
                FileState.DUPLICATE,
                FileState.WAITING_FOR_POSITION,
            ):
                groups[photo.sequence].append((photo, digest))
            elif (
                row.state in (FileState.SEQUENCED, FileState.UPLOADED, FileState.FAILED)
                and row.sequence_id
            ):
                # Queued by an earlier run (perhaps of a parent folder) and not finished: the
                # command resumes the sequence, or says why it failed.
                if row.sequence_id not in result.resumed:
                    result.resumed.append(row.sequence_id)
            else:
                result.already_done.append((photo.path, f"already {row.state}"))
        for label, members in groups.items():
            members.sort(key=lambda m: (m[0].description.get("MAPCaptureTime", ""), m[0].path.name))
            hashes = [d for _, d in members]
            uuid = sequence_id(label, hashes)
            if journal.get_sequence(uuid) is not None:
                # These very photos were queued as this sequence before and the uploader left
                # them out (unreadable, changed): report that sequence, do not queue them again.
                if uuid not in result.resumed:
                    result.resumed.append(uuid)
                continue
            changes = []
            for photo, digest in members:
                row = journal.get_file(digest)
                assert row is not None
                if row.state in (FileState.REJECTED, FileState.DUPLICATE):
                    changes.append(StateChange(digest, FileState.IMPORTED))
                meta = {"description": photo.description, "filename": photo.path.name}
                changes.append(StateChange(digest, FileState.DESCRIBED, None, {"metadata": meta}))
            journal.set_file_states(changes)
            journal.create_sequence(uuid, hashes, source_root=root)
            result.sequences.append(uuid)
    return result
