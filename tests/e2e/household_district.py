"""A hand-built building of ten flats and two weeks of their meters' daily batches (CONTRACT.md §1, §2).

Every flat has an NB-IoT water meter and a power meter that upload a local day's 96 quarter-hour
register readings in one batch each. Eight flats are ordinary (two or three registered people who
live there). `GROUP_RENTAL` is registered to two people and lived in by nine tenants, four of them on
night shifts (water and power 01:00-04:00). `LONE_ELDER` (tagged `lone_elder`) lives a regular day —
up at 06:00, water and the kettle through the morning, a nap after lunch, television and lights in
the evening, in bed by 21:30 — until `silent_from`, after which the flat shows no sign of life at all:
no water, and only the fridge and standby on the power meter, to the end of the span.

Deterministic for a seed; times are local (UTC+8) quarter hours from `first_day`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import numpy as np

LOCAL = timezone(timedelta(hours=8))
QUARTERS = 96
QUARTER_MS = 15 * 60_000
STREET, GRID, MICRO, BUILDING = "FD", "FD-G1", "FD-G1-M01", "FD-B0001"
GROUP_RENTAL = "FD-H0009"
LONE_ELDER = "FD-H0010"
ORDINARY = tuple(f"FD-H{i:04d}" for i in range(1, 9))


def _q(hour: float) -> int:
    return int(hour * 4)


@dataclass(frozen=True)
class District:
    first_day: date
    days: int
    silent_from_ms: int  # the lone elder's last sign of life is before this
    registry: dict[str, object]
    messages: list[tuple[str, bytes, int]]  # (topic, payload, readings), in publish order

    @property
    def last_day(self) -> date:
        return self.first_day + timedelta(days=self.days - 1)


def _person_day(rng: np.random.Generator, water: np.ndarray, power: np.ndarray, *, night_shift: bool) -> None:
    """One working adult's water (L) and energy (Wh) per quarter hour of one day, added in place."""
    if night_shift:  # a late shift: up and about 00:30-04:00 after it, 06:30-08:00, and 14:00-17:30 before it
        hours_home = [*np.arange(0.5, 4.0, 0.5), *np.arange(6.5, 8.0, 0.5), *np.arange(14.0, 17.5, 0.5)]
        for h in hours_home:
            q = _q(h + rng.uniform(0, 0.4))
            water[q] += rng.uniform(1.5, 9.0)
            power[q] += rng.uniform(20, 60)
        water[_q(2.0 + rng.uniform(0, 1.5))] += rng.uniform(30, 60)  # a shower after midnight
        water[_q(15.0)] += rng.uniform(5, 15)
        return
    wake = 6.5 + rng.uniform(0, 1)  # out 08:30-18:00 on working days
    back = 18.0 + rng.uniform(0, 1.5)
    bed = 23.0
    for h in (wake, wake + 0.25, wake + 0.5):
        water[_q(h)] += rng.uniform(2, 9)
        power[_q(h)] += rng.uniform(30, 80)
    if rng.random() < 0.6:
        water[_q(wake + 0.3)] += rng.uniform(35, 60)
    evening = np.arange(back, bed, 0.5)
    for h in evening:
        q = _q(h)
        water[q] += rng.uniform(0.5, 6.0)
        power[q] += rng.uniform(40, 110)
    water[_q(back + 0.5)] += rng.uniform(8, 20)  # cooking and dishes
    water[_q(back + 1.5)] += rng.uniform(8, 20)
    if rng.random() < 0.5:
        water[_q(bed - 0.75)] += rng.uniform(35, 60)


def _elder_day(rng: np.random.Generator, water: np.ndarray, power: np.ndarray) -> None:
    """The lone elder's day: signs of life about every hour from 06:00 to 21:30, a nap after lunch."""
    for h in (6.0, 6.25):
        water[_q(h + rng.uniform(0, 0.2))] += rng.uniform(3, 8)
    power[_q(6.0)] += 90  # kettle and the light
    for h in [*np.arange(7.0, 12.0, 1.0), *np.arange(14.0, 21.5, 1.0)]:
        q = _q(h + rng.uniform(0, 0.5))
        water[q] += rng.uniform(1.5, 6.0)
    water[_q(11.5)] += rng.uniform(6, 12)  # lunch
    water[_q(17.5)] += rng.uniform(6, 12)  # dinner
    for h in np.arange(18.5, 21.25, 0.25):
        power[_q(h)] += 30  # television and lights: 120 W
    if rng.random() < 0.6:
        water[_q(2.5 + rng.uniform(0, 1))] += rng.uniform(5, 8)  # a night-time toilet visit


