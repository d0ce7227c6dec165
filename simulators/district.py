"""A generated street shaped like 瑞金二路街道: street → grids → buildings → households → devices.

`generate(households, seed=...)` returns the registry document (CONTRACT.md §2); `build_district`
returns it together with what the registry does not say and the behaviour models need (who
really lives in each flat, their routines' kinds, the appliances, the e-bike chargers, smoke
detector batteries). Everything comes from `numpy.random.Generator`s seeded by `seed`: the
same arguments always give the same district, byte for byte. The registry's random stream is
separate from the hidden profile's, so calibrating behaviour never changes the registry.

At the reference size (25,000 households) the street has 3 comprehensive grids, 16
residential areas, 40 micro-grids and 658 building groups on 1.93 km² (the seed case); other
sizes scale the area and the counts with the number of households.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray

from simulators.params import DistrictParams, Params

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

REGISTRY_STREAM = 1
PROFILE_STREAM = 2

ROADS = (
    "瑞金二路",
    "永嘉路",
    "建国中路",
    "南昌路",
    "复兴中路",
    "陕西南路",
    "茂名南路",
    "嘉善路",
    "绍兴路",
    "泰康路",
    "建国西路",
    "思南路",
    "重庆南路",
    "合肥路",
    "淮海中路",
    "襄阳南路",
)
AREA_NAMES = (
    "思南",
    "瑞金",
    "永嘉",
    "复兴坊",
    "南昌",
    "陕建",
    "茂名",
    "嘉善",
    "绍兴",
    "泰康",
    "建国",
    "长乐",
    "重庆",
    "合肥",
    "淮海",
    "襄阳",
)
COMPREHENSIVE_NAMES = ("第一综合网格", "第二综合网格", "第三综合网格", "第四综合网格", "第五综合网格")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高沈顾钱陆蒋"
RELATIONS = ("daughter", "son", "daughter", "son", "niece", "neighbour")


class Persona(IntEnum):
    """Whose routine a resident follows (behaviour.py gives each its day)."""

    ELDER = 0
    WORKER = 1
    CHILD = 2
    RENTER_DAY = 3
    RENTER_NIGHT = 4
    VISITOR = 5
    HOMEBODY = 6  # works at home: shopkeepers in a flat


class Chemistry(IntEnum):
    LEAD_ACID = 0
    LITHIUM = 1


@dataclass(frozen=True, slots=True)
class Chargers:
    """E-bike chargers (one per row): pack, charger current and efficiency."""

    chemistry: IntArray
    pack_v: FloatArray
    current_a: FloatArray
    capacity_ah: FloatArray
    efficiency: FloatArray


@dataclass(frozen=True, slots=True)
class HouseholdProfile:
    """Per household (index = position in `registry["households"]`): the facts behind its meters."""

    building: IntArray
    registered: IntArray
    actual: IntArray
    lone_elder: BoolArray
    rental: BoolArray
    vacant: BoolArray
    shared_kitchen: BoolArray
    electric_water_heater: BoolArray
    standby_w: FloatArray
    fridge_w: FloatArray
    fridge_period: IntArray
    fridge_duty: FloatArray
    fridge_phase: IntArray
    fridge_off: BoolArray  # vacant flats mostly switch the fridge off
    ac_units: IntArray
    ac_w: FloatArray
    heater: BoolArray
    heater_w: FloatArray
    dehumidifier: BoolArray
    dehumidifier_w: FloatArray
    cistern_l: FloatArray
    water_habit: FloatArray
    power_habit: FloatArray
    ebike_indoor: BoolArray  # charges an e-bike in the flat now and then (no sensor needed)
    charger: Chargers
    sensor: IntArray  # index into EbikeSensors, -1 without one


@dataclass(frozen=True, slots=True)
class Persons:
    """The people who normally live in the flats, sorted by household."""

    household: IntArray
    persona: IntArray


@dataclass(frozen=True, slots=True)
class EbikeSensors:
    """E-bike charging sensors on a flat's socket circuit or a corridor circuit."""

    ids: list[str]
    household: IntArray  # -1: a corridor circuit
    building: IntArray
    fridge: BoolArray  # what else shares the circuit
    kettle: BoolArray
    rice_cooker: BoolArray
    heater: BoolArray
    dehumidifier: BoolArray
    base_w: FloatArray  # lighting or standby on the circuit
    charger_owner: BoolArray  # a flat whose e-bike is charged on this circuit


