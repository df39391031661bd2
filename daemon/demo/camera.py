"""Writing drives to disk as a camera and a GPS logger would: real JPEGs and GPX files.

:class:`Camera` writes the photos of a planned drive (:mod:`daemon.demo.route`): EXIF spliced
into a picture encoded once per size, so tens of thousands of photos take seconds.
:func:`write_jpeg`, :func:`jpeg_bytes` and :func:`write_gpx` make the small files of the fixed
timeline (:mod:`daemon.demo.timeline`).
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import gpxpy.gpx
import piexif
from PIL import Image

from daemon.demo.route import Drive, Photo
from daemon.demo.timeline import Fix, at


def write_gpx(path: Path, fixes: list[Fix]) -> None:
    """A real GPX 1.1 file of the fixes (one track, one segment), written with gpxpy."""
    doc = gpxpy.gpx.GPX()
    trk = gpxpy.gpx.GPXTrack()
    seg = gpxpy.gpx.GPXTrackSegment()
    for f in fixes:
        seg.points.append(gpxpy.gpx.GPXTrackPoint(f.lat, f.lon, elevation=f.ele, time=at(f.t)))
    trk.segments.append(seg)
    doc.tracks.append(trk)
    path.write_text(doc.to_xml(version="1.1"), encoding="utf-8")


def write_jpeg(
    path: Path,
    local_time: datetime | None,
    *,
    make: str = "Acme",
    model: str = "DashCam 1",
    gps: tuple[float, float] | None = None,
) -> None:
    """A small real JPEG whose EXIF holds a naive camera time (with SubSec) and maybe GPS."""
    image = Image.new("RGB", (32, 24), (90, 140, 200))
    zeroth = {piexif.ImageIFD.Make: make.encode(), piexif.ImageIFD.Model: model.encode()}
    exif_ifd: dict[int, bytes] = {}
    gps_ifd: dict[int, object] = {}
    if local_time is not None:
        exif_ifd[piexif.ExifIFD.DateTimeOriginal] = local_time.strftime(
            "%Y:%m:%d %H:%M:%S"
        ).encode()
        exif_ifd[piexif.ExifIFD.SubSecTimeOriginal] = (
            f"{local_time.microsecond // 1000:03d}".encode()
        )
    if gps is not None:
        lat, lon = gps
        gps_ifd = {
            piexif.GPSIFD.GPSLatitudeRef: b"N" if lat >= 0 else b"S",
            piexif.GPSIFD.GPSLatitude: _dms(abs(lat)),
            piexif.GPSIFD.GPSLongitudeRef: b"E" if lon >= 0 else b"W",
            piexif.GPSIFD.GPSLongitude: _dms(abs(lon)),
        }
    blob = piexif.dump({"0th": zeroth, "Exif": exif_ifd, "GPS": gps_ifd})
    image.save(path, "JPEG", exif=blob, quality=70)


def _dms(value: float) -> tuple[tuple[int, int], ...]:
    d = int(value)
    m = int((value - d) * 60)
    s = round(((value - d) * 60 - m) * 60 * 1_000_000)
    return ((d, 1), (m, 1), (s, 1_000_000))


def jpeg_bytes(
    local_time: datetime, *, size: tuple[int, int] = (32, 24), quality: int = 70
) -> bytes:
    """A photo's bytes at the fixed timeline's look (see :func:`write_jpeg_bytes` for a drive)."""
    image = Image.new("RGB", size, (90, 140, 200))
    exif_ifd = {
        piexif.ExifIFD.DateTimeOriginal: local_time.strftime("%Y:%m:%d %H:%M:%S").encode(),
        piexif.ExifIFD.SubSecTimeOriginal: f"{local_time.microsecond // 1000:03d}".encode(),
    }
    zeroth = {piexif.ImageIFD.Make: b"Acme", piexif.ImageIFD.Model: b"DashCam 1"}
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=piexif.dump({"0th": zeroth, "Exif": exif_ifd}), quality=quality)
    return buf.getvalue()


Zone = str | tzinfo | timedelta


def _zone(camera_tz: Zone) -> tzinfo:
    if isinstance(camera_tz, timedelta):
        return timezone(camera_tz)
    if isinstance(camera_tz, str):
        from daemon.pipeline.dates import parse_zone

        return parse_zone(camera_tz)[0]
    return camera_tz


@lru_cache(maxsize=16)
def _picture(size: tuple[int, int], quality: int) -> tuple[bytes, bytes]:
    """A noisy picture encoded once per size and quality, split where the EXIF segment goes.

    A 64×64 noise tile repeated over the frame compresses as badly as pure noise (JPEG codes each
    8×8 block on its own), so 2400×1800 at quality 85 makes a 3 MB file for milliseconds of work.
    """
    tile = Image.frombytes(
        "RGB", (64, 64), random.Random(size[0] * 7919 + size[1]).randbytes(12288)
    )
    image = Image.new("RGB", size)
    for x in range(0, size[0], 64):
        for y in range(0, size[1], 64):
            image.paste(tile, (x, y))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    data = buf.getvalue()
    at = 2  # after SOI, and after the JFIF APP0 Pillow writes first
    if data[2:4] == b"\xff\xe0":
        at = 4 + int.from_bytes(data[4:6], "big")
    return data[:at], data[at:]


def _exif(
    photo: Photo,
    zone: tzinfo,
    camera_offset_s: float,
    with_gps: bool,
    make: str,
    model: str,
) -> bytes:
    local = (photo.time + timedelta(seconds=camera_offset_s)).astimezone(zone).replace(tzinfo=None)
    exif_ifd = {
        piexif.ExifIFD.DateTimeOriginal: local.strftime("%Y:%m:%d %H:%M:%S").encode(),
        piexif.ExifIFD.SubSecTimeOriginal: f"{local.microsecond // 1000:03d}".encode(),
    }
    zeroth = {piexif.ImageIFD.Make: make.encode(), piexif.ImageIFD.Model: model.encode()}
    gps_ifd: dict[int, object] = {}
    if with_gps:
        g = piexif.GPSIFD
        t = photo.time
        gps_ifd = {
            g.GPSVersionID: (2, 2, 0, 0),
            g.GPSLatitudeRef: b"N" if photo.gps_lat >= 0 else b"S",
            g.GPSLatitude: _dms(abs(photo.gps_lat)),
            g.GPSLongitudeRef: b"E" if photo.gps_lon >= 0 else b"W",
            g.GPSLongitude: _dms(abs(photo.gps_lon)),
            g.GPSAltitudeRef: 0 if photo.gps_ele >= 0 else 1,
            g.GPSAltitude: (round(abs(photo.gps_ele) * 100), 100),
            g.GPSImgDirectionRef: b"T",
            g.GPSImgDirection: (round(photo.heading * 100) % 36000, 100),
            g.GPSDateStamp: t.strftime("%Y:%m:%d").encode(),
            g.GPSTimeStamp: (
                (t.hour, 1),
                (t.minute, 1),
                (t.second * 1000 + t.microsecond // 1000, 1000),
            ),
        }
    payload = piexif.dump({"0th": zeroth, "Exif": exif_ifd, "GPS": gps_ifd})
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


def camera_local_time(photo: Photo, camera_tz: Zone, camera_offset_s: float = 0.0) -> datetime:
    """The naive time the camera writes for ``photo`` (its clock ``camera_offset_s`` ahead)."""
    moment = photo.time + timedelta(seconds=camera_offset_s)
    return moment.astimezone(_zone(camera_tz)).replace(tzinfo=None)


@dataclass(frozen=True)
class Camera:
    """How a camera writes each photo of a drive.

    EXIF: DateTimeOriginal + SubSecTimeOriginal in the camera's zone with no offset tag (as most
    cameras write), its clock ``camera_offset_s`` ahead of true time; Make/Model; with
    ``with_gps_in_exif``, the GPS log's position at the true time, altitude, true heading and the
    GPS time stamp (true UTC).
    """

    camera_tz: Zone = "+02:00"
    camera_offset_s: float = 0.0
    with_gps_in_exif: bool = False
    jpeg_size: tuple[int, int] = (64, 48)
    quality: int = 80
    make: str = "Acme"
    model: str = "DashCam 1"

    @cached_property
    def zone(self) -> tzinfo:
        return _zone(self.camera_tz)  # once per camera: a named zone is slow to parse

    def jpeg(self, photo: Photo) -> bytes:
        head, body = _picture((self.jpeg_size[0], self.jpeg_size[1]), self.quality)
        segment = _exif(
            photo, self.zone, self.camera_offset_s, self.with_gps_in_exif, self.make, self.model
        )
        return b"".join((head, segment, body))


def write_jpeg_bytes(photo: Photo, **camera: Any) -> bytes:
    """The bytes of one photo, for callers that write them at their own pace (a slow camera);
    ``camera``: the fields of :class:`Camera`."""
    return Camera(**camera).jpeg(photo)


def write_drive(
    drive: Drive,
    folder: Path,
    *,
    name_pattern: str = "G%07d.JPG",
    gpx_name: str | None = "track.gpx",
    **camera: Any,
) -> list[Path]:
    """Write every photo of ``drive`` into ``folder`` (names from ``name_pattern`` and the
    photo's index; ``camera``: the fields of :class:`Camera`) and the GPS log as ``gpx_name``
    (None: no GPX). Returns the photo paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    writer = Camera(**camera)
    paths = []
    for photo in drive.photos:
        path = folder / (name_pattern % photo.index)
        path.write_bytes(writer.jpeg(photo))
        paths.append(path)
    if gpx_name:
        (folder / gpx_name).write_text(drive.gpx_text(), encoding="utf-8")
    return paths
