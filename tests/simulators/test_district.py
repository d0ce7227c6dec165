"""The generated street: the seed case's shape at full scale, realistic households, devices where they belong."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest

from simulators.district import District, Persona, build_district, generate, street_shape
from simulators.params import DistrictParams, Params
from whistle.registry import parse_registry

ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


def levels(doc: dict) -> tuple[list[dict], list[dict], list[dict]]:
    grids = {g["id"]: g for g in doc["grids"]}
    comp = [g for g in doc["grids"] if g["parent_id"] is None]
    res = [g for g in doc["grids"] if g["parent_id"] is not None and grids[g["parent_id"]]["parent_id"] is None]
    micro = [g for g in doc["grids"] if g not in comp and g not in res]
    return comp, res, micro


def bbox(poly: list[list[float]]) -> tuple[float, float, float, float]:
    xs, ys = [p[0] for p in poly], [p[1] for p in poly]
    return min(xs), min(ys), max(xs), max(ys)


def test_full_scale_has_the_seed_cases_shape(full_district: District) -> None:
    doc = full_district.registry
    comp, res, micro = levels(doc)
    assert (len(comp), len(res), len(micro)) == (3, 16, 40)
    assert len(doc["buildings"]) == 658
    assert len(doc["households"]) == 25_000
    micro_ids = {g["id"] for g in micro}
    assert {b["grid_id"] for b in doc["buildings"]} == micro_ids  # every micro-grid has buildings
    # the area is the street's 1.93 km², near the chosen centre, in real lon/lat
    x0, y0, x1, y1 = np.array([bbox(g["polygon"]) for g in comp]).T
    lon0, lat0 = DistrictParams().center
    km2 = (x1.max() - x0.min()) * 111.32 * np.cos(np.radians(lat0)) * (y1.max() - y0.min()) * 110.57
    assert 1.85 < km2 < 2.0
    assert abs((x0.min() + x1.max()) / 2 - lon0) < 1e-3 and abs((y0.min() + y1.max()) / 2 - lat0) < 1e-3


def test_grids_nest_and_buildings_stand_inside_their_micro_grid(full_district: District) -> None:
    doc = full_district.registry
    grids = {g["id"]: g for g in doc["grids"]}
    for g in doc["grids"]:
        if g["parent_id"]:
            cx0, cy0, cx1, cy1 = bbox(g["polygon"])
            px0, py0, px1, py1 = bbox(grids[g["parent_id"]]["polygon"])
            assert px0 - 1e-6 <= cx0 <= cx1 <= px1 + 1e-6 and py0 - 1e-6 <= cy0 <= cy1 <= py1 + 1e-6, g["id"]
    for b in doc["buildings"]:
        x0, y0, x1, y1 = bbox(grids[b["grid_id"]]["polygon"])
        lon, lat = b["location"]
        assert x0 < lon < x1 and y0 < lat < y1, b["id"]
        assert b["floors"] >= 2 and "号" in b["address"]


def test_households_look_like_central_shanghai(full_district: District) -> None:
    hp = full_district.households
    reg = hp.registered
    assert 2.1 <= reg.mean() <= 2.6  # census mean ≈ 2.3
    assert 0.22 <= (reg == 1).mean() <= 0.34
    assert (reg >= 5).mean() < 0.12
    assert np.all(hp.actual <= reg) and 0.02 < hp.vacant.mean() < 0.07
    tags = Counter(t for h in full_district.registry["households"] for t in h["tags"])
    assert 0.10 <= tags["lone_elder"] / 25_000 <= 0.20
    assert 0.10 <= tags["rental"] / 25_000 <= 0.22
    lone = np.array(["lone_elder" in h["tags"] for h in full_district.registry["households"]])
    assert np.all(reg[lone] == 1)
    elders = (full_district.persons.persona == Persona.ELDER).mean()
    assert 0.33 <= elders <= 0.5  # the seed: 42 % of residents are 60+
    assert 0.55 <= hp.shared_kitchen.mean() <= 0.8  # the seed: 72 % of dwellings not self-contained
    # lone elders have someone to call
    for h in full_district.registry["households"][:2000]:
        if "lone_elder" in h["tags"]:
            assert h["contacts"] and all(c["phone"].startswith("+86") for c in h["contacts"])


def test_devices_are_where_they_belong(full_district: District) -> None:
    doc = full_district.registry
    floors = {b["id"]: b["floors"] for b in doc["buildings"]}
    by_type: dict[str, list[dict]] = {}
    for dev in doc["devices"]:
        by_type.setdefault(dev["type"], []).append(dev)
    # a water and a power meter per household
    for kind in ("water", "power"):
        assert Counter(d["household_id"] for d in by_type[kind]) == Counter(h["id"] for h in doc["households"])
    # elevators only above six floors, and every such building has one
    with_lift = {d["building_id"] for d in by_type["elevator"]}
    assert all(floors[b] > 6 for b in with_lift)
    assert with_lift == {b for b, f in floors.items() if f > 6}
    # smoke detectors in public kitchens and corridors, at least one per building
    smoke = by_type["smoke"]
    assert {d["building_id"] for d in smoke} == set(floors)
    assert all(re.match(r"^(public kitchen|corridor|staircase) ", d["location"]) for d in smoke)
    kitchens = sum(d["location"].startswith("public kitchen") for d in smoke)
    assert 2500 < kitchens < 6000
    # e-bike sensors on a share of flats and of corridors
    eb = by_type["ebike"]
    flats = [d for d in eb if d.get("household_id")]
    corridors = [d for d in eb if d.get("building_id")]
    assert 0.05 < len(flats) / 25_000 < 0.11
    assert 0.45 < len(corridors) / 658 < 0.75
    ids = [d["id"] for d in doc["devices"]]
    assert len(ids) == len(set(ids)) and all(ID.match(i) for i in ids)


def test_workers_cover_every_grid(full_district: District) -> None:
    doc = full_district.registry
    comp, res, micro = levels(doc)
    roles: dict[str, set[str]] = {}
    for w in doc["workers"]:
        roles.setdefault(w["role"], set()).add(w["grid_id"])
        assert ID.match(w["id"]) and w["id"].startswith("RJ-W-")
    assert roles["grid_worker"] == {g["id"] for g in micro}
    assert roles["grid_leader"] == {g["id"] for g in comp + res}
    assert roles["property"] == {g["id"] for g in res}
    assert roles["street_center"] == {None} and roles["elevator_maintainer"]
    per_micro = Counter(w["grid_id"] for w in doc["workers"] if w["role"] == "grid_worker")
    assert 100 <= sum(per_micro.values()) <= 140  # ~140 social workers in the seed case


def test_the_registry_satisfies_the_contract() -> None:
    doc = generate(3000, seed=4)
    reg = parse_registry(doc)
    assert len(reg.households) == 3000
    ids = [x["id"] for sec in ("grids", "buildings", "households", "devices", "workers") for x in doc[sec]]
    assert len(ids) == len(set(ids)) and all(ID.match(i) for i in ids)
    buildings = {b["id"] for b in doc["buildings"]}
    households = {h["id"] for h in doc["households"]}
    grids = {g["id"] for g in doc["grids"]}
    for d in doc["devices"]:
        assert (d.get("household_id") in households) != (d.get("building_id") in buildings)
    assert all(h["building_id"] in buildings for h in doc["households"])
    assert all(b["grid_id"] in grids for b in doc["buildings"])


def test_same_seed_same_bytes_and_other_seeds_differ() -> None:
    a = json.dumps(generate(1500, seed=3), ensure_ascii=False, indent=1).encode()
    b = json.dumps(generate(1500, seed=3), ensure_ascii=False, indent=1).encode()
    c = json.dumps(generate(1500, seed=4), ensure_ascii=False, indent=1).encode()
    assert a == b and a != c


@pytest.mark.parametrize("n", [1, 7, 30, 200])
def test_small_streets_still_make_sense(n: int) -> None:
    doc = generate(n, seed=5)
    parse_registry(doc)
    assert len(doc["households"]) == n
    comp, res, micro = levels(doc)
    assert 1 <= len(comp) <= len(res) <= len(micro) <= max(4, n)
    assert {d["type"] for d in doc["devices"]} >= {"water", "power", "smoke"}


def test_scaling_follows_the_households() -> None:
    s = street_shape(12_500, DistrictParams())
    assert (s.comprehensive, s.residential, s.micro, s.buildings) == (2, 8, 20, 329)
    assert s.area_km2 == pytest.approx(1.93 / 2)


def test_params_overrides_are_applied_and_checked() -> None:
    p = Params.from_overrides({"district": {"rental_share": 0.5, "center": [121.5, 31.2]}})
    d = build_district(2000, seed=1, params=p)
    assert 0.4 < d.households.rental.mean() < 0.6
    with pytest.raises(ValueError, match="rental_shar"):
        Params.from_overrides({"district": {"rental_shar": 0.5}})
    with pytest.raises(ValueError, match="sections"):
        Params.from_overrides({"weather": {}})


def test_the_first_versions_keywords_still_work() -> None:
    doc = generate(households=12, seed=2, street_id="XH", street_name="徐汇")
    assert doc["streets"] == [{"id": "XH", "name": "徐汇"}]
    assert all(h["id"].startswith("XH-H") for h in doc["households"])
