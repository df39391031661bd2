"""Capture times: which zone a camera's naive clock is in, conversion to UTC, and fix-dates.

Most cameras write ``DateTimeOriginal`` without a zone. The zone then comes from ``--tz`` (an
offset such as ``+02:00`` or a name such as ``Europe/Berlin``) or, when not given, from this
machine's local zone, as the old scripts and mapillary_tools do. Every summary states the zone,
because a wrong zone shifts every GPX position by whole hours.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from daemon.core.words import counted
from daemon.pipeline.records import NO_TIME, ImageRecord

_OFFSET = re.compile(r"^(?P<sign>[+-])(?P<h>\d{1,2})(?::?(?P<m>\d{2}))?$")
_UTC_NAMES = {"z", "utc", "gmt", "+00:00", "-00:00"}
FROM_FILE = " (from file)"  # a photo's zone label when its time carried its own offset
_NAMED = re.compile(r"^(?P<name>.+) \((?P<offset>[+-]\d\d:\d\d)\)$")


def format_offset(delta: timedelta) -> str:
    """An offset as ``+HH:MM``.

    >>> format_offset(timedelta(hours=-5, minutes=-30)), format_offset(timedelta(0))
    ('-05:30', '+00:00')
    """
    minutes = round(delta.total_seconds() / 60)
    sign = "-" if minutes < 0 else "+"
    h, m = divmod(abs(minutes), 60)
    return f"{sign}{h:02d}:{m:02d}"


def zone_label(tz: tzinfo, at: datetime | None = None) -> str:
    """How summaries name a zone: ``"+02:00"``, ``"UTC"`` or ``"Europe/Berlin (+01:00)"``.

    A named zone shows its offset at ``at`` (default: now), since it changes with daylight saving.

    >>> zone_label(ZoneInfo("Europe/Berlin"), datetime(2024, 1, 15))
    'Europe/Berlin (+01:00)'
    >>> zone_label(timezone(timedelta(hours=2))), zone_label(UTC)
    ('+02:00', 'UTC')
    """
    if tz is UTC or tz == UTC:
        return "UTC"
    when = (at or datetime.now()).replace(tzinfo=None)
    offset = tz.utcoffset(when) or timedelta(0)
    if isinstance(tz, ZoneInfo):
        return f"{tz.key} ({format_offset(offset)})"
    return format_offset(offset)


def _local_zone() -> tzinfo:
    """This machine's zone: a named zone when we can find its name, else the current offset."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    localtime = Path("/etc/localtime")
    if localtime.is_symlink():
        target = str(localtime.resolve())
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    for name in candidates:
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    offset = datetime.now().astimezone().utcoffset() or timedelta(0)
    return timezone(offset)


def parse_zone(text: str | None) -> tuple[tzinfo, str]:
    """A zone from ``--tz`` and its label; None means this machine's local zone.

    >>> parse_zone("+02:00")[1], parse_zone("-0530")[1], parse_zone("+7")[1], parse_zone("UTC")[1]
    ('+02:00', '-05:30', '+07:00', 'UTC')
    >>> parse_zone("Europe/Berlin")[0]
    zoneinfo.ZoneInfo(key='Europe/Berlin')
    >>> parse_zone("Mars/Olympus")
    Traceback (most recent call last):
    ...
    ValueError: unknown time zone 'Mars/Olympus': use an offset such as +02:00 or a zone name such as Europe/Berlin
    """
    if text is None or not text.strip():
        tz = _local_zone()
        label = zone_label(tz)
        return tz, label if isinstance(tz, ZoneInfo) else f"local {label}"
    text = text.strip()
    if text.lower() in _UTC_NAMES:
        return UTC, "UTC"
    match = _OFFSET.match(text)
    if match:
        hours, minutes = int(match["h"]), int(match["m"] or 0)
        if hours > 14 or minutes >= 60 or (hours == 14 and minutes):
            raise ValueError(f"time zone offset {text!r} is out of range (-14:00 to +14:00)")
        delta = timedelta(hours=hours, minutes=minutes)
        tz = timezone(-delta if match["sign"] == "-" else delta)
        return tz, format_offset(tz.utcoffset(None))
    try:
        tz = ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {text!r}: use an offset such as +02:00 "
            "or a zone name such as Europe/Berlin"
        ) from None
    return tz, zone_label(tz)


