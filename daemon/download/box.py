"""Bounding boxes: parsing the user's corners, the graph API's ``bbox`` text, splitting in four."""

from __future__ import annotations

import math
from dataclasses import dataclass

# A box narrower and lower than this (about a metre) is not split any further: more than a
# search's limit of images inside it is not a city but a server repeating itself.
MIN_SIDE_DEG = 1e-5


@dataclass(frozen=True)
class Box:
    """A latitude/longitude box, edges included. West is never east of east (no antimeridian)."""

    west: float
    south: float
    east: float
    north: float

    @classmethod
    def from_corners(cls, min_lat: float, max_lat: float, min_lon: float, max_lon: float) -> Box:
        """The box of the old script's argument order; ValueError saying what is wrong.

        >>> Box.from_corners(48.1, 48.2, 11.5, 11.6)
        Box(west=11.5, south=48.1, east=11.6, north=48.2)
        >>> Box.from_corners(48.2, 48.1, 11.5, 11.6)
        Traceback (most recent call last):
        ...
        ValueError: MIN_LAT 48.2 is above MAX_LAT 48.1
        >>> Box.from_corners(48.1, 48.2, 179.5, -179.5)
        Traceback (most recent call last):
        ...
        ValueError: MIN_LON 179.5 is east of MAX_LON -179.5 (a box across the antimeridian: download it as two boxes)
        """
        for name, value, limit in (
            ("MIN_LAT", min_lat, 90.0),
            ("MAX_LAT", max_lat, 90.0),
            ("MIN_LON", min_lon, 180.0),
            ("MAX_LON", max_lon, 180.0),
        ):
            if not math.isfinite(value) or abs(value) > limit:
                raise ValueError(f"{name} {value} is not within -{limit:g}..{limit:g}")
        if min_lat > max_lat:
            raise ValueError(f"MIN_LAT {min_lat} is above MAX_LAT {max_lat}")
        if min_lon > max_lon:
            raise ValueError(
                f"MIN_LON {min_lon} is east of MAX_LON {max_lon} "
                "(a box across the antimeridian: download it as two boxes)"
            )
        return cls(min_lon, min_lat, max_lon, max_lat)

    @classmethod
    def parse(cls, text: str) -> Box:
        """``W,S,E,N`` as the graph API writes it (``--bbox``).

        >>> Box.parse("11.5,48.1,11.6,48.2")
        Box(west=11.5, south=48.1, east=11.6, north=48.2)
        >>> Box.parse("11.5,48.1")
        Traceback (most recent call last):
        ...
        ValueError: --bbox '11.5,48.1' is not four numbers W,S,E,N
        """
        try:
            west, south, east, north = (float(part) for part in text.split(","))
        except ValueError:
            raise ValueError(f"--bbox {text!r} is not four numbers W,S,E,N") from None
        return cls.from_corners(south, north, west, east)

    def param(self) -> str:
        """The ``bbox`` query value: minLon,minLat,maxLon,maxLat (repr keeps every digit).

        >>> Box(11.5, 48.1, 11.6, 48.2).param()
        '11.5,48.1,11.6,48.2'
        """
        return ",".join(repr(v) for v in (self.west, self.south, self.east, self.north))

    def contains(self, lat: float, lon: float) -> bool:
        return self.south <= lat <= self.north and self.west <= lon <= self.east

    @property
    def splittable(self) -> bool:
        return max(self.east - self.west, self.north - self.south) >= MIN_SIDE_DEG

    def quadrants(self) -> list[Box]:
        """Four boxes covering this one; they share their inner edges (so results overlap there).

        >>> [q.param() for q in Box(0.0, 0.0, 2.0, 2.0).quadrants()]
        ['0.0,0.0,1.0,1.0', '1.0,0.0,2.0,1.0', '0.0,1.0,1.0,2.0', '1.0,1.0,2.0,2.0']
        """
        mid_lon = (self.west + self.east) / 2
        mid_lat = (self.south + self.north) / 2
        return [
            Box(self.west, self.south, mid_lon, mid_lat),
            Box(mid_lon, self.south, self.east, mid_lat),
            Box(self.west, mid_lat, mid_lon, self.north),
            Box(mid_lon, mid_lat, self.east, self.north),
        ]
