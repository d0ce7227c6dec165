"""Arriving at the scene: the browser's position, when it gives one, checked against the building's.

`check` is pure: the great-circle distance (haversine, on the WGS-84 mean radius) from the reported
position to the building's registry location, and whether it lies within the radius
(WHISTLE_ARRIVE_RADIUS_M, 200 m by default: a residential compound's gate to its farthest block, and
the few tens of metres a phone's fix is off indoors). The arrival is recorded either way, with what was
known: no position (the worker refused, or the phone had none), or a building without a location, is
an arrival with `within` unknown, never a refused one — the check informs the operations center, it
does not keep a worker from saying they are there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

EARTH_RADIUS_M = 6_371_008.8  # the IUGG mean radius


@dataclass(frozen=True, slots=True)
class Position:
    """What the browser's Geolocation API reported: WGS-84 degrees and the accuracy radius in metres."""

    lat: float
    lon: float
    accuracy_m: float | None = None


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in metres between two (lon, lat) points in degrees."""
    lon1, lat1, lon2, lat2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True, slots=True)
class ArrivalCheck:
    """How a reported arrival compares with the building: recorded in the ticket's history as it is."""

    position: Position | None
    building: tuple[float, float] | None  # (lon, lat)
    radius_m: float
    distance_m: float | None
    within: bool | None  # None: not known (no position, or the building has no location)

    def to_json(self) -> dict[str, Any]:
        p = self.position
        return {
            "position": None if p is None else {"lat": p.lat, "lon": p.lon, "accuracy_m": p.accuracy_m},
            "distance_m": None if self.distance_m is None else round(self.distance_m, 1),
            "radius_m": self.radius_m,
            "within_radius": self.within,
            "building_located": self.building is not None,
        }


def check(position: Position | None, building: tuple[float, float] | None, radius_m: float) -> ArrivalCheck:
    """Compare a reported position with the building's location."""
    if position is None or building is None:
        return ArrivalCheck(position, building, radius_m, None, None)
    d = distance_m((position.lon, position.lat), building)
    return ArrivalCheck(position, building, radius_m, d, d <= radius_m)
