"""The EXIF metadata we need, read and written touching only the metadata: the public API of
``daemon.media`` for photos, gathered from the modules that each do one job.

- :mod:`daemon.media.jpeg`: the container (segments, the Exif APP1, whether a file is whole);
- :mod:`daemon.media.tiff`: the TIFF structure inside the APP1, read without trusting it;
- :mod:`daemon.media.exif_read`: the values we use (capture time, GPS, orientation, ...);
- :mod:`daemon.media.exif_tags`: the entries we write, built from plain values;
- :mod:`daemon.media.exif_edit`: changing only those entries, every other byte kept in place;
- :mod:`daemon.media.exif_write`: applying an update and replacing the file atomically.
"""

from __future__ import annotations

from daemon.core.durable import put_in_place
from daemon.media.errors import MediaError
from daemon.media.exif_read import ExifInfo, exif_info_of, read_exif
from daemon.media.exif_tags import (
    ExifUpdate,
    capture_time_tags,
    capture_time_update,
    gps_tags,
    gps_update,
)
from daemon.media.exif_write import (
    edited_bytes,
    stage_exif,
    tagged_bytes,
    tagged_head,
    updated_bytes,
    write_capture_time,
    write_description,
    write_exif,
    write_gps,
)
from daemon.media.jpeg import JpegState, is_complete_jpeg, jpeg_state

__all__ = [
    "ExifInfo",
    "ExifUpdate",
    "JpegState",
    "MediaError",
    "capture_time_tags",
    "capture_time_update",
    "edited_bytes",
    "exif_info_of",
    "gps_tags",
    "gps_update",
    "is_complete_jpeg",
    "jpeg_state",
    "put_in_place",
    "read_exif",
    "stage_exif",
    "tagged_bytes",
    "tagged_head",
    "updated_bytes",
    "write_capture_time",
    "write_description",
    "write_exif",
    "write_gps",
]
