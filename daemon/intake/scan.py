"""Listing watched folders and cards: the photos and tracks in them, with size and mtime.

A scan is the truth behind file events; these run in a thread (they block on the disk). The
walking itself is :func:`daemon.core.files.walk`, shared with the one-shot commands.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection
from pathlib import Path

from daemon.core.files import is_photo_or_track, walk

Entry = tuple[str, int, float]  # name, size, mtime
FolderListing = tuple[Path, list[Entry] | None]  # None: the folder is gone


def hidden_below(path: Path, root: Path) -> bool:
    """Whether a folder or file between ``root`` and ``path`` is a dotfile (``.thumbnails``)."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return False
    return any(part.startswith(".") for part in parts)


def _sized(files: list[os.DirEntry[str]]) -> list[Entry]:
    out: list[Entry] = []
    for entry in files:
        with contextlib.suppress(OSError):  # gone since the listing
            st = entry.stat()
            out.append((entry.name, st.st_size, st.st_mtime))
    return out


def list_folder(folder: Path) -> list[Entry] | None:
    """Photos and tracks directly in ``folder``; None when it cannot be listed (gone)."""
    for _folder, files in walk(folder, is_photo_or_track, recursive=False):
        return _sized(files)
    return None


def list_tree(folder: Path, ignore: Collection[Path] = ()) -> list[FolderListing]:
    """Every folder under ``folder`` (dot-folders and ``ignore`` skipped) with its photos and
    tracks, in path order (a card's ``100GOPRO`` before ``101GOPRO``); a folder that is not
    there comes back as gone."""
    if not folder.is_dir():
        return [(folder, None)]
    found: list[FolderListing] = [
        (current, _sized(files))
        for current, files in walk(folder, is_photo_or_track, ignore=ignore)
    ]
    return sorted(found, key=lambda item: item[0])


def listing(folder: Path, recursive: bool, ignore: Collection[Path] = ()) -> list[FolderListing]:
    """``folder`` alone, or all of it: what a rescan of a dirty folder reads."""
    if not recursive:
        return [(folder, list_folder(folder))]
    return list_tree(folder, ignore)
