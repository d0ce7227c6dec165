"""One run of the generator: district, behaviour, meters, truth; then the files (see output.py).

Randomness: one ``numpy.random.SeedSequence(seed)`` spawns an independent stream per stage, so
the same arguments give the same bytes, and a change to one stage leaves the others' draws alone.
Python's global ``random`` (which richardsonpy's own loops use) is never touched.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np

from evaluation.crest import circuit, crest, district, sky, water
from evaluation.crest.district import District
from evaluation.crest.params import Params
from evaluation.crest.truth import FLOW, GROUP_RENTAL, LONE_ELDER, Clock, Record

MIN_PER_DAY = 1440
BIN = 15

STAGES = (
    "district",
    "sky",
    "occupancy",
    "circuit_plan",
    "appliances",
    "lighting",
    "water",
    "circuits",
    "extras",
    "uploads",
    "incidents",
    "flows",
)


@dataclass(frozen=True)
class Run:
    """Everything needed to write the outputs."""

    district: District
    clock: Clock
    n_min: int
    water_l: np.ndarray  # (households, minutes) litres
    power_wmin: np.ndarray  # (households, 15-min bins) W*min
    circuits: list[circuit.CircuitPlan]
    circuit_dw: np.ndarray  # (circuits, minutes) 0.1 W
    records: list[Record]
    standby_w: np.ndarray  # (households,) metered standby of the household's appliances
    cold_w: np.ndarray  # (households,) upper bound of its cold appliances' draw
    upload_rng: np.random.Generator
    args: dict[str, Any]


def _day_types(first_day: dt.date, days: int, weekend_chain: bool) -> np.ndarray:
    """WEEKDAY/WEEKEND per virtual day, column 0 being the day before the run."""
    out = np.zeros(days + 1, dtype=np.int64)
    for k in range(days + 1):
        day = first_day + dt.timedelta(days=k - 1)
        out[k] = crest.WEEKEND if (weekend_chain or day.weekday() >= 5) else crest.WEEKDAY
    return out


def _slot_range(a: int, b: int, n_slots: int) -> slice:
    return slice(max(0, a // 10), min(n_slots, -(-b // 10)))


def run(households: int, days: int, seed: int, first_day: dt.date, incident_scale: float, params: Params) -> Run:
    """Simulate the district's behaviour and meters."""
    if households < 1 or days < 1:
        raise ValueError("households and days must be positive")
    p = params
    streams = dict(zip(STAGES, np.random.SeedSequence(seed).spawn(len(STAGES)), strict=True))
    rngs = {k: np.random.default_rng(v) for k, v in streams.items()}
    dist = district.build(streams["district"], streams["incidents"], p, households, days, first_day, incident_scale)
    clock = Clock(first_day)
    n_min = days * MIN_PER_DAY
    n_slots = days * crest.SLOTS_PER_DAY
    units = dist.units
    hhs = dist.households
    n_u, n_h = len(units), len(hhs)
    irr = sky.irradiance(rngs["sky"], first_day, days, p)
    month_of_day = np.array([(first_day + dt.timedelta(days=d)).month for d in range(days)])

    sizes = np.array([u.size for u in units], dtype=np.int64)
    offsets = np.array([u.offset for u in units], dtype=np.int64)
    day_types = np.stack([_day_types(first_day, days, u.weekend_chain) for u in units])
    homebound = np.array([u.elder for u in units])
    home_cum = crest.homebound_tpm_cum(p.elder_leave_factor, p.elder_return_factor, *p.elder_homebound_slots)
    occ = crest.run_occupancy(rngs["occupancy"], sizes, day_types, offsets, n_slots, homebound, home_cum)

    # overlays: presence of part-time units, elders' naps, outings, trips and incidents
    present = np.ones((n_u, n_slots), dtype=bool)
    away = np.zeros((n_u, n_slots), dtype=bool)
    dead_start = np.full(n_u, -1, dtype=np.int64)
    dead_end = np.full(n_u, -1, dtype=np.int64)
    for k, u in enumerate(units):
        if u.present_from > 0 or u.present_to < n_min:
            present[k] = False
            present[k, _slot_range(u.present_from, u.present_to, n_slots)] = True
            away[k] = ~present[k]
        plan = hhs[u.household].elder
        if plan is None:
            continue
        for a, b in plan.naps + plan.long_naps + plan.outings:
            occ[k, _slot_range(a, b, n_slots)] = 0
        for a, b in plan.outings:
            away[k, _slot_range(a, b, n_slots)] = True
        for t in plan.trips:
            occ[k, _slot_range(t.start, t.end, n_slots)] = 0
            away[k, _slot_range(t.start, t.end, n_slots)] = True
        if plan.incident is not None:
            dead_start[k] = plan.incident.start
            dead_end[k] = min(plan.incident.end, n_min)
    occ = np.where(present, occ, 0).astype(np.int8)

    owned = np.stack([u.owned for u in units])
    calib = np.stack([crest.calibrate(u.owned, u.annual_kwh) for u in units])
    standby_on = np.array([u.role != "guest" for u in units])
    plans = circuit.plan(rngs["circuit_plan"], dist, p)
    members = [m for c in plans for m in c.members()]
    member_cols = {m: i for i, m in enumerate(members)}
    start_kinds = (*crest.COOKING_APPLIANCES, crest.KETTLE, crest.WASHING_MACHINE, crest.WASHER_DRYER, crest.DISHWASHER)
    app = crest.run_appliances(
        rngs["appliances"],
        occ,
        present,
        day_types,
        offsets,
        owned,
        calib,
        standby_on,
        dead_start,
        dead_end,
        month_of_day,
        members,
        start_kinds,
    )
    bulbs = [u.bulbs for u in units]
    daylight = np.array([u.daylight_lights for u in units])
    light = crest.run_lighting(rngs["lighting"], occ, present, dead_start, dead_end, bulbs, irr, daylight)

    unit_h = np.array([u.household for u in units], dtype=np.int64)
    power = np.zeros((n_h, n_min // BIN))
    np.add.at(power, unit_h, app.meter_wmin + light)
    standby_w = np.bincount(unit_h, weights=app.standby_w, minlength=n_h)
    cold_w = np.bincount(unit_h, weights=app.cold_w, minlength=n_h)

    # water from behaviour; the masks of incidents, trips and quiet afternoons come after
    litres = water.household_water(streams["water"], dist, occ, away, present, app.starts, day_types, offsets, p)
    meal_list = water.meals(app.starts, p)
    circ = circuit.render(streams["circuits"], plans, app.member_power, member_cols, occ, meal_list, month_of_day, p)
    for ci, c in enumerate(plans):
        power[c.household] += circ.true_w[ci].reshape(-1, BIN).sum(axis=1)

    records: list[Record] = list(circ.records)
    _shops(streams["extras"], dist, litres, power, p, records)
    _elders(dist, clock, litres, power, standby_w, cold_w, records, n_min)
    _flows(rngs["flows"], dist, litres, p, records, n_min, incident_scale)
    _households(dist, p, records, n_min)
    records.sort(key=lambda r: (r.start, r.kind, r.subject_ids))
    args = {
        "households": households,
        "days": days,
        "seed": seed,
        "first_day": first_day.isoformat(),
        "incident_scale": incident_scale,
    }
    return Run(
        dist, clock, n_min, litres, power, plans, circ.measured_dw, records, standby_w, cold_w, rngs["uploads"], args
    )


def _shops(
    seed: np.random.SeedSequence,
    dist: District,
    litres: np.ndarray,
    power: np.ndarray,
    p: Params,
    records: list[Record],
) -> None:
    n_min = litres.shape[1]
    for hh, child in zip(dist.households, seed.spawn(len(dist.households)), strict=True):
        s = hh.shop
        if s is None:
            continue
        rng = np.random.default_rng(child)
        load = np.zeros(n_min)
        for d in range(n_min // MIN_PER_DAY):
            if s.closed_weekday is not None and (dist.first_day + dt.timedelta(days=d)).weekday() == s.closed_weekday:
                continue
            a, b = d * MIN_PER_DAY + s.open_min, d * MIN_PER_DAY + s.close_min
            load[a:b] += s.base_w * (1.0 + 0.05 * rng.standard_normal(b - a))
            bursts = rng.poisson(s.bursts_per_hour * (b - a) / 60.0)
            for t in rng.integers(a, b, bursts):
                load[t : min(t + int(s.burst_min * rng.uniform(0.5, 1.5)), b)] += s.burst_w
            draws = rng.poisson(s.draws_per_hour * (b - a) / 60.0)
            for t in rng.integers(a, b, draws):
                dur = int(rng.integers(1, 4))
                litres[hh.index, t : t + dur] += rng.uniform(*s.draw_litres) / dur
        power[hh.index] += load.reshape(-1, BIN).sum(axis=1)
        records.append(
            Record(
                kind="confounder.shop_in_flat",
                subject_type="household",
                subject_ids=(hh.id,),
                start=0,
                end=None,
                confounder=True,
                could_be_mistaken_for=(GROUP_RENTAL,),
                details={
                    "shop": s.kind,
                    "open": f"{s.open_min // 60:02d}:{s.open_min % 60:02d}",
                    "close": f"{s.close_min // 60:02d}:{s.close_min % 60:02d}",
                    "closed_weekday": s.closed_weekday,
                    "registered_occupants": hh.registered,
                },
            )
        )


def _elders(
    dist: District,
    clock: Clock,
    litres: np.ndarray,
    power: np.ndarray,
    standby_w: np.ndarray,
    cold_w: np.ndarray,
    records: list[Record],
    n_min: int,
) -> None:
    inactive = (LONE_ELDER,)
    for hh in dist.households:
        e = hh.elder
        if e is None:
            continue
        sub = (hh.id,)
        for t in e.trips:
            litres[hh.index, max(0, t.start) : min(t.end, n_min)] = 0.0
            records.append(
                Record(
                    "confounder.elder_away",
                    "household",
                    sub,
                    t.start,
                    t.end,
                    True,
                    inactive,
                    {
                        "reason": t.reason,
                        "declared_start": clock.iso(t.declared_start),
                        "declared_end": clock.iso(t.declared_end),
                    }
                    if t.declared
                    else {"reason": t.reason},
                    declared=t.declared,
                )
            )
        for a, b in e.quiet:
            litres[hh.index, a:b] = 0.0
            records.append(Record("confounder.quiet_afternoon", "household", sub, a, b, True, inactive, {}))
        for a, b in e.long_naps:
            records.append(Record("confounder.long_nap", "household", sub, a, b, True, inactive, {"minutes": b - a}))
        if e.flat_meter:
            records.append(
                Record(
                    "confounder.flat_power_meter",
                    "household",
                    sub,
                    0,
                    None,
                    True,
                    inactive,
                    {"daylight_lighting": False},
                )
            )
        inc = e.incident
        if inc is None:
            continue
        if inc.night_flush:
            litres[hh.index, max(0, inc.start - inc.night_flush)] += hh.cistern_l
        litres[hh.index, inc.start : min(inc.end, n_min)] = 0.0
        end = min(inc.end, n_min)
        if inc.lamp_w > 0:
            lamp = np.zeros(n_min)
            lamp[inc.start : end] = inc.lamp_w
            power[hh.index] += lamp.reshape(-1, BIN).sum(axis=1)
        records.append(
            Record(
                LONE_ELDER,
                "household",
                sub,
                inc.start,
                inc.end,
                False,
                (),
                {
                    "found_after_h": round((inc.end - inc.start) / 60.0, 2),
                    "lamp_w": inc.lamp_w,
                    "standby_w": round(float(standby_w[hh.index]), 1),
                    "cold_appliances_max_w": round(float(cold_w[hh.index]), 1),
                    "night_toilet_before": inc.night_flush > 0,
                    "local_start": f"{inc.start % MIN_PER_DAY // 60:02d}:{inc.start % 60:02d}",
                    "water_meter": hh.water_id,
                    "power_meter": hh.power_id,
                },
            )
        )


def _flows(
    rng: np.random.Generator,
    dist: District,
    litres: np.ndarray,
    p: Params,
    records: list[Record],
    n_min: int,
    scale: float,
) -> None:
    hhs = dist.households
    mean = p.flow_rate_per_household_day * scale * len(hhs) * (n_min / MIN_PER_DAY)
    n = int(rng.poisson(mean))
    busy: dict[int, list[tuple[int, int]]] = {}
    for hh in hhs:
        if hh.elder is not None and hh.elder.incident is not None:
            busy[hh.index] = [(hh.elder.incident.start - 60, hh.elder.incident.end)]
    for _ in range(n):
        for _try in range(20):
            h = int(rng.integers(len(hhs)))
            start = int(rng.integers(0, max(1, n_min - 180)))
            end = start + int(rng.uniform(*p.flow_h) * 60)
            if all(end <= a or start >= b for a, b in busy.get(h, [])):
                break
        else:
            continue
        lph = float(rng.uniform(*p.flow_lph))
        litres[h, start : min(end, n_min)] += lph / 60.0
        busy.setdefault(h, []).append((start, end))
        hh = hhs[h]
        records.append(
            Record(
                FLOW,
                "device",
                (hh.water_id,),
                start,
                end,
                False,
                (),
                {
                    "household_id": hh.id,
                    "flow_lph": round(lph, 1),
                    "cause": "running tap" if lph > 80 else "leaking cistern",
                },
            )
        )


def _households(dist: District, p: Params, records: list[Record], n_min: int) -> None:
    for hh in dist.households:
        sub = (hh.id,)
        sizes = [dist.units[u].size for u in hh.units if dist.units[u].role != "guest"]
        if hh.kind == "group_rental":
            start = hh.rental_from or 0
            records.append(
                Record(
                    GROUP_RENTAL,
                    "household",
                    sub,
                    start,
                    None,
                    False,
                    (),
                    {
                        "registered_occupants": hh.registered,
                        "actual_occupants": hh.actual,
                        "units": sizes,
                        "from_day": start // MIN_PER_DAY,
                    },
                )
            )
        elif hh.actual >= 5:
            records.append(
                Record(
                    "confounder.large_family",
                    "household",
                    sub,
                    0,
                    None,
                    True,
                    (GROUP_RENTAL,),
                    {"registered_occupants": hh.registered, "units": sizes},
                )
            )
        if hh.kind == "shift_worker":
            off = dist.units[hh.units[0]].offset
            records.append(
                Record(
                    "confounder.shift_worker",
                    "household",
                    sub,
                    0,
                    None,
                    True,
                    (GROUP_RENTAL,),
                    {"registered_occupants": 1, "day_shift_h": round(off / 6.0, 1)},
                )
            )
        if hh.unregistered:
            records.append(
                Record(
                    "confounder.unregistered_occupant",
                    "household",
                    sub,
                    0,
                    None,
                    True,
                    (GROUP_RENTAL,),
                    {"registered_occupants": hh.registered, "actual_occupants": hh.actual},
                )
            )
        if hh.visit is not None:
            a, b, guests = hh.visit
            records.append(
                Record(
                    "confounder.visitors",
                    "household",
                    sub,
                    a,
                    b,
                    True,
                    (GROUP_RENTAL,),
                    {"guests": guests, "registered_occupants": hh.registered},
                )
            )
