"""Is a quiet file complete? A JPEG with its image data and end marker, a GPX closed by
``</gpx>``; and if not, whether waiting longer may still help."""

from __future__ import annotations

import os
import xml.parsers.expat
from dataclasses import dataclass
from typing import Any

from daemon.core.files import NotRegularFile, is_track, open_regular
from daemon.media.exif import JpegState, jpeg_state
from daemon.media.jpeg import not_a_jpeg


@dataclass(frozen=True)
class Verdict:
    """What reading a quiet file found. ``hopeless``: waiting cannot make it complete (the
    bytes already there are wrong), so it is handed on at once. ``dated``: the reason is
    finished with how long the file has been unchanged (the evidence that it is cut off).
    ``unreadable``: it could not be opened or read (permissions?), which may be fixed."""

    complete: bool
    reason: str | None = None
    hopeless: bool = False
    dated: bool = False
    unreadable: bool = False


COMPLETE = Verdict(True)
EMPTY = "empty file"


def jpeg_verdict(path: str | os.PathLike[str]) -> Verdict:
    """Blocking. The JPEG rules live in :func:`daemon.media.exif.jpeg_state`."""
    state = jpeg_state(path)
    if state is JpegState.COMPLETE:
        return COMPLETE
    hopeless = state is JpegState.NOT_JPEG
    dated = state in (JpegState.CUT_OFF, JpegState.CORRUPT)
    reason = _not_a_jpeg(path) if hopeless else state.value
    return Verdict(False, reason, hopeless, dated)


def _not_a_jpeg(path: str | os.PathLike[str]) -> str:
    """Why the file is no JPEG: an ISO media file (a HEIC photo, a video) is named, with what
    to do about it; anything else keeps the plain reason."""
    try:
        with open_regular(path) as fh:
            start = fh.read(12)
    except OSError:
        start = b""
    return str(not_a_jpeg(start)) if start[4:8] == b"ftyp" else JpegState.NOT_JPEG.value


class _NotGpx(Exception):
    pass


def gpx_verdict(path: str | os.PathLike[str]) -> Verdict:
    """Blocking. Well-formed XML whose root is ``<gpx>``, streamed (little memory).

    Expat reports an error in the bytes read so far at once, but an unclosed document only at
    the end: the first is hopeless, the second a file still being written (or cut off).
    """

    def root(name: str, _attrs: Any) -> None:
        parser.StartElementHandler = None  # only the root element matters
        if name.rpartition(":")[2] != "gpx":
            raise _NotGpx(f"root element is <{name}>, not <gpx>")

    with open_regular(path) as fh:
        parser = xml.parsers.expat.ParserCreate()
        parser.StartElementHandler = root
        empty = True
        try:
            while chunk := fh.read(1 << 20):
                empty = False
                parser.Parse(chunk, False)
        except (xml.parsers.expat.ExpatError, _NotGpx) as exc:
            return Verdict(False, f"not a GPX file: {exc}", hopeless=True)
        if empty:
            return Verdict(False, EMPTY)
        try:
            parser.Parse(b"", True)
        except xml.parsers.expat.ExpatError:
            return Verdict(False, "cut off: no closing </gpx> tag", dated=True)
    return COMPLETE


def verdict(path: str | os.PathLike[str]) -> Verdict:
    """Blocking: whether ``path`` is complete, and if not why and whether waiting may help."""
    try:
        if is_track(os.path.basename(path)):
            return gpx_verdict(path)
        return jpeg_verdict(path)
    except NotRegularFile as exc:  # a FIFO renamed over a photo: no writer can fix that
        return Verdict(False, exc.strerror, hopeless=True)
    except OSError as exc:  # unreadable (permissions?): may be fixed, so it waits like a cut one
        return Verdict(False, f"cannot read: {exc.strerror or exc}", unreadable=True)
