"""Read photos into image records: the one place where the pipeline's input touches the disk."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import tzinfo
from pathlib import Path

from daemon.core.files import is_photo_or_unusable, walk
from daemon.media import exif
from daemon.pipeline.dates import capture_order, parse_zone, resolve_capture_time, zone_label
from daemon.pipeline.records import BAD_FILE, BAD_METADATA, NO_TIME, ImageRecord


def find_jpegs(root: Path, skip_dirs: Iterable[str] = ()) -> list[Path]:
    """JPEGs under ``root`` (or ``root`` itself), skipping dotfiles, dot-folders and any folder
    named in ``skip_dirs`` (e.g. where duplicates were moved), in a stable order (by path)."""
    root = Path(root)
    if root.is_file():
        return [root]
    found: list[tuple[str, ...]] = []
    for folder, entries in walk(root, is_photo_or_unusable, skip_names=frozenset(skip_dirs)):
        parts = folder.relative_to(root).parts
        found.extend((*parts, entry.name) for entry in entries)
    found.sort()  # tuples of names sort as the paths would, without building them first
    return [root.joinpath(*parts) for parts in found]


def load_record(path: Path, tz: tzinfo, label: str) -> ImageRecord:
    """One photo as a record; a file we cannot use comes back set aside with the reason."""
    record = ImageRecord(Path(path))
    try:
        info = exif.read_exif(path)  # an unreadable file too is a MediaError ("cannot read: ...")
    except exif.MediaError as exc:
        complete = exif.is_complete_jpeg(path)  # False when unreadable; never raises
        return record.set_aside(BAD_METADATA if complete else BAD_FILE, str(exc))
    # read_exif has seen the end-of-image marker: the file is complete.
    capture_time, zone = resolve_capture_time(info.capture_time, tz, label)
    has_gps = info.lat is not None and info.lon is not None
    record = record.replace(
        capture_time=capture_time,
        zone=zone,
        time_source=info.time_source if capture_time else None,
        lat=info.lat if has_gps else None,
        lon=info.lon if has_gps else None,
        altitude=info.altitude if has_gps else None,
        heading=info.direction,
        heading_source=info.direction_source if info.direction is not None else None,
        position_source=(info.position_source or "exif") if has_gps else None,
        orientation=info.orientation if 1 <= info.orientation <= 8 else 1,
        make=info.make,
        model=info.model,
        extra=_extra(info),
    )
    if capture_time is None:
        return record.set_aside(NO_TIME, "no capture time in EXIF (DateTimeOriginal, GPS time)")
    return record


def _extra(info: exif.ExifInfo) -> dict[str, object]:
    """The description already in the photo (add-tags keeps the keys it does not write)."""
    return {"exif_description": info.description} if info.description else {}


def load_records(paths: Iterable[Path], tz: tzinfo | str | None = None) -> list[ImageRecord]:
    """Records for ``paths`` in capture order (then natural file name); never raises for a file.

    ``tz`` is the zone of naive camera times: a tzinfo, or text for
    :func:`daemon.pipeline.dates.parse_zone` (None: this machine's zone).
    """
    if tz is None or isinstance(tz, str):
        zone, label = parse_zone(tz)
    else:
        zone, label = tz, zone_label(tz)
    return capture_order(load_record(p, zone, label) for p in paths)
