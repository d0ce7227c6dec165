"""A small deterministic district: street → grids → buildings → households → devices, and workers.

The same seed always gives the same registry. Shares and ranges follow ../shared/DOMAIN.md
loosely; the calibrated generator is the simulator issue's work.
"""

from __future__ import annotations

import random
from typing import Any

CENTER = (121.466, 31.213)  # 瑞金二路, Huangpu, Shanghai
HOUSEHOLDS_PER_BUILDING = 12
BUILDINGS_PER_GRID = 4


def generate(
    households: int = 200, *, seed: int = 1, street_id: str = "RJ", street_name: str = "瑞金二路街道"
) -> dict[str, Any]:
    """The registry document (CONTRACT.md §2) of a generated district."""
    rng = random.Random(seed)
    n_buildings = max(1, -(-households // HOUSEHOLDS_PER_BUILDING))
    n_micro = max(1, -(-n_buildings // BUILDINGS_PER_GRID))
    root = f"{street_id}-G1"
    grids: list[dict[str, Any]] = [
        {
            "id": root,
            "street_id": street_id,
            "parent_id": None,
            "name": "第一综合网格",
            "polygon": _square(CENTER, 0.01),
        }
    ]
    workers: list[dict[str, Any]] = [
        {"id": f"{street_id}-W-LEAD", "name": "网格长", "phone": _phone(rng), "grid_id": root, "role": "grid_leader"},
        {
            "id": f"{street_id}-W-CENTER",
            "name": "城运中心值班",
            "phone": _phone(rng),
            "grid_id": None,
            "role": "street_center",
        },
        {"id": f"{street_id}-W-PROP", "name": "物业", "phone": _phone(rng), "grid_id": root, "role": "property"},
        {
            "id": f"{street_id}-W-ELEV",
            "name": "电梯维保",
            "phone": _phone(rng),
            "grid_id": root,
            "role": "elevator_maintainer",
        },
    ]
    for m in range(1, n_micro + 1):
        gid = f"{root}-M{m:02d}"
        c = (CENTER[0] - 0.004 + 0.002 * (m % 5), CENTER[1] - 0.004 + 0.002 * (m // 5))
        grids.append(
            {
                "id": gid,
                "street_id": street_id,
                "parent_id": root,
                "name": f"微网格{m:02d}",
                "polygon": _square(c, 0.0009),
            }
        )
        workers.append(
            {
                "id": f"{street_id}-W{m:03d}",
                "name": f"网格员{m:02d}",
                "phone": _phone(rng),
                "grid_id": gid,
                "role": "grid_worker",
            }
        )
    buildings: list[dict[str, Any]] = []
    devices: list[dict[str, Any]] = []
    for b in range(n_buildings):
        bid = f"{street_id}-B{b + 1:04d}"
        grid = grids[1 + b // BUILDINGS_PER_GRID]
        lon, lat = grid["polygon"][0]
        floors = rng.choice([6, 6, 6, 7, 12, 18])
        buildings.append(
            {
                "id": bid,
                "grid_id": grid["id"],
                "address": f"瑞金二路 {b // 4 + 1} 弄 {b % 4 + 1} 号",
                "location": [round(lon + rng.uniform(0, 0.0018), 6), round(lat + rng.uniform(0, 0.0018), 6)],
                "floors": floors,
            }
        )
        devices.append(
            {"id": f"SM-{b + 1:04d}-1", "type": "smoke", "building_id": bid, "location": "public kitchen 1F"}
        )
        devices.append({"id": f"SM-{b + 1:04d}-2", "type": "smoke", "building_id": bid, "location": "corridor 3F"})
        if floors > 6:
            devices.append({"id": f"EL-{b + 1:04d}", "type": "elevator", "building_id": bid})
    hh: list[dict[str, Any]] = []
    for h in range(households):
        hid = f"{street_id}-H{h + 1:06d}"
        b = h // HOUSEHOLDS_PER_BUILDING
        occupants = rng.choices([1, 2, 3, 4, 5], weights=[20, 32, 28, 14, 6])[0]
        tags = []
        if occupants == 1 and rng.random() < 0.4:
            tags.append("lone_elder")
        if rng.random() < 0.1:
            tags.append("rental")
        hh.append(
            {
                "id": hid,
                "building_id": buildings[b]["id"],
                "unit": f"{h % 6 + 1}-{(h // 6) % 6 + 1}02",
                "registered_occupants": occupants,
                "tags": tags,
                "contacts": [{"name": "家属", "phone": _phone(rng), "relation": "child"}] if tags else [],
            }
        )
        devices.append({"id": f"WM-{h + 1:06d}", "type": "water", "household_id": hid})
        devices.append({"id": f"PM-{h + 1:06d}", "type": "power", "household_id": hid})
    return {
        "streets": [{"id": street_id, "name": street_name}],
        "grids": grids,
        "buildings": buildings,
        "households": hh,
        "devices": devices,
        "workers": workers,
    }


def _square(c: tuple[float, float], r: float) -> list[list[float]]:
    return [
        [round(c[0] - r, 6), round(c[1] - r, 6)],
        [round(c[0] + r, 6), round(c[1] - r, 6)],
        [round(c[0] + r, 6), round(c[1] + r, 6)],
        [round(c[0] - r, 6), round(c[1] + r, 6)],
    ]


def _phone(rng: random.Random) -> str:
    return f"+86138{rng.randrange(10**8):08d}"
