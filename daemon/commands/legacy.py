"""What the old scripts' commands share: finding photos, the zone flag, loading with a progress
bar, writing each photo safely, and moving photos aside without ever overwriting one.

Not a command itself (``daemon.cli`` registers only the modules it lists).
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from datetime import tzinfo
from pathlib import Path

from daemon.commands.report import Progress, Summary
from daemon.core.errors import UsageError
from daemon.core.files import is_photo
from daemon.media import exif
from daemon.media.load import find_jpegs, load_records
from daemon.pipeline.dates import (
    in_repeated_hour,
    natural_key,
    parse_zone,
    repeated_hour_hint,
    zones_used,
)
from daemon.pipeline.provenance import Provenance
from daemon.pipeline.records import BAD_FILE, ImageRecord

# Where remove-duplicates moves photos by default; never read as input again.
SKIP_DIRS = ("duplicates", "errors")


def add_tz_argument(p: argparse.ArgumentParser, auto: bool = False) -> None:
    found = ", or auto: found from the photos" if auto else ""
    p.add_argument(
        "--tz",
        metavar="ZONE",
        help="zone of camera times without one: +02:00 or Europe/Berlin (default: this "
        f"machine's){found}",
    )


def zone(text: str | None) -> tuple[tzinfo, str]:
    """The zone of ``--tz`` and its label; a bad zone is a usage error (exit 2)."""
    try:
        return parse_zone(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def existing(path: Path) -> Path:
    if not path.exists():
        raise UsageError(f"{path} does not exist")
    return path


def folder(path: Path) -> Path:
    """``path``, which must be an existing folder (a usage error otherwise)."""
    if not existing(path).is_dir():
        raise UsageError(f"{path} is not a folder")
    return path


def photos_in(path: Path, *, recursive: bool) -> list[Path]:
    """JPEGs under ``path`` (or just in it), in natural name order; ``path`` may be one JPEG.

    Dotfiles and the duplicates/errors folders are left out.
    """
    existing(path)
    if recursive or path.is_file():
        found = find_jpegs(path, SKIP_DIRS)
    else:
        found = [
            p
            for p in path.iterdir()
            if is_photo(p.name) and not p.name.startswith(".") and p.is_file()
        ]
    return sorted(found, key=lambda p: (natural_key(str(p.parent)), natural_key(p.name)))


def by_folder(records: Iterable[ImageRecord]) -> dict[Path, list[ImageRecord]]:
    """Records grouped by their folder, each group in the order given."""
    groups: dict[Path, list[ImageRecord]] = {}
    for record in records:
        groups.setdefault(record.path.parent, []).append(record)
    return groups


def read(
    summary: Summary, path: Path, zone: tuple[tzinfo, str], *, recursive: bool
) -> list[ImageRecord]:
    """The photos under ``path`` (see :func:`photos_in`) as records in capture order, their
    naive times read in ``zone`` (from :func:`zone`); the summary counts them."""
    tz, summary.zone = zone
    paths = photos_in(path, recursive=recursive)
    summary.images = len(paths)
    return load(paths, tz, summary)


def load(paths: Sequence[Path], tz: tzinfo, summary: Summary) -> list[ImageRecord]:
    """Records in capture order, with a "reading" progress bar; the summary learns the zones
    the photos' times were read in (a named zone's offset at each photo's own time)."""
    progress = Progress(len(paths), "reading")
    summary.progress = progress
    try:
        records = load_records(progress.iter(paths), tz)
    finally:
        progress.close()
    summary.zone = zone_text(records) or summary.zone
    return records


def zone_text(records: Iterable[ImageRecord]) -> str | None:
    """The zones the photos' times were read in, with the offsets they got (None: no photo
    had one)."""
    return zones_used(r.zone for r in records if r.zone)


def note_sources(summary: Summary, records: Sequence[ImageRecord], tz: tzinfo) -> None:
    """The summary's lines on where the usable photos' times, positions and headings came
    from, and on photos taken in the hour repeated when summer time ends."""
    usable = [r for r in records if r.ok]
    line = Provenance.of(usable).line()
    if line:
        summary.note(line)
    hint = repeated_hour_hint([r.filename for r in in_repeated_hour(usable, tz)])
    if hint:
        summary.note(hint)


def write_each(
    records: Sequence[ImageRecord],
    write: Callable[[ImageRecord], None],
    summary: Summary,
    label: str = "writing",
) -> list[ImageRecord]:
    """Call ``write`` for each record; a file that cannot be written is set aside (and left as
    it was: EXIF writes are atomic). Returns the records written."""
    written = []
    progress = Progress(len(records), label)
    summary.progress = progress
    for record in progress.iter(records):
        try:
            write(record)
        except (OSError, exif.MediaError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            summary.aside(record.path, BAD_FILE, f"cannot write EXIF: {reason}")
            continue
        summary.done += 1
        written.append(record)
    progress.close()
    return written


def free_name(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/stem_1.ext``, ... : a name nothing has yet."""
    target = folder / name
    stem, suffix = os.path.splitext(name)
    n = 0
    while target.exists():
        n += 1
        target = folder / f"{stem}_{n}{suffix}"
    return target


def move_aside(path: Path, folder: Path) -> Path:
    """Move ``path`` into ``folder`` (made if needed) under a free name; never overwrites."""
    folder.mkdir(parents=True, exist_ok=True)
    target = free_name(folder, path.name)
    shutil.move(str(path), str(target))
    return target


def append_log(path: Path, lines: Iterable[str]) -> None:
    """Append lines to a log file (kept across runs), flushed to disk."""
    text = "".join(f"{line}\n" for line in lines)
    if not text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