def _registry() -> dict[str, object]:
    households = []
    devices = []
    occupants = {hid: 2 + (i % 2) for i, hid in enumerate(ORDINARY)}
    for i, hid in enumerate([*ORDINARY, GROUP_RENTAL, LONE_ELDER]):
        h: dict[str, object] = {
            "id": hid,
            "building_id": BUILDING,
            "unit": f"{1 + i // 2}0{1 + i % 2}",
            "registered_occupants": {GROUP_RENTAL: 2, LONE_ELDER: 1}.get(hid, occupants.get(hid, 2)),
            "tags": ["lone_elder"] if hid == LONE_ELDER else (["rental"] if hid == GROUP_RENTAL else []),
        }
        if hid == LONE_ELDER:
            h["contacts"] = [{"name": "王某", "phone": "+8613800000000", "relation": "daughter"}]
        households.append(h)
        n = hid[-4:]
        devices += [
            {"id": f"FD-WM-{n}", "type": "water", "household_id": hid},
            {"id": f"FD-PM-{n}", "type": "power", "household_id": hid},
        ]
    return {
        "streets": [{"id": STREET, "name": "前门测试街道"}],
        "grids": [
            {"id": GRID, "street_id": STREET, "parent_id": None, "name": "第一综合网格"},
            {"id": MICRO, "street_id": STREET, "parent_id": GRID, "name": "第一微网格"},
        ],
        "buildings": [
            {"id": BUILDING, "grid_id": MICRO, "address": "前门路 1 号", "location": [121.466, 31.213], "floors": 6}
        ],
        "households": households,
        "devices": devices,
        "workers": [
            {"id": "FD-W-1", "name": "李某", "phone": "+8613900000000", "grid_id": MICRO, "role": "grid_worker"}
        ],
    }


def build(
    first_day: date, days: int = 14, *, seed: int = 14, silent_day: int = 11, silent_hour: float = 9.5
) -> District:
    """The building's registry and its meters' daily batches, day by day, water before power."""
    rng = np.random.default_rng(seed)
    registry = _registry()
    people = {hid: [False] * (2 + (i % 2)) for i, hid in enumerate(ORDINARY)}
    people[GROUP_RENTAL] = [False] * 5 + [True] * 4
    t0 = int(datetime(first_day.year, first_day.month, first_day.day, tzinfo=LOCAL).timestamp() * 1000)
    n = days * QUARTERS
    water = {hid: np.zeros(n) for hid in [*people, LONE_ELDER]}
    power = {hid: np.zeros(n) for hid in [*people, LONE_ELDER]}
    silent_q = silent_day * QUARTERS + _q(silent_hour)
    for d in range(days):
        day = slice(d * QUARTERS, (d + 1) * QUARTERS)
        for hid, shifts in people.items():
            w, p = water[hid][day], power[hid][day]
            p += 25.0 + rng.uniform(0, 2, QUARTERS)  # fridge and standby: 100 W
            for night_shift in shifts:
                _person_day(rng, w, p, night_shift=night_shift)
        w, p = water[LONE_ELDER][day], power[LONE_ELDER][day]
        p += 12.0 + rng.uniform(0, 1, QUARTERS)  # the fridge and standby: about 50 W
        _elder_day(rng, w, p)
    # from silent_from on: no water at all, the fridge and standby only
    water[LONE_ELDER][silent_q:] = 0.0
    power[LONE_ELDER][silent_q:] = 12.0 + rng.uniform(0, 1, n - silent_q)
    messages = []
    seq = 1000
    for d in range(days):
        for hid in [*people, LONE_ELDER]:
            for kind, series, field, unit in (
                ("water", water[hid], "total_m3", 1000.0),
                ("power", power[hid], "total_kwh", 1000.0),
            ):
                base = 100.0 if kind == "water" else 5000.0
                # the register at the start of each quarter hour: what was used before it
                cum = np.concatenate([[0.0], np.cumsum(series)])[d * QUARTERS : (d + 1) * QUARTERS]
                items = [
                    {
                        "ts": t0 + (d * QUARTERS + k) * QUARTER_MS,
                        "seq": seq + d * QUARTERS + k,
                        field: round(base + c / unit, 4),
                    }
                    for k, c in enumerate(cum.tolist())
                ]
                device = f"FD-{'WM' if kind == 'water' else 'PM'}-{hid[-4:]}"
                payload = json.dumps({"batch": items}, separators=(",", ":")).encode()
                messages.append((f"whistle/v1/{kind}/{device}/data", payload, len(items)))
    return District(first_day, days, t0 + silent_q * QUARTER_MS, registry, messages)
