"""Which file names are photos, tracks, temporary or hidden, the one folder walker, and the
one way a user's file is opened.

One home for these, so that the daemon's sources, the one-shot commands, the upload queue and
the embedded server agree on what a photo is and on which folders are looked into.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Literal, overload

PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg"})
# Photos we cannot use as they are (iPhones' default): looked at only to say so, with the reason.
UNUSABLE_PHOTO_SUFFIXES = frozenset({".heic", ".heif"})
TRACK_SUFFIXES = frozenset({".gpx", ".nmea", ".log", ".txt"})  # .log/.txt: NMEA, if sniffed so
# Names other programs give a file while they are still writing it.
TEMP_SUFFIXES = frozenset({".tmp", ".temp", ".part", ".partial", ".crdownload", ".swp"})
# str.endswith wants a tuple; an ending compares as a suffix does for any name that is not
# hidden (a hidden name such as ".jpg" has no suffix, and hidden names are never looked at).
_PHOTO_ENDINGS = tuple(sorted(PHOTO_SUFFIXES))
_UNUSABLE_ENDINGS = tuple(sorted(UNUSABLE_PHOTO_SUFFIXES))
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


def is_unusable_photo(name: str) -> bool:
    """A photo in a format we cannot upload (HEIC): named with its reason, never skipped
    without a word.

    >>> [is_unusable_photo(n) for n in ("IMG_5195.HEIC", "a.heif", "a.jpg")]
    [True, True, False]
    """
    return name.lower().endswith(_UNUSABLE_ENDINGS)


def is_photo_or_unusable(name: str) -> bool:
    return is_photo(name) or is_unusable_photo(name)


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
    return is_photo(name) or is_track(name) or is_unusable_photo(name)


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


# How a user's file is opened: never waiting on the other end of a FIFO or on a device, never
# becoming our controlling terminal, never inherited by a child process.
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
_KINDS = (
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISDIR, "folder"),
)


def file_kind(mode: int) -> str:
    """What a non-regular file is, in a user's words.

    >>> file_kind(stat.S_IFIFO), file_kind(stat.S_IFDIR)
    ('FIFO', 'folder')
    """
    return next((name for test, name in _KINDS if test(mode)), "special file")


class NotRegularFile(OSError):
    """A path that names a FIFO, a device or a socket where a file was expected.

    An OSError without an errno (so no caller takes it for a card pulled out or a disk full);
    ``strerror`` is the reason shown to the user: "not a regular file (FIFO)". A folder is
    IsADirectoryError, as for open().
    """

    def __init__(self, path: str | os.PathLike[str], mode: int) -> None:
        super().__init__(None, f"not a regular file ({file_kind(mode)})", os.fspath(path))

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def _refuse_unless_regular(path: str | os.PathLike[str], mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(path))
    if not stat.S_ISREG(mode):
        raise NotRegularFile(path, mode)


@overload
def open_regular(path: str | os.PathLike[str], buffering: Literal[0]) -> io.FileIO: ...
@overload
def open_regular(
    path: str | os.PathLike[str], buffering: Literal[-1] = -1
) -> io.BufferedReader: ...
def open_regular(
    path: str | os.PathLike[str], buffering: Literal[0, -1] = -1
) -> io.FileIO | io.BufferedReader:
    """Open a user's file for reading, refusing anything but a regular file.

    Every read of a photo or track goes through here. A plain ``open()`` of a FIFO renamed
    over a photo waits forever for a writer (and a stuck worker thread keeps the daemon from
    exiting); a device may block or have side effects. So: a stat first (a FIFO or device is
    refused without being opened), then an open with O_NONBLOCK (which returns at once even
    on a FIFO swapped in meanwhile), and fstat of what was opened, since the path may have
    changed in between. O_NONBLOCK is cleared before the file is handed back: reads of a
    regular file then behave as always. Raises :class:`NotRegularFile`, or OSError.
    """
    _refuse_unless_regular(path, os.stat(path).st_mode)
    fd = os.open(path, _OPEN_FLAGS)
    try:
        _refuse_unless_regular(path, os.fstat(fd).st_mode)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    raw = open(fd, "rb", buffering=0)  # noqa: SIM115 (the caller closes it)
    return raw if buffering == 0 else io.BufferedReader(raw)
