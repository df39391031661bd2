"""``images.geojson``: one Point feature per image on disk, so other tools can map the download."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from daemon.core.durable import put_in_place, write_temp
from daemon.download.search import RemoteImage

INDEX_NAME = "images.geojson"


def feature(image: RemoteImage, file: str) -> dict[str, Any]:
    """
    >>> f = feature(RemoteImage("7", 48.1, 11.5, 1000, 90.0, "s1", "https://x/7.jpg"), "7.jpg")
    >>> f["geometry"], f["properties"]["file"]
    ({'type': 'Point', 'coordinates': [11.5, 48.1]}, '7.jpg')
    """
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [image.lon, image.lat]},
        "properties": {
            "id": image.id,
            "captured_at": image.captured_at,
            "compass_angle": image.compass_angle,
            "sequence": image.sequence,
            "file": file,
        },
    }


def write_index(out: Path, entries: Iterable[tuple[RemoteImage, str]]) -> Path:
    """Write the index of ``(image, file name)`` pairs atomically; returns its path."""
    path = out / INDEX_NAME
    collection = {"type": "FeatureCollection", "features": [feature(i, f) for i, f in entries]}
    text = json.dumps(collection, separators=(",", ":")) + "\n"
    # The job makes the folder durable once, after the images and this file.
    put_in_place(write_temp(path, text), path)
    return path
