"""Small helpers shared by the tests: bounded polling and hand-built registries (the browser is tests/browser.py)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def wait_for(predicate: Callable[[], Awaitable[T]], timeout: float = 10.0, interval: float = 0.05) -> T:
    """Poll an async predicate until it returns something truthy; fail at the deadline."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value {value!r})")
        await asyncio.sleep(interval)


def small_registry() -> dict[str, Any]:
    """One street, a comprehensive grid with two micro-grids, two buildings, workers at each level."""
    return {
        "streets": [{"id": "RJ", "name": "瑞金二路街道"}],
        "grids": [
            {"id": "RJ-G1", "street_id": "RJ", "parent_id": None, "name": "第一综合网格"},
            {"id": "RJ-G1-M01", "street_id": "RJ", "parent_id": "RJ-G1", "name": "微网格01"},
            {"id": "RJ-G1-M02", "street_id": "RJ", "parent_id": "RJ-G1", "name": "微网格02"},
        ],
        "buildings": [
            {
                "id": "RJ-B0001",
                "grid_id": "RJ-G1-M01",
                "address": "瑞金二路 1 弄 1 号",
                "location": [121.466, 31.213],
                "floors": 6,
            },
            {
                "id": "RJ-B0002",
                "grid_id": "RJ-G1-M02",
                "address": "瑞金二路 1 弄 2 号",
                "location": [121.467, 31.214],
                "floors": 12,
            },
        ],
        "households": [
            {
                "id": "RJ-H000001",
                "building_id": "RJ-B0001",
                "unit": "1-101",
                "registered_occupants": 1,
                "tags": ["lone_elder"],
                "contacts": [{"name": "王某", "phone": "+8613800000000", "relation": "daughter"}],
            },
        ],
        "devices": [
            {"id": "SM-0001", "type": "smoke", "building_id": "RJ-B0001", "location": "public kitchen 1F"},
            {"id": "SM-0002", "type": "smoke", "building_id": "RJ-B0001", "location": "corridor 3F"},
            {"id": "SM-0003", "type": "smoke", "building_id": "RJ-B0002", "location": "corridor 2F"},
            {"id": "WM-000001", "type": "water", "household_id": "RJ-H000001"},
            {"id": "EL-0002", "type": "elevator", "building_id": "RJ-B0002"},
        ],
        "workers": [
            {"id": "W-17", "name": "李某", "phone": "+8613900000000", "grid_id": "RJ-G1-M01", "role": "grid_worker"},
            {"id": "W-09", "name": "赵某", "phone": "+8613900000001", "grid_id": "RJ-G1-M01", "role": "grid_worker"},
            {"id": "W-LEAD", "name": "张某", "grid_id": "RJ-G1", "role": "grid_leader"},
            {"id": "W-CENTER", "name": "值班", "grid_id": None, "role": "street_center"},
        ],
    }


# G1 spans both micro-grids; M01's ring is given clockwise and open, M02's counterclockwise and closed.
POLYGONS = {
    "RJ-G1": [[121.464, 31.211], [121.470, 31.211], [121.470, 31.216], [121.464, 31.216]],
    "RJ-G1-M01": [[121.464, 31.211], [121.464, 31.216], [121.4665, 31.216], [121.4665, 31.211]],
    "RJ-G1-M02": [[121.4665, 31.211], [121.470, 31.211], [121.470, 31.216], [121.4665, 31.216], [121.4665, 31.211]],
}


def screen_registry() -> dict[str, Any]:
    """small_registry with the grids' polygons, as the map draws them."""
    reg = copy.deepcopy(small_registry())
    for g in reg["grids"]:
        g["polygon"] = POLYGONS[g["id"]]
    return reg