@dataclass(frozen=True, slots=True)
class SmokeDetectors:
    ids: list[str]
    building: IntArray
    kitchen: BoolArray  # public kitchen (else corridor / staircase)
    floor: IntArray
    battery0: FloatArray
    battery_per_day: FloatArray
    phase_s: IntArray  # time of day of its daily heartbeat


@dataclass(frozen=True, slots=True)
class Elevators:
    ids: list[str]
    building: IntArray
    floors: IntArray
    households: IntArray  # served


@dataclass(frozen=True, slots=True)
class District:
    """The registry document and the hidden facts behind it."""

    registry: dict[str, Any]
    seed: int
    params: Params
    building_ids: list[str]
    building_floors: IntArray
    building_grid: list[str]
    household_ids: list[str]
    households: HouseholdProfile
    persons: Persons
    smoke: SmokeDetectors
    elevators: Elevators
    ebikes: EbikeSensors
    building_households: dict[int, IntArray] = field(repr=False)

    @property
    def n_households(self) -> int:
        return len(self.household_ids)

    def water_id(self, h: int) -> str:
        return f"WM-{h + 1:06d}"

    def power_id(self, h: int) -> str:
        return f"PM-{h + 1:06d}"


def generate(households: int = 200, *, seed: int = 1, params: Params | None = None, **legacy: Any) -> dict[str, Any]:
    """The registry document (CONTRACT.md §2) of a generated district."""
    p = params or Params()
    if legacy:  # street_id= / street_name= of the first version
        p = Params(district=_replace(p.district, **legacy), behaviour=p.behaviour, incidents=p.incidents)
    return build_district(households, seed=seed, params=p).registry


def _replace(d: DistrictParams, **kw: Any) -> DistrictParams:
    return dataclasses.replace(d, **kw)


# Layout ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Shape:
    comprehensive: int
    residential: int
    micro: int
    buildings: int
    area_km2: float


def street_shape(households: int, dp: DistrictParams) -> _Shape:
    """How many grids and building groups a street of `households` has (the seed's ratios)."""
    s = households / dp.reference_households
    n_b = min(households, max(1, round(dp.reference_buildings * s)))
    n_m = min(n_b, max(dp.min_micro_grids, round(dp.reference_micro_grids * s)))
    ratio_r = dp.reference_residential_areas / dp.reference_micro_grids
    n_r = min(n_m, max(1, round(dp.reference_residential_areas * s), math.ceil(n_m * ratio_r - 1e-9)))
    ratio_c = dp.reference_comprehensive_grids / dp.reference_residential_areas
    n_c = min(n_r, max(1, round(dp.reference_comprehensive_grids * s), math.ceil(n_r * ratio_c - 1e-9)))
    area = max(0.02, dp.reference_area_km2 * s)
    return _Shape(n_c, n_r, n_m, n_b, area)


