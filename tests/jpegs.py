"""Real test files: JPEGs made with Pillow + piexif carrying the EXIF a test asks for, and GPX.

These helpers write EXIF with piexif directly (not through ``daemon.media.exif``) so tests of our
reader and writer check them against an independent encoding.
"""

from __future__ import annotations

import io
import os
import random
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import piexif
from PIL import Image

GpxPoint = tuple[datetime | None, float, float, float | None]


def _dms(value: float) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Degrees as EXIF (d, m, s) rationals, seconds to 1e-6 (about 3e-10 degrees)."""
    value = abs(value)
    micro = round(value * 3600 * 1_000_000)  # whole micro-arcseconds, so no carry errors
    d, rest = divmod(micro, 3600 * 1_000_000)
    m, s = divmod(rest, 60 * 1_000_000)
    return ((d, 1), (m, 1), (s, 1_000_000))


def _rational(value: float, den: int = 1000) -> tuple[int, int]:
    return (round(abs(value) * den), den)


def picture(size: tuple[int, int] = (64, 48), seed: int = 0) -> Image.Image:
    """A noisy picture (so the compressed data is not trivially short), the same for a seed."""
    rnd = random.Random(seed)
    raw = rnd.randbytes(size[0] * size[1] * 3)
    return Image.frombytes("RGB", size, raw)


def exif_dict(
    *,
    capture_time: datetime | None = None,
    subsec: str | None = None,
    offset: str | None = None,
    lat: float | None = None,
    lon: float | None = None,
    altitude: float | None = None,
    direction: float | None = None,
    make: str | None = "TestCam",
    model: str | None = "T1",
    orientation: int | None = 1,
    gps_time: datetime | None = None,
    description: str | None = None,
    extra_exif: dict[str, dict[int, Any]] | None = None,
) -> dict[str, Any]:
    """The piexif dict :func:`make_jpeg` writes (exposed for tests that build odd files)."""
    zeroth: dict[int, Any] = {}
    exif_ifd: dict[int, Any] = {}
    gps: dict[int, Any] = {}
    if make is not None:
        zeroth[piexif.ImageIFD.Make] = make.encode()
    if model is not None:
        zeroth[piexif.ImageIFD.Model] = model.encode()
    if orientation is not None:
        zeroth[piexif.ImageIFD.Orientation] = orientation
    if description is not None:
        zeroth[piexif.ImageIFD.ImageDescription] = description.encode("utf-8")
    if capture_time is not None:
        exif_ifd[piexif.ExifIFD.DateTimeOriginal] = capture_time.strftime(
            "%Y:%m:%d %H:%M:%S"
        ).encode()
    if subsec is not None:
        exif_ifd[piexif.ExifIFD.SubSecTimeOriginal] = subsec.encode()
    if offset is not None:
        exif_ifd[piexif.ExifIFD.OffsetTimeOriginal] = offset.encode()
    if lat is not None and lon is not None:
        gps[piexif.GPSIFD.GPSVersionID] = (2, 2, 0, 0)
        gps[piexif.GPSIFD.GPSLatitudeRef] = b"N" if lat >= 0 else b"S"
        gps[piexif.GPSIFD.GPSLatitude] = _dms(lat)
        gps[piexif.GPSIFD.GPSLongitudeRef] = b"E" if lon >= 0 else b"W"
        gps[piexif.GPSIFD.GPSLongitude] = _dms(lon)
    if altitude is not None:
        gps[piexif.GPSIFD.GPSAltitudeRef] = 0 if altitude >= 0 else 1
        gps[piexif.GPSIFD.GPSAltitude] = _rational(altitude)
    if direction is not None:
        gps[piexif.GPSIFD.GPSImgDirectionRef] = b"T"
        gps[piexif.GPSIFD.GPSImgDirection] = _rational(direction, 100)
    if gps_time is not None:
        utc = gps_time.astimezone(UTC) if gps_time.tzinfo else gps_time
        gps[piexif.GPSIFD.GPSDateStamp] = utc.strftime("%Y:%m:%d").encode()
        gps[piexif.GPSIFD.GPSTimeStamp] = (
            (utc.hour, 1),
            (utc.minute, 1),
            _rational(utc.second + utc.microsecond / 1e6),
        )
    data: dict[str, Any] = {"0th": zeroth, "Exif": exif_ifd, "GPS": gps, "1st": {}}
    for ifd, tags in (extra_exif or {}).items():
        data.setdefault(ifd, {}).update(tags)
    return data


def jpeg_bytes(
    *,
    size: tuple[int, int] = (64, 48),
    quality: int = 85,
    seed: int = 0,
    thumbnail: bool = False,
    exif: dict[str, Any] | None = None,
) -> bytes:
    """JPEG bytes with the given piexif dict (None: no EXIF segment at all)."""
    buf = io.BytesIO()
    image = picture(size, seed)
    if exif is None:
        image.save(buf, "JPEG", quality=quality)
        return buf.getvalue()
    exif = dict(exif)
    if thumbnail:
        thumb = io.BytesIO()
        picture((16, 12), seed + 1).save(thumb, "JPEG", quality=60)
        exif["thumbnail"] = thumb.getvalue()
        exif["1st"] = {
            piexif.ImageIFD.JPEGInterchangeFormat: 0,
            piexif.ImageIFD.JPEGInterchangeFormatLength: 0,
            **exif.get("1st", {}),
        }
    image.save(buf, "JPEG", exif=piexif.dump(exif), quality=quality)
    return buf.getvalue()


def make_jpeg(
    path: str | os.PathLike[str],
    *,
    size: tuple[int, int] = (64, 48),
    capture_time: datetime | None = None,
    subsec: str | None = None,
    offset: str | None = None,
    lat: float | None = None,
    lon: float | None = None,
    altitude: float | None = None,
    direction: float | None = None,
    make: str | None = "TestCam",
    model: str | None = "T1",
    orientation: int | None = 1,
    gps_time: datetime | None = None,
    description: str | None = None,
    extra_exif: dict[str, dict[int, Any]] | None = None,
    quality: int = 85,
    thumbnail: bool = False,
    seed: int = 0,
) -> Path:
    """Write a real JPEG with this EXIF and return its path.

    ``capture_time`` goes into DateTimeOriginal as written (naive wall-clock; its tzinfo is
    ignored, say the zone with ``offset`` like "+02:00"). ``lat``/``lon`` go into GPS with refs;
    a negative ``altitude`` is written below sea level; ``direction`` is a true heading;
    ``gps_time`` (aware, or naive UTC) goes into GPSDateStamp/GPSTimeStamp. ``extra_exif`` is a
    piexif-style ``{"0th": {tag: value}, "Exif": {...}, "GPS": {...}}`` merged last.
    ``thumbnail`` adds an IFD1 thumbnail; ``seed`` varies the picture.
    """
    data = exif_dict(
        capture_time=capture_time,
        subsec=subsec,
        offset=offset,
        lat=lat,
        lon=lon,
        altitude=altitude,
        direction=direction,
        make=make,
        model=model,
        orientation=orientation,
        gps_time=gps_time,
        description=description,
        extra_exif=extra_exif,
    )
    blob = jpeg_bytes(size=size, quality=quality, seed=seed, thumbnail=thumbnail, exif=data)
    with open(path, "wb") as fh:
        fh.write(blob)
    return Path(path)


def make_plain_jpeg(path: str | os.PathLike[str], *, size: tuple[int, int] = (64, 48)) -> Path:
    """A JPEG with no EXIF segment (Pillow writes SOI, JFIF APP0, tables, image)."""
    with open(path, "wb") as fh:
        fh.write(jpeg_bytes(size=size, exif=None))
    return Path(path)


def scan_data(blob: bytes) -> bytes:
    """Everything from the first SOS marker on: the compressed image must stay identical."""
    pos = 2
    while pos + 4 <= len(blob):
        kind = blob[pos + 1]
        if kind == 0xDA:
            return blob[pos:]
        pos += 2 + int.from_bytes(blob[pos + 2 : pos + 4], "big")
    raise ValueError("no SOS marker")


def _iso(t: datetime) -> str:
    utc = t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def gpx_text(
    points: Sequence[GpxPoint],
    *,
    segment_breaks: Iterable[int] = (),
    track_breaks: Iterable[int] = (),
) -> str:
    """GPX 1.1 text. A new segment starts at each index in ``segment_breaks`` and a new track at
    each index in ``track_breaks``. Naive times are UTC; a None time writes a point without one."""
    seg_at, trk_at = set(segment_breaks), set(track_breaks)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<gpx version="1.1" creator="tests" xmlns="http://www.topografix.com/GPX/1/1">',
        "<trk><name>test</name><trkseg>",
    ]
    for i, (t, lat, lon, ele) in enumerate(points):
        if i and i in trk_at:
            out.append("</trkseg></trk><trk><trkseg>")
        elif i and i in seg_at:
            out.append("</trkseg><trkseg>")
        inner = ""
        if ele is not None:
            inner += f"<ele>{ele:.3f}</ele>"
        if t is not None:
            inner += f"<time>{escape(_iso(t))}</time>"
        out.append(f'<trkpt lat="{lat:.9f}" lon="{lon:.9f}">{inner}</trkpt>')
    out.append("</trkseg></trk></gpx>")
    return "\n".join(out) + "\n"


def write_gpx(
    path: str | os.PathLike[str],
    points: Sequence[GpxPoint],
    *,
    segment_breaks: Iterable[int] = (),
    track_breaks: Iterable[int] = (),
) -> Path:
    """Write :func:`gpx_text` to ``path`` and return it."""
    text = gpx_text(points, segment_breaks=segment_breaks, track_breaks=track_breaks)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return Path(path)
