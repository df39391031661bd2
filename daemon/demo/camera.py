"""Writing drives to disk as a camera and a GPS logger would: real JPEGs and GPX files.

:class:`Camera` writes the photos of a planned drive (:mod:`daemon.demo.route`). Each picture
shows what the camera sees where it truly is (:func:`scene`: a made-up street of ground and
facades, looked at along the heading), so photos taken standing still look alike and photos
taken on the move do not, as the clock finder (:mod:`daemon.pipeline.clock`) expects of a real
camera. Small pictures (up to 640×480) are the scene itself, encoded per photo in well under a
millisecond; bigger ones keep a noise picture encoded once per size (a 3 MB file for no work)
and carry the scene as their EXIF thumbnail, as a camera's thumbnail shows its picture.
:func:`write_jpeg`, :func:`jpeg_bytes` and :func:`write_gpx` make the small files of the fixed
timeline (:mod:`daemon.demo.timeline`).
"""

from __future__ import annotations

import io
import math
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
    buf = io.BytesIO()
    _noise_image(size).save(buf, "JPEG", quality=quality)
    return _split(buf.getvalue())


@lru_cache(maxsize=16)
def _noise_image(size: tuple[int, int]) -> Image.Image:
    tile = Image.frombytes(
        "RGB", (64, 64), random.Random(size[0] * 7919 + size[1]).randbytes(12288)
    )
    image = Image.new("RGB", size)
    for x in range(0, size[0], 64):
        for y in range(0, size[1], 64):
            image.paste(tile, (x, y))
    return image


def _split(data: bytes) -> tuple[bytes, bytes]:
    """A JPEG split where the EXIF segment goes: after SOI and the JFIF APP0 Pillow writes."""
    at = 2
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
    thumbnail: bytes | None = None,
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
    parts: dict[str, Any] = {"0th": zeroth, "Exif": exif_ifd, "GPS": gps_ifd}
    if thumbnail is not None:
        parts.update({"1st": {piexif.ImageIFD.Compression: 6}, "thumbnail": thumbnail})
    payload = piexif.dump(parts)
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


def camera_local_time(photo: Photo, camera_tz: Zone, camera_offset_s: float = 0.0) -> datetime:
    """The naive time the camera writes for ``photo`` (its clock ``camera_offset_s`` ahead)."""
    moment = photo.time + timedelta(seconds=camera_offset_s)
    return moment.astimezone(_zone(camera_tz)).replace(tzinfo=None)


SCENE_SIZE = (16, 12)  # samples of the scene per photo; Pillow scales them up
_BIG = 640 * 480  # above this many pixels, the scene goes into the EXIF thumbnail only
GRAIN = 0.5  # share of the fixed noise in a small photo: its file as big as before the scene


def _hash01(ix: int, iy: int, salt: int) -> float:
    h = (ix * 374761393 + iy * 668265263 + salt * 2147483647) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    return ((h ^ (h >> 16)) & 0xFFFF) / 65535.0


def _noise(x: float, y: float, cell: float, salt: int) -> float:
    """Smooth value noise in [0, 1] over the world's metres (the same street for every drive)."""
    gx, gy = x / cell, y / cell
    ix, iy = math.floor(gx), math.floor(gy)
    fx, fy = gx - ix, gy - iy
    a, b = _hash01(ix, iy, salt), _hash01(ix + 1, iy, salt)
    c, d = _hash01(ix, iy + 1, salt), _hash01(ix + 1, iy + 1, salt)
    top, bottom = a + (b - a) * fx, c + (d - c) * fx
    return top + (bottom - top) * fy


def scene(photo: Photo, size: tuple[int, int] = SCENE_SIZE) -> bytes:
    """Gray levels of what the camera sees at ``photo``'s true place and heading: facades 25 m
    ahead (their outline and shade), the ground between 3 and 25 m, a little sensor noise.
    Standing still it sees the same; a few metres on, the near ground changes; 20 m on, all."""
    w, h = size
    x = photo.lon * 111_320.0 * math.cos(math.radians(photo.lat))
    y = photo.lat * 110_540.0
    rng = random.Random(photo.index)
    horizon = h // 2
    out = bytearray()
    columns = []
    for c in range(w):
        az = math.radians(photo.heading + (c / (w - 1) - 0.5) * 60.0)
        dx, dy = math.sin(az), math.cos(az)
        fx, fy = x + 25.0 * dx, y + 25.0 * dy
        top = horizon * (0.2 + 0.8 * _noise(fx, fy, 9.0, 1))
        columns.append((dx, dy, top, 60 + 150 * _noise(fx, fy, 4.0, 2)))
    for r in range(h):
        for dx, dy, top, facade in columns:
            if r < top:
                level = 215.0
            elif r < horizon:
                level = facade
            else:
                d = 3.0 + 22.0 * (h - 1 - r) / max(1, h - 1 - horizon)
                level = 40 + 170 * _noise(x + d * dx, y + d * dy, 2.5, 3)
            out.append(max(0, min(255, round(level + rng.gauss(0, 1.5)))))
    return bytes(out)


def _scene_jpeg(photo: Photo, size: tuple[int, int], quality: int, grain: bool = True) -> bytes:
    """The scene at ``size``; with ``grain``, over the same fine noise in every photo (it
    weighs as much as a real photo's detail, and a small decode averages it away)."""
    small = Image.frombytes("L", SCENE_SIZE, scene(photo))
    picture = small.resize(size, Image.Resampling.BILINEAR).convert("RGB")
    if grain:  # the scene's contrast raised first, so that it shows as much through the noise
        stretch = 1.0 / (1.0 - GRAIN)
        small = small.point(lambda v: round(128 + (v - 128) * stretch))
        picture = small.resize(size, Image.Resampling.BILINEAR).convert("RGB")
        picture = Image.blend(picture, _noise_image(size), GRAIN)
    buf = io.BytesIO()
    picture.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


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
        size = (self.jpeg_size[0], self.jpeg_size[1])
        big = size[0] * size[1] > _BIG
        if big:
            head, body = _picture(size, self.quality)
            thumbnail: bytes | None = _scene_jpeg(photo, (160, 120), 75, grain=False)
        else:
            head, body = _split(_scene_jpeg(photo, size, self.quality))
            thumbnail = None
        segment = _exif(
            photo,
            self.zone,
            self.camera_offset_s,
            self.with_gps_in_exif,
            self.make,
            self.model,
            thumbnail,
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
