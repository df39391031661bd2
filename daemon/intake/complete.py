"""Is a quiet file complete? A JPEG with its image data and end marker, a GPX with its
``<gpx>`` root (a log cut off later is still used); and if not, whether waiting may help."""

from __future__ import annotations

import os
import xml.parsers.expat
from dataclasses import dataclass
from typing import Any

from daemon.core.files import NotRegularFile, is_track, open_regular
from daemon.media.exif import JpegState, jpeg_state
from daemon.media.jpeg import not_a_jpeg
from daemon.media.nmea import SNIFF_BYTES, is_nmea


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
    foreign: bool = False  # not a file of ours at all: passed over, never set aside
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


class _Root(Exception):
    pass


GPX_HEAD = 1 << 16  # the root element of any GPX starts in its first 64 KiB


def gpx_verdict(path: str | os.PathLike[str]) -> Verdict:
    """Blocking. A file whose root element is ``<gpx>``: only the start is read.

    The rest is the loader's business: it keeps every point of a log cut off by a power loss
    (gpsd's gpxlogger writes its closing tags only on a clean exit) and the points around an
    XML error, naming file and line. A log still growing is taken again when it changes.
    """

    def root(name: str, _attrs: Any) -> None:
        if name.rpartition(":")[2] != "gpx":
            raise _NotGpx(f"root element is <{name}>, not <gpx>")
        raise _Root

    with open_regular(path) as fh:
        head = fh.read(GPX_HEAD)
    if not head:
        return Verdict(False, EMPTY)
    parser = xml.parsers.expat.ParserCreate()
    parser.StartElementHandler = root
    try:
        parser.Parse(head, False)
    except _Root:
        return COMPLETE
    except (xml.parsers.expat.ExpatError, _NotGpx) as exc:
        return Verdict(False, f"not a GPX file: {exc}", hopeless=True)
    return Verdict(False, "cut off: no <gpx> element", dated=True)


def nmea_verdict(path: str | os.PathLike[str]) -> Verdict:
    """Blocking. A .nmea/.log/.txt file is a track if its start holds an NMEA sentence (or it
    is GPX under another name); a log still growing is taken again when it changes."""
    # .log and .txt are NMEA only when they say so: other text files (a camera's version.txt,
    # an app's log) are not ours at all, and are passed over without a word (looked at again
    # if they change, as a log that is still empty would).
    foreign = os.path.splitext(path)[1].lower() in (".log", ".txt")
    with open_regular(path) as fh:
        head = fh.read(SNIFF_BYTES)
    if not head:
        return Verdict(False, EMPTY, foreign=foreign)
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return gpx_verdict(path)
    if is_nmea(head):
        return COMPLETE
    return Verdict(
        False, "not a track: no NMEA sentence and not GPX", hopeless=True, foreign=foreign
    )


def verdict(path: str | os.PathLike[str]) -> Verdict:
    """Blocking: whether ``path`` is complete, and if not why and whether waiting may help."""
    try:
        name = os.path.basename(path)
        if is_track(name):
            return gpx_verdict(path) if name.lower().endswith(".gpx") else nmea_verdict(path)
        return jpeg_verdict(path)
    except NotRegularFile as exc:  # a FIFO renamed over a photo: no writer can fix that
        return Verdict(False, exc.strerror, hopeless=True)
    except OSError as exc:  # unreadable (permissions?): may be fixed, so it waits like a cut one
        return Verdict(False, f"cannot read: {exc.strerror or exc}", unreadable=True)