def _split(n: int, parts: int) -> list[int]:
    """n items over `parts` groups as evenly as possible (the first groups get the extra)."""
    base, extra = divmod(n, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _rect(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [
        [round(x0, 6), round(y0, 6)],
        [round(x1, 6), round(y0, 6)],
        [round(x1, 6), round(y1, 6)],
        [round(x0, 6), round(y1, 6)],
    ]


def _phone(rng: np.random.Generator, prefix: str = "138") -> str:
    return f"+86{prefix}{int(rng.integers(0, 10**8)):08d}"


def _name(rng: np.random.Generator) -> str:
    return f"{SURNAMES[int(rng.integers(0, len(SURNAMES)))]}某"


def _allocate(total: int, weights: FloatArray) -> IntArray:
    """`total` over len(weights) bins proportionally, each at least 1 (largest remainder)."""
    n = len(weights)
    raw = weights / weights.sum() * total
    out: IntArray = np.maximum(1, np.floor(raw)).astype(np.int64)
    diff = total - int(out.sum())
    order = np.argsort(-(raw - np.floor(raw)), kind="stable")
    i = 0
    while diff > 0:
        out[order[i % n]] += 1
        diff -= 1
        i += 1
    big = np.argsort(-out, kind="stable")
    i = 0
    while diff < 0:
        j = big[i % n]
        if out[j] > 1:
            out[j] -= 1
            diff += 1
        i += 1
    return out


# The district ----------------------------------------------------------------------------------


def build_district(households: int = 200, *, seed: int = 1, params: Params | None = None) -> District:
    """The registry and its hidden profile for `households` flats; deterministic in `seed`."""
    if households < 1:
        raise ValueError("a district needs at least one household")
    p = params or Params()
    dp = p.district
    rng = np.random.default_rng([seed, REGISTRY_STREAM])
    sid = dp.street_id
    shape = street_shape(households, dp)

    # Geometry: the street is a rectangle of the scaled area around the centre; comprehensive grids
    # are vertical strips, residential areas bands inside them, micro-grids strips inside those.
    lon0, lat0 = dp.center
    width_km = math.sqrt(shape.area_km2 * 1.25)
    height_km = shape.area_km2 / width_km
    km_lon = 111.32 * math.cos(math.radians(lat0))
    km_lat = 110.57
    x_min, x_max = lon0 - width_km / km_lon / 2, lon0 + width_km / km_lon / 2
    y_min, y_max = lat0 - height_km / km_lat / 2, lat0 + height_km / km_lat / 2

    res_per_comp = _split(shape.residential, shape.comprehensive)
    micro_per_res = _split(shape.micro, shape.residential)
    grids: list[dict[str, Any]] = []
    micro_ids: list[str] = []
    micro_rects: list[tuple[float, float, float, float]] = []
    micro_res: list[int] = []
    res_ids: list[str] = []
    res_comp: list[int] = []
    comp_ids: list[str] = []
    x = x_min
    r_global = 0
    for c in range(shape.comprehensive):
        n_res = res_per_comp[c]
        micro_here = micro_per_res[r_global : r_global + n_res]
        cx1 = x + (x_max - x_min) * sum(micro_here) / shape.micro
        cid = f"{sid}-G{c + 1}"
        comp_ids.append(cid)
        cname = COMPREHENSIVE_NAMES[c] if c < len(COMPREHENSIVE_NAMES) else f"第{c + 1}综合网格"
        grids.append(
            {"id": cid, "street_id": sid, "parent_id": None, "name": cname, "polygon": _rect(x, y_min, cx1, y_max)}
        )
        y = y_min
        for k in range(n_res):
            n_micro = micro_here[k]
            ry1 = y + (y_max - y_min) * n_micro / sum(micro_here)
            rid = f"{cid}-R{r_global + 1:02d}"
            res_ids.append(rid)
            res_comp.append(c)
            area = AREA_NAMES[r_global % len(AREA_NAMES)] + ("" if r_global < len(AREA_NAMES) else str(r_global))
            grids.append(
                {
                    "id": rid,
                    "street_id": sid,
                    "parent_id": cid,
                    "name": f"{area}居民区",
                    "polygon": _rect(x, y, cx1, ry1),
                }
            )
            mx = x
            for j in range(n_micro):
                mx1 = x + (cx1 - x) * (j + 1) / n_micro
                m = len(micro_ids)
                mid = f"{cid}-M{m + 1:02d}"
                micro_ids.append(mid)
                micro_rects.append((mx, y, mx1, ry1))
                micro_res.append(r_global)
                grids.append(
                    {
                        "id": mid,
                        "street_id": sid,
                        "parent_id": rid,
                        "name": f"{area}第{j + 1}街坊",
                        "polygon": _rect(mx, y, mx1, ry1),
                    }
                )
                mx = mx1
            y = ry1
            r_global += 1
        x = cx1

    # Building groups: types by share, spread evenly over the micro-grids, households by size weight.
    types = dp.building_types
    shares = np.array([t.share for t in types], dtype=np.float64)
    type_of = rng.choice(len(types), size=shape.buildings, p=shares / shares.sum())
    weights = np.array([rng.uniform(*types[t].households) for t in type_of], dtype=np.float64)
    hh_per_building = _allocate(households, weights)
    grid_of = np.repeat(np.arange(shape.micro), _split(shape.buildings, shape.micro))
    buildings: list[dict[str, Any]] = []
    building_ids: list[str] = []
    floors = np.zeros(shape.buildings, dtype=np.int64)
    stairs = np.zeros(shape.buildings, dtype=np.int64)
    per_floor = np.zeros(shape.buildings, dtype=np.int64)
    lane_no: dict[int, int] = {}
    for b in range(shape.buildings):
        t = types[type_of[b]]
        n = int(hh_per_building[b])
        f = int(rng.integers(t.floors[0], t.floors[1] + 1))
        s = int(min(n, rng.integers(t.stairs[0], t.stairs[1] + 1)))
        floors[b] = f
        stairs[b] = max(1, s)
        per_floor[b] = max(1, math.ceil(n / (f * stairs[b])))
        g = int(grid_of[b])
        x0, y0, x1, y1 = micro_rects[g]
        mx, my = (x1 - x0) * 0.08, (y1 - y0) * 0.08
        loc = [round(float(rng.uniform(x0 + mx, x1 - mx)), 6), round(float(rng.uniform(y0 + my, y1 - my)), 6)]
        road = ROADS[micro_res[g] % len(ROADS)]
        lane_no[micro_res[g]] = lane_no.get(micro_res[g], 0) + 1
        k = lane_no[micro_res[g]]
        if t.floors[1] <= 4:
            address = f"{road} {20 + 10 * micro_res[g] + (k + 1) // 2} 弄 {1 + (k % 2) * 10} 号"
        else:
            address = f"{road} {100 + 2 * k + 40 * micro_res[g]} 号"
        bid = f"{sid}-B{b + 1:04d}"
        building_ids.append(bid)
        buildings.append({"id": bid, "grid_id": micro_ids[g], "address": address, "location": loc, "floors": f})

    # Households: registered size, elders, tags.
    size_w = np.array(dp.household_size_weights, dtype=np.float64)
    registered = rng.choice(np.arange(1, len(size_w) + 1), size=households, p=size_w / size_w.sum())
    u_elder = rng.random(households)
    vacant = rng.random(households) < dp.vacant_share
    rental = rng.random(households) < dp.rental_share
    building = np.repeat(np.arange(shape.buildings), hh_per_building)
    lone_elder = (registered == 1) & (u_elder < dp.single_elder_share) & ~vacant
    rental &= ~lone_elder
    hh_docs: list[dict[str, Any]] = []
    household_ids: list[str] = []
    first_of_building = np.concatenate([[0], np.cumsum(hh_per_building)[:-1]])
    for h in range(households):
        b = int(building[h])
        k = h - int(first_of_building[b])
        u = int(per_floor[b])
        stair = k // (int(floors[b]) * u) + 1
        fl = (k // u) % int(floors[b]) + 1
        unit = f"{stair}-{fl}{k % u + 1:02d}"
        tags = [t for t, on in (("lone_elder", lone_elder[h]), ("rental", rental[h])) if on]
        contacts: list[dict[str, str]] = []
        if lone_elder[h]:
            for _ in range(1 + int(rng.random() < 0.5)):
                rel = RELATIONS[int(rng.integers(0, len(RELATIONS)))]
                contacts.append({"name": _name(rng), "phone": _phone(rng), "relation": rel})
        elif not vacant[h]:
            contacts.append({"name": _name(rng), "phone": _phone(rng, "139"), "relation": "self"})
        hid = f"{sid}-H{h + 1:06d}"
        household_ids.append(hid)
        hh_docs.append(
            {
                "id": hid,
                "building_id": building_ids[b],
                "unit": unit,
                "registered_occupants": int(registered[h]),
                "tags": tags,
                "contacts": contacts,
            }
        )

    # Devices bound to buildings: smoke detectors, elevators, corridor e-bike sensors.
    devices: list[dict[str, Any]] = []
    smoke_rows: list[tuple[str, int, bool, int]] = []
    elevator_rows: list[tuple[str, int, int, int]] = []
    corridor_sensor: list[tuple[str, int]] = []
    shared_kitchen = np.zeros(households, dtype=bool)
    for b in range(shape.buildings):
        t = types[type_of[b]]
        hs = np.arange(first_of_building[b], first_of_building[b] + hh_per_building[b])
        n_shared = round(len(hs) * t.shared_kitchen)
        if n_shared:
            shared_kitchen[rng.choice(hs, size=n_shared, replace=False)] = True
            n_k = math.ceil(n_shared / rng.uniform(*dp.kitchen_households))
            for i in range(n_k):
                fl = 1 + i % int(floors[b])
                st = 1 + (i // int(floors[b])) % int(stairs[b])
                where = f"public kitchen {st}-{fl}F" if stairs[b] > 1 else f"public kitchen {fl}F"
                smoke_rows.append((where, b, True, fl))
        if floors[b] >= 4:
            for st in range(1, int(stairs[b]) + 1):
                for fl in range(2, int(floors[b]) + 1, dp.corridor_floor_step):
                    smoke_rows.append((f"corridor {st}-{fl}F", b, False, fl))
        else:
            smoke_rows.append(("staircase 1F", b, False, 1))
        if floors[b] > 6:
            n_el = max(int(stairs[b]), math.ceil(len(hs) / dp.elevator_households))
            n_el = min(n_el, 2 * int(stairs[b]))
            for i in range(n_el):
                elevator_rows.append(
                    (
                        f"stair {1 + i % int(stairs[b])} car {1 + i // int(stairs[b])}",
                        b,
                        int(floors[b]),
                        max(1, len(hs) // n_el),
                    )
                )
        if rng.random() < dp.ebike_corridor_sensor_share:
            corridor_sensor.append(("corridor 1F", b))
    smoke_ids = [f"SM-{i + 1:04d}" for i in range(len(smoke_rows))]
    elevator_ids = [f"EL-{i + 1:04d}" for i in range(len(elevator_rows))]
    smoke_by_b: dict[int, list[int]] = {}
    for i, (_, b, _, _) in enumerate(smoke_rows):
        smoke_by_b.setdefault(b, []).append(i)
    el_by_b: dict[int, list[int]] = {}
    for i, (_, b, _, _) in enumerate(elevator_rows):
        el_by_b.setdefault(b, []).append(i)

    # E-bike sensors on flats: a share of the occupied flats.
    occupied = ~vacant
    sensor_hh = np.flatnonzero(occupied & (rng.random(households) < dp.ebike_household_sensor_share))
    eb_ids: list[str] = []
    eb_household: list[int] = []
    eb_building: list[int] = []
    cs_by_b = dict((b, where) for where, b in corridor_sensor)
    for b in range(shape.buildings):
        if b in cs_by_b:
            eb_ids.append(f"EB-{len(eb_ids) + 1:04d}")
            eb_household.append(-1)
            eb_building.append(b)
    corridor_eb = {eb_building[i]: i for i in range(len(eb_ids))}
    hh_sensor = np.full(households, -1, dtype=np.int64)
    for h in sensor_hh.tolist():
        hh_sensor[h] = len(eb_ids)
        eb_ids.append(f"EB-{len(eb_ids) + 1:04d}")
        eb_household.append(int(h))
        eb_building.append(int(building[h]))

    for b in range(shape.buildings):
        bid = building_ids[b]
        for i in smoke_by_b.get(b, []):
            devices.append({"id": smoke_ids[i], "type": "smoke", "building_id": bid, "location": smoke_rows[i][0]})
        for i in el_by_b.get(b, []):
            devices.append(
                {"id": elevator_ids[i], "type": "elevator", "building_id": bid, "location": elevator_rows[i][0]}
            )
        if b in corridor_eb:
            devices.append(
                {"id": eb_ids[corridor_eb[b]], "type": "ebike", "building_id": bid, "location": "corridor 1F"}
            )
    for h in range(households):
        hid = household_ids[h]
        devices.append({"id": f"WM-{h + 1:06d}", "type": "water", "household_id": hid})
        devices.append({"id": f"PM-{h + 1:06d}", "type": "power", "household_id": hid})
        if hh_sensor[h] >= 0:
            devices.append(
                {"id": eb_ids[hh_sensor[h]], "type": "ebike", "household_id": hid, "location": "socket circuit"}
            )

    workers = _workers(
        rng,
        dp,
        comp_ids,
        res_ids,
        res_comp,
        micro_ids,
        micro_res,
        grid_of,
        hh_per_building,
        has_elevators=bool(elevator_rows),
    )
    registry = {
        "streets": [{"id": sid, "name": dp.street_name}],
        "grids": grids,
        "buildings": buildings,
        "households": hh_docs,
        "devices": devices,
        "workers": workers,
    }

    # The hidden profile, from its own stream.
    prng = np.random.default_rng([seed, PROFILE_STREAM])
    profile, persons = _profile(
        prng, p, registered, lone_elder, rental, vacant, shared_kitchen, building, type_of, hh_sensor
    )
    n_smoke = len(smoke_rows)
    bp = p.behaviour
    smoke = SmokeDetectors(
        ids=smoke_ids,
        building=np.array([r[1] for r in smoke_rows], dtype=np.int64),
        kitchen=np.array([r[2] for r in smoke_rows], dtype=bool),
        floor=np.array([r[3] for r in smoke_rows], dtype=np.int64),
        battery0=prng.uniform(*bp.smoke_battery_start, size=n_smoke),
        battery_per_day=prng.uniform(*bp.smoke_battery_per_day, size=n_smoke),
        phase_s=prng.integers(0, 86_400, size=n_smoke),
    )
    elevators = Elevators(
        ids=elevator_ids,
        building=np.array([r[1] for r in elevator_rows], dtype=np.int64),
        floors=np.array([r[2] for r in elevator_rows], dtype=np.int64),
        households=np.array([r[3] for r in elevator_rows], dtype=np.int64),
    )
    n_eb = len(eb_ids)
    eb_h = np.array(eb_household, dtype=np.int64)
    on_flat = eb_h >= 0
    ebikes = EbikeSensors(
        ids=eb_ids,
        household=eb_h,
        building=np.array(eb_building, dtype=np.int64),
        fridge=on_flat & (prng.random(n_eb) < 0.45),
        kettle=on_flat & (prng.random(n_eb) < 0.5),
        rice_cooker=on_flat & (prng.random(n_eb) < 0.35),
        heater=on_flat & (prng.random(n_eb) < 0.5),
        dehumidifier=on_flat & (prng.random(n_eb) < 0.5),
        base_w=np.where(on_flat, prng.uniform(2.0, 12.0, n_eb), prng.uniform(8.0, 30.0, n_eb)),
        charger_owner=on_flat & (prng.random(n_eb) < p.incidents.ebike_sensor_charger_share),
    )
    building_households = {
        b: np.arange(first_of_building[b], first_of_building[b] + hh_per_building[b]) for b in range(shape.buildings)
    }
    return District(
        registry=registry,
        seed=seed,
        params=p,
        building_ids=building_ids,
        building_floors=floors,
        building_grid=[micro_ids[int(g)] for g in grid_of],
        household_ids=household_ids,
        households=profile,
        persons=persons,
        smoke=smoke,
        elevators=elevators,
        ebikes=ebikes,
        building_households=building_households,
    )


def _workers(
    rng: np.random.Generator,
    dp: DistrictParams,
    comp_ids: list[str],
    res_ids: list[str],
    res_comp: list[int],
    micro_ids: list[str],
    micro_res: list[int],
    grid_of: IntArray,
    hh_per_building: IntArray,
    *,
    has_elevators: bool,
) -> list[dict[str, Any]]:
    sid = dp.street_id
    out: list[dict[str, Any]] = []
    per_micro = dp.reference_households / dp.reference_micro_grids
    hh_in_micro = np.bincount(grid_of, weights=hh_per_building, minlength=len(micro_ids))
    for i, cid in enumerate(comp_ids):
        out.append(
            {
                "id": f"{sid}-W-G{i + 1}-L",
                "name": _name(rng),
                "phone": _phone(rng, "137"),
                "grid_id": cid,
                "role": "grid_leader",
            }
        )
    for r, rid in enumerate(res_ids):
        out.append(
            {
                "id": f"{sid}-W-R{r + 1:02d}-L",
                "name": _name(rng),
                "phone": _phone(rng, "137"),
                "grid_id": rid,
                "role": "grid_leader",
            }
        )
    for m, mid in enumerate(micro_ids):
        k = int(np.clip(round(dp.workers_per_micro_grid * hh_in_micro[m] / per_micro), 1, dp.workers_per_micro_grid))
        for j in range(k):
            out.append(
                {
                    "id": f"{sid}-W-M{m + 1:02d}-{j + 1}",
                    "name": _name(rng),
                    "phone": _phone(rng),
                    "grid_id": mid,
                    "role": "grid_worker",
                }
            )
    for i in range(dp.street_center_workers):
        out.append(
            {
                "id": f"{sid}-W-C{i + 1}",
                "name": f"城运中心值班{i + 1}",
                "phone": _phone(rng, "021"),
                "grid_id": None,
                "role": "street_center",
            }
        )
    n_prop = max(1, min(dp.property_companies, len(res_ids)))
    for r, rid in enumerate(res_ids):
        company = r % n_prop + 1
        out.append(
            {
                "id": f"{sid}-W-P{company}-R{r + 1:02d}",
                "name": f"物业{company}·{_name(rng)}",
                "phone": _phone(rng, "136"),
                "grid_id": rid,
                "role": "property",
            }
        )
    if has_elevators:
        for i in range(max(1, min(dp.elevator_maintainers, len(comp_ids)))):
            out.append(
                {
                    "id": f"{sid}-W-E{i + 1}",
                    "name": f"电梯维保{i + 1}·{_name(rng)}",
                    "phone": _phone(rng, "135"),
                    "grid_id": comp_ids[i % len(comp_ids)],
                    "role": "elevator_maintainer",
                }
            )
    _ = res_comp, micro_res
    return out


def _profile(
    rng: np.random.Generator,
    p: Params,
    registered: IntArray,
    lone_elder: BoolArray,
    rental: BoolArray,
    vacant: BoolArray,
    shared_kitchen: BoolArray,
    building: IntArray,
    type_of: IntArray,
    hh_sensor: IntArray,
) -> tuple[HouseholdProfile, Persons]:
    dp, bp = p.district, p.behaviour
    n = len(registered)
    # Who lives there: the registered members, minus one living elsewhere in some flats.
    away = (registered >= 2) & (rng.random(n) < dp.away_member_share) & ~vacant
    actual = np.where(vacant, 0, registered - away.astype(np.int64))
    household: list[int] = []
    persona: list[int] = []
    u = rng.random((n, 4))
    for h in range(n):
        size = int(actual[h])
        if size == 0:
            continue
        reg = int(registered[h])
        if lone_elder[h]:
            members = [Persona.ELDER]
        elif reg == 1:
            members = [Persona.WORKER]
        elif reg == 2:
            if u[h, 0] < dp.couple_elder_share:
                members = [Persona.ELDER, Persona.ELDER]
            elif u[h, 1] < 0.3:
                members = [Persona.ELDER, Persona.WORKER]
            elif u[h, 1] < 0.55:
                members = [Persona.WORKER, Persona.CHILD]
            else:
                members = [Persona.WORKER, Persona.WORKER]
        else:
            elders = 0
            if u[h, 0] < dp.elder_in_family_share:
                elders = 2 if u[h, 1] < 0.45 else 1
            members = [Persona.ELDER] * elders
            rest = reg - elders
            workers = min(rest, 2)
            children = min(rest - workers, 1 + int(u[h, 2] < 0.25))
            members += [Persona.WORKER] * workers + [Persona.CHILD] * children
            members += [Persona.WORKER] * (reg - len(members))
        if size < len(members):  # the member living elsewhere is a working adult if there is one
            drop = members.index(Persona.WORKER) if Persona.WORKER in members else len(members) - 1
            members.pop(drop)
        household += [h] * len(members)
        persona += [int(m) for m in members]
    persons = Persons(np.array(household, dtype=np.int64), np.array(persona, dtype=np.int64))

    types = dp.building_types
    ewh_share = np.array([types[t].electric_water_heater for t in type_of])[building]
    n_ac = rng.choice(len(bp.ac_units), size=n, p=np.array(bp.ac_units) / sum(bp.ac_units))
    cw = np.array(bp.cistern_weights) / sum(bp.cistern_weights)
    chem = (rng.random(n) < 0.35).astype(np.int64)  # lithium on a third of e-bikes, lead-acid on the rest
    pack = rng.choice(np.array([36.0, 48.0, 60.0, 72.0]), size=n, p=[0.05, 0.6, 0.25, 0.1])
    current = np.where(chem == Chemistry.LITHIUM, rng.uniform(2.0, 5.0, n), rng.uniform(1.8, 3.2, n))
    capacity = np.where(chem == Chemistry.LITHIUM, rng.uniform(10.0, 30.0, n), rng.uniform(12.0, 32.0, n))
    occupied = ~vacant
    profile = HouseholdProfile(
        building=building.astype(np.int64),
        registered=registered.astype(np.int64),
        actual=actual.astype(np.int64),
        lone_elder=lone_elder,
        rental=rental,
        vacant=vacant,
        shared_kitchen=shared_kitchen,
        electric_water_heater=rng.random(n) < ewh_share,
        standby_w=rng.uniform(*bp.standby_w, n),
        fridge_w=rng.uniform(*bp.fridge_w, n),
        fridge_period=rng.integers(bp.fridge_period_min[0], bp.fridge_period_min[1] + 1, n),
        fridge_duty=rng.uniform(*bp.fridge_duty, n),
        fridge_phase=rng.integers(0, 60, n),
        fridge_off=vacant & (rng.random(n) < 0.7),
        ac_units=n_ac.astype(np.int64),
        ac_w=rng.uniform(*bp.ac_w, n),
        heater=rng.random(n) < bp.heater_share,
        heater_w=rng.uniform(*bp.heater_w, n),
        dehumidifier=rng.random(n) < bp.dehumidifier_share,
        dehumidifier_w=rng.uniform(*bp.dehumidifier_w, n),
        cistern_l=rng.choice(np.array(bp.cistern_litres), size=n, p=cw),
        water_habit=rng.lognormal(-0.5 * bp.water_habit_sigma**2, bp.water_habit_sigma, n),
        power_habit=rng.lognormal(-0.5 * bp.power_habit_sigma**2, bp.power_habit_sigma, n),
        ebike_indoor=occupied & (hh_sensor < 0) & (rng.random(n) < bp.ebike_indoor_share),
        charger=Chargers(chem, pack, current, capacity, rng.uniform(0.82, 0.9, n)),
        sensor=hh_sensor,
    )
    return profile, persons
