"""The one error a photo can be: :class:`MediaError`, whose text is a one-line reason.

Anything wrong with the file itself (empty, not a JPEG, cut off, corrupt EXIF, bad date,
unreadable) is a MediaError. Failing to write the result (read-only folder, full disk) is an
``OSError`` instead, since the photo is not at fault.
"""

from __future__ import annotations


class MediaError(Exception):
    """A file we cannot use; str(exc) is the one-line reason (without the file name)."""


def one_line(exc: BaseException) -> str:
    """A library's message as one short line (piexif's span several)."""
    text = " ".join(str(exc).split())[:160]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
