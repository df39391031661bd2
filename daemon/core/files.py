"""Which file names are photos, tracks, temporary or hidden, and the one folder walker.

One home for these, so that the daemon's sources, the one-shot commands, the upload queue and
the embedded server agree on what a photo is and on which folders are looked into.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg"})
TRACK_SUFFIXES = frozenset({".gpx"})
# Names other programs give a file while they are still writing it.
TEMP_SUFFIXES = frozenset({".tmp", ".temp", ".part", ".partial", ".crdownload", ".swp"})
# str.endswith wants a tuple; an ending compares as a suffix does for any name that is not
# hidden (a hidden name such as ".jpg" has no suffix, and hidden names are never looked at).
_PHOTO_ENDINGS = tuple(sorted(PHOTO_SUFFIXES))
_TRACK_ENDINGS = tuple(sorted(TRACK_SUFFIXES))
_TEMP_ENDINGS = tuple(sorted(TEMP_SUFFIXES))

Listing = tuple[Path, list[os.DirEntry[str]]]  # a folder, and the entries of its files kept


def is_hidden(name: str) -> bool:
    """Dotfiles and dot-folders (``.thumbnails``, our own temp copies): never looked into."""
    return name.startswith(".")


def is_photo(name: str) -> bool:
    """
    >>> [is_photo(n) for n in ("G001.JPG", "a.jpeg", "a.jpg.part", "a.png")]
    [True, True, False, False]
    """
    return name.lower().endswith(_PHOTO_ENDINGS)


def is_track(name: str) -> bool:
    return name.lower().endswith(_TRACK_ENDINGS)


def is_temp(name: str) -> bool:
    """A file someone is still writing: ``~`` copies of editors, ``.part`` downloads.

    >>> [is_temp(n) for n in ("~x.jpg", "a.jpg.part", "a.JPG.CRDOWNLOAD", "a.jpg")]
    [True, True, True, False]
    """
    return name.startswith("~") or name.lower().endswith(_TEMP_ENDINGS)


def is_photo_or_track(name: str) -> bool:
    """Photos and tracks, minus dotfiles and temporary names (what the daemon takes in).

    >>> names = ("G001.JPG", ".G001.JPG", "a.jpg.part", "t.gpx", "~x.jpg", "a.png")
    >>> [is_photo_or_track(n) for n in names]
    [True, False, False, True, False, False]
    """
    if is_hidden(name) or is_temp(name):
        return False
    return is_photo(name) or is_track(name)


def valid_text(text: str) -> str:
    """``text`` as UTF-8 can hold it: the bytes of a file name that are not UTF-8 (kept by
    Python as lone surrogates, see ``os.fsdecode``) written out as ``\\xNN``. For what people
    and other programs read (a description, a reason, a log line); the path itself is kept.

    >>> valid_text(os.fsdecode(b"G\\xff0001.JPG"))
    'G\\\\xff0001.JPG'
    >>> valid_text("Straße.jpg")
    'Straße.jpg'
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no file name made: nothing to show but "?"
        return text.encode("utf-8", "replace").decode("utf-8")


def walk(
    top: str | os.PathLike[str],
    keep: Callable[[str], bool],
    *,
    ignore: Collection[Path] = (),
    skip_names: Collection[str] = (),
    recursive: bool = True,
    linked_folders: bool = False,
) -> Iterator[Listing]:
    """Every folder under ``top`` (``top`` first) with the entries of the files in it that
    ``keep`` accepts by name, in no particular order (callers sort what they need).

    Hidden names are skipped, files and folders alike, as are the folders in ``ignore`` (paths,
    ``top`` included) and those named in ``skip_names`` (at any depth below ``top``). Symlinked
    folders are not followed; with ``linked_folders`` they are listed, but not walked below
    (their own files count; no loop is possible). A folder that cannot be listed is passed
    over, and ``recursive=False`` lists ``top`` alone. Iterative with os.scandir: no recursion
    limit, one folder's listing in memory at a time, and no stat per file (the kind of each
    entry comes with the listing; a caller that wants sizes asks the entries it keeps).
    """
    stack = [(Path(top), recursive)]  # a folder, and whether to go below it
    while stack:
        current, below = stack.pop()
        if current in ignore:
            continue
        files: list[os.DirEntry[str]] = []
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    name = entry.name
                    if is_hidden(name):
                        continue
                    with contextlib.suppress(OSError):
                        if entry.is_dir(follow_symlinks=False):
                            if below and name not in skip_names:
                                stack.append((Path(entry.path), True))
                        elif linked_folders and entry.is_symlink() and entry.is_dir():
                            if below and name not in skip_names:
                                stack.append((Path(entry.path), False))
                        elif keep(name) and entry.is_file():
                            files.append(entry)
        except OSError:
            continue
        yield current, files