def to_utc(moment: datetime, tz: tzinfo) -> datetime:
    """A camera time in UTC: a naive time is read in ``tz``, an aware one keeps its own zone.

    >>> to_utc(datetime(2024, 7, 1, 12, 0), ZoneInfo("Europe/Berlin")).isoformat()
    '2024-07-01T10:00:00+00:00'
    >>> to_utc(datetime(2024, 7, 1, 12, 0, tzinfo=UTC), ZoneInfo("Europe/Berlin")).isoformat()
    '2024-07-01T12:00:00+00:00'
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.astimezone(UTC)


def resolve_capture_time(
    moment: datetime | None, tz: tzinfo, label: str
) -> tuple[datetime | None, str | None]:
    """UTC capture time and the zone label that applied to it.

    A naive time uses ``tz`` (and ``label``); a time that carries its own zone (EXIF
    OffsetTimeOriginal, or the GPS stamp) is labelled with that zone instead.

    >>> t, z = resolve_capture_time(datetime(2024, 1, 1, 12), timezone(timedelta(hours=2)), "+02:00")
    >>> t.isoformat(), z
    ('2024-01-01T10:00:00+00:00', '+02:00')
    >>> resolve_capture_time(datetime(2024, 1, 1, 12, tzinfo=UTC), UTC, "x")[1]
    'UTC (from file)'
    >>> resolve_capture_time(None, UTC, "UTC")
    (None, None)
    """
    if moment is None:
        return None, None
    if moment.tzinfo is None:
        local = moment.replace(tzinfo=tz)
        own_label = zone_label(tz, moment) if isinstance(tz, ZoneInfo) else label
        return local.astimezone(UTC), own_label
    offset = moment.utcoffset() or timedelta(0)
    name = "UTC" if offset == timedelta(0) else format_offset(offset)
    return moment.astimezone(UTC), f"{name}{FROM_FILE}"


def zones_used(labels: Iterable[str]) -> str | None:
    """The zones photos' naive camera times were read in, with the offset each photo actually
    got (a named zone's offset at the photo's own date, not today's); None when there are none.
    Times that carried their own offset are left out: no zone was assumed for them.

    >>> zones_used(["Europe/Berlin (+02:00)"] * 120 + ["Europe/Berlin (+01:00)"] * 3)
    'Europe/Berlin (+02:00 for 120 photos, +01:00 for 3)'
    >>> zones_used(["+02:00", "+02:00", "+03:00 (from file)"]), zones_used(["UTC (from file)"])
    ('+02:00', None)
    """
    groups: dict[str, Counter[str]] = {}
    for label in labels:
        if label.endswith(FROM_FILE):
            continue
        match = _NAMED.match(label)
        name, offset = (match["name"], match["offset"]) if match else (label, "")
        groups.setdefault(name, Counter())[offset] += 1
    parts = []
    for name, offsets in sorted(groups.items(), key=lambda g: -sum(g[1].values())):
        if list(offsets) == [""]:
            parts.append(name if len(groups) == 1 else f"{name} ({counted(offsets[''], 'photo')})")
            continue
        each = [
            f"{off} for {n if i else counted(n, 'photo')}"
            for i, (off, n) in enumerate(offsets.most_common())
        ]
        parts.append(f"{name} ({', '.join(each)})")
    return "; ".join(parts) or None


def in_repeated_hour(records: Iterable[ImageRecord], tz: tzinfo) -> list[ImageRecord]:
    """Photos whose camera time, read in ``tz``, falls in the hour the zone repeats when summer
    time ends: 02:30 happens twice, and was read as the first (summer) one, so such a photo may
    be an hour off. Times that carried their own offset are not in doubt.

    >>> from pathlib import Path
    >>> tz = ZoneInfo("Europe/Berlin")
    >>> t, z = resolve_capture_time(datetime(2024, 10, 27, 2, 30), tz, "Europe/Berlin")
    >>> r = ImageRecord(Path("a.jpg"), t, zone=z)
    >>> len(in_repeated_hour([r], tz)), len(in_repeated_hour([r.replace(zone="+02:00 (from file)")], tz))
    (1, 0)
    """
    if not isinstance(tz, ZoneInfo):
        return []
    doubtful = []
    for r in records:
        if r.capture_time is None or not r.zone or r.zone.endswith(FROM_FILE):
            continue
        if r.time_source in ("gps", "fix-dates"):
            continue
        local = r.capture_time.astimezone(tz)
        if local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset():
            doubtful.append(r)
    return doubtful


def repeated_hour_hint(names: Sequence[str]) -> str | None:
    """The summary's one line about the photos :func:`in_repeated_hour` found, or None."""
    if not names:
        return None
    return (
        f"{counted(len(names), 'photo')} taken in the hour repeated when summer time ends "
        f"(first: {names[0]}): read as the first of the two, so possibly an hour "
        "off; a GPS time, an OffsetTimeOriginal or a --tz offset such as +01:00 settles it"
    )


def natural_key(name: str) -> list[str | int]:
    """Sort key in which embedded numbers compare as numbers, case-insensitively.

    >>> sorted(["frame_10.jpg", "Frame_2.jpg", "frame_1.jpg"], key=natural_key)
    ['frame_1.jpg', 'Frame_2.jpg', 'frame_10.jpg']
    """
    parts = re.split(r"(\d+)", name)
    return [int(p) if i % 2 else p.casefold() for i, p in enumerate(parts)]


@lru_cache(maxsize=1 << 16)
def _name_key(name: str) -> tuple[str | int, ...]:
    # The stages sort the same photos several times; the name's key is the costly part.
    return tuple(natural_key(name))


_FAR = datetime.max.replace(tzinfo=UTC)


def capture_order(records: Iterable[ImageRecord]) -> list[ImageRecord]:
    """Records by capture time, then natural file name; records without a time go last."""
    return sorted(
        records,
        key=lambda r: (
            r.capture_time is None,
            r.capture_time or _FAR,
            _name_key(r.filename),
            str(r.path),
        ),
    )


def fix_dates(records: list[ImageRecord], start: datetime, increment_s: float) -> list[ImageRecord]:
    """Give images taken at a fixed interval their times: ``start``, ``start + increment``, ...

    ``records`` must already be in shooting order (usually natural file-name order). ``start``
    must be timezone-aware. An image set aside only for having no time is taken back; any other
    reason stays.

    >>> from pathlib import Path
    >>> recs = [ImageRecord(Path(n)) for n in ("a_1.jpg", "a_2.jpg")]
    >>> out = fix_dates(recs, datetime(2024, 5, 1, 8, 0, tzinfo=UTC), 2.5)
    >>> [r.capture_time.strftime("%H:%M:%S.%f") for r in out], out[0].time_source
    (['08:00:00.000000', '08:00:02.500000'], 'fix-dates')
    """
    if start.tzinfo is None:
        raise ValueError("fix_dates needs a start time with a zone")
    label = zone_label(start.tzinfo, start)
    out = []
    for i, record in enumerate(records):
        error = record.error if record.error and record.error.type != NO_TIME else None
        out.append(
            record.replace(
                capture_time=(start + timedelta(seconds=i * increment_s)).astimezone(UTC),
                time_source="fix-dates",
                zone=label,
                error=error,
            )
        )
    return out
