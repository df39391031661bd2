"""Distances, bearings and angle arithmetic on the WGS84 sphere approximation."""

from __future__ import annotations

import math

EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG)


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine; stable for the short hops between photos).

    >>> round(distance_m(0.0, 0.0, 0.0, 1.0))
    111195
    """
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial bearing from point 1 to point 2, degrees clockwise from true north in [0, 360).

    >>> bearing_deg(0.0, 0.0, 1.0, 0.0), bearing_deg(0.0, 0.0, 0.0, 1.0)
    (0.0, 90.0)
    """
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    x = math.sin(dl) * math.cos(p2)
    y = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return normalize_deg(math.degrees(math.atan2(x, y)))


def normalize_deg(angle: float) -> float:
    """Angle in [0, 360).

    >>> normalize_deg(-90.0), normalize_deg(720.5)
    (270.0, 0.5)
    """
    a = math.fmod(angle, 360.0)
    if a < 0:
        a += 360.0
    return 0.0 if a >= 360.0 else a


def angle_diff_deg(a: float, b: float) -> float:
    """Smallest absolute difference between two headings, in [0, 180], wrapping at 360.

    >>> angle_diff_deg(350.0, 10.0), angle_diff_deg(90.0, 270.0)
    (20.0, 180.0)
    """
    d = abs(normalize_deg(a) - normalize_deg(b))
    return 360.0 - d if d > 180.0 else d


def destination(lat: float, lon: float, bearing: float, dist_m: float) -> tuple[float, float]:
    """Point reached from (lat, lon) going dist_m metres on the given initial bearing."""
    d = dist_m / EARTH_RADIUS_M
    t = math.radians(bearing)
    p1, l1 = math.radians(lat), math.radians(lon)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(t))
    l2 = l1 + math.atan2(
        math.sin(t) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2)
    )
    return math.degrees(p2), (math.degrees(l2) + 540.0) % 360.0 - 180.0


def local_to_latlon(
    origin: tuple[float, float], east_m: float, north_m: float
) -> tuple[float, float]:
    """The point ``east_m``/``north_m`` metres from ``origin`` (lat, lon) on a flat local plane
    (an equirectangular approximation: good to centimetres over a few kilometres).

    >>> lat, lon = local_to_latlon((0.0, 0.0), 0.0, 1000.0)
    >>> round(distance_m(0.0, 0.0, lat, lon), 3)
    1000.0
    """
    k = math.pi * EARTH_RADIUS_M / 180.0
    return origin[0] + north_m / k, origin[1] + east_m / (k * math.cos(math.radians(origin[0])))
