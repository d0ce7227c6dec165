"""Coordinates for the map: the registry's WGS-84, GCJ-02 for a Chinese basemap, GeoJSON rings.

Registry locations and polygons are WGS-84 `[longitude, latitude]` (CONTRACT.md §2). Basemaps
published in China (AMap, Tencent and most self-hosted copies of them) are drawn in GCJ-02, which
shifts WGS-84 by a few hundred metres; a map drawn over such tiles converts every coordinate with
the GCJ-02 formula as it is commonly reimplemented (e.g. wandergis/coordtransform,
googollee/eviltransform). Outside China the two coincide.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum

LonLat = tuple[float, float]

_A = 6378245.0  # Krasovsky 1940 semi-major axis, as the GCJ-02 formula uses it
_EE = 0.00669342162296594323  # its first eccentricity squared


class Crs(StrEnum):
    WGS84 = "wgs84"
    GCJ02 = "gcj02"


def out_of_china(lon: float, lat: float) -> bool:
    """The rough box outside which GCJ-02 equals WGS-84."""
    return not (72.004 <= lon <= 137.8347 and 0.8293 <= lat <= 55.8271)


def _dlat(x: float, y: float) -> float:
    r = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    r += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    r += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    r += (160.0 * math.sin(y / 12.0 * math.pi) + 320.0 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    return r


def _dlon(x: float, y: float) -> float:
    r = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    r += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    r += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    r += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    return r


def wgs84_to_gcj02(lon: float, lat: float) -> LonLat:
    """A WGS-84 point in GCJ-02 (unchanged outside China)."""
    if out_of_china(lon, lat):
        return lon, lat
    dlat = _dlat(lon - 105.0, lat - 35.0)
    dlon = _dlon(lon - 105.0, lat - 35.0)
    rad = lat / 180.0 * math.pi
    magic = 1 - _EE * math.sin(rad) ** 2
    sqrt_magic = math.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * sqrt_magic) * math.pi)
    dlon = (dlon * 180.0) / (_A / sqrt_magic * math.cos(rad) * math.pi)
    return lon + dlon, lat + dlat


def convert(point: Sequence[float], crs: Crs) -> LonLat:
    """A registry (WGS-84) point in the map's coordinate system, rounded to 7 decimals (~1 cm)."""
    lon, lat = float(point[0]), float(point[1])
    if crs is Crs.GCJ02:
        lon, lat = wgs84_to_gcj02(lon, lat)
    return round(lon, 7), round(lat, 7)


def ring(points: Sequence[Sequence[float]], crs: Crs) -> list[LonLat] | None:
    """A closed, counterclockwise GeoJSON ring (RFC 7946 §3.1.6) from a registry polygon; None if degenerate."""
    pts = [convert(p, crs) for p in points]
    if len(pts) >= 2 and pts[0] == pts[-1]:
        pts.pop()
    if len(pts) < 3:
        return None
    area2 = sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(pts, pts[1:] + pts[:1], strict=True))
    if area2 < 0:
        pts = [pts[0], *reversed(pts[1:])]
    return [*pts, pts[0]]


def bbox(points: Sequence[LonLat]) -> tuple[float, float, float, float] | None:
    """(west, south, east, north) of some points, or None."""
    if not points:
        return None
    lons = [p[0] for p in points]
    lats = [p[1] for p in points]
    return min(lons), min(lats), max(lons), max(lats)
