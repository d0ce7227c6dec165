"""Ground truth: every incident and confounder of a run, planned before any message exists.

A `Scenario` plans local day after local day from its own random stream (seeded by the run's
seed and the day's number), so the truth file depends only on the district, the seed, the
span and the options, and is written without generating any traffic. The behaviour models and
the message stream read the same incidents to shape the signals.

Truth kinds: the alarm kinds of CONTRACT.md §3 for incidents that should raise an alarm, and
`nuisance.*`, `confounder.*`, `meter_reset` and `malformed` for the rest (docs/SIMULATOR.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulators.district import Chemistry, District
from simulators.timebase import day_start
from whistle.protocol import device_topic
from whistle.timeutil import DAY_MS, HOUR_MS, MINUTE_MS, local_day

SCENARIO_STATIC = 10
SCENARIO_DAY = 11

GROUP_RENTAL = "household.group_rental_suspected"
LONE_ELDER_INACTIVE = "household.lone_elder_inactive"
CONTINUOUS_FLOW = "water.continuous_flow"
EBIKE_INDOOR = "ebike.indoor_charging"
FIRE = "smoke.fire"
SMOKE_FAULT = "smoke.fault"
SMOKE_TAMPER = "smoke.tamper"
SMOKE_LOW_BATTERY = "smoke.low_battery"
TRAPPED = "elevator.trapped"
ELEVATOR_FAULT = "elevator.fault"
ELEVATOR_EBIKE = "elevator.ebike"
OFFLINE = "device.offline"
NUISANCE_COOKING = "nuisance.smoke_cooking"
NUISANCE_STEAM = "nuisance.smoke_steam"
SMOKE_TEST = "confounder.smoke_test"
LARGE_FAMILY = "confounder.large_family"
SHOP = "confounder.shop_in_flat"
VISITORS = "confounder.visitors"
ELDER_AWAY = "confounder.elder_away"
CLEANING = "confounder.cleaning_day"
CIRCUIT = "confounder.circuit_appliances"
METER_RESET = "meter_reset"
MALFORMED = "malformed"

SUSPENDING = frozenset({LONE_ELDER_INACTIVE, ELDER_AWAY})
BUSINESSES = ("hair_salon", "eatery", "online_shop", "tailor")
MALFORMED_REASONS = (
    "not_json",
    "not_utf8",
    "wrong_type",
    "out_of_range",
    "missing_field",
    "bad_timestamp",
    "unknown_channel",
    "unregistered_device",
)
ELEVATOR_FAULTS: tuple[tuple[str, int | None, float], ...] = (
    ("door_open_while_moving", 5, 0.12),
    ("stop_outside_door_zone", 4, 0.2),
    ("overspeed", None, 0.05),
    ("power_loss", 41, 0.15),
    ("top_overrun", 92, 0.04),
    ("bottom_overrun", 91, 0.04),
    ("fault", 2, 0.2),  # door-close fault
    ("fault", 3, 0.12),  # door-open fault
    ("fault", 1, 0.08),  # safety circuit break
)

# (ts, topic, fields): a device's event or status message the stream sends as it is.
DeviceEvent = tuple[int, str, Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class Incident:
    """One line of the truth file, plus what the models need to produce its signal."""

    kind: str
    subject_type: str
    subject_ids: tuple[str, ...]
    start: int
    end: int | None
    confounder: bool = False
    mistaken_for: tuple[str, ...] = ()
    declared: bool | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    index: int = -1  # household, building or device index in its District table
    events: tuple[DeviceEvent, ...] = ()

    def overlaps(self, lo: int, hi: int) -> bool:
        return self.start < hi and (self.end is None or self.end > lo)

    def truth(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "kind": self.kind,
            "subject_type": self.subject_type,
            "subject_ids": list(self.subject_ids),
            "start": self.start,
            "end": self.end,
            "confounder": self.confounder,
            "could_be_mistaken_for": list(self.mistaken_for),
        }
        if self.declared is not None:
            doc["declared"] = self.declared
        doc["details"] = dict(self.details)
        return doc


def truth_line(incident: Incident) -> str:
    return json.dumps(incident.truth(), ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n"


def _sort_key(i: Incident) -> tuple[int, str, tuple[str, ...]]:
    return (i.start, i.kind, i.subject_ids)


class Scenario:
    """The incidents of a run over [start_ms, end_ms) (end None: open-ended, planned day by day)."""

    def __init__(
        self,
        district: District,
        *,
        start_ms: int,
        end_ms: int | None,
        seed: int,
        malformed_per_day: float = 0.0,
    ) -> None:
        self.d = district
        self.p = district.params.incidents
        self.bp = district.params.behaviour
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.seed = seed
        self.malformed_per_day = malformed_per_day
        self.first_day = local_day(start_ms)
        self.planned_through = self.first_day - 1
        self.incidents: list[Incident] = []
        self._by_day: dict[int, list[Incident]] = {}
        n = district.n_households
        hp = district.households
        self.occupied = ~hp.vacant
        self.suspended_until = np.zeros(n, dtype=np.int64)
        self.group_rental = np.zeros(n, dtype=bool)
        self.shop = np.zeros(n, dtype=bool)
        self.device_busy: dict[str, int] = {}
        self.sensor_busy = np.zeros(len(district.ebikes.ids), dtype=np.int64)
        smoke = district.smoke
        self.battery_day = np.full(len(smoke.ids), self.first_day, dtype=np.int64)
        self.battery_val = smoke.battery0.copy()
        self.battery_low_since: dict[int, int] = {}
        self.battery_replace_day: dict[int, int] = {}
        self._devices = self._device_table()
        self._smoke_by_building: dict[int, list[int]] = {}
        for i, b in enumerate(smoke.building.tolist()):
            self._smoke_by_building.setdefault(int(b), []).append(i)
        n_kitchen = int(smoke.kitchen.sum())
        full = district.params.district.reference_households
        self.kitchen_rate = (
            self.p.kitchen_alarms_per_year_full_scale / 365.0 * n / full / n_kitchen if n_kitchen else 0.0
        )

    # Queries ---------------------------------------------------------------------------------

    def plan_until(self, day: int) -> None:
        """Plan every day up to and including local day `day`."""
        while self.planned_through < day:
            d = self.planned_through + 1
            if self.end_ms is not None and day_start(d) >= self.end_ms:
                self.planned_through = d
                self._by_day[d] = []
                continue
            planned: list[Incident] = []
            if d == self.first_day:
                planned += self._plan_static()
            planned += self._plan_day(d)
            planned.sort(key=_sort_key)
            self._by_day[d] = planned
            self.incidents += planned
            self.planned_through = d

    def active(self, lo: int, hi: int) -> list[Incident]:
        """Incidents overlapping [lo, hi), planned as far as `hi`."""
        self.plan_until(local_day(hi - 1))
        return [i for i in self.incidents if i.overlaps(lo, hi)]

    def truth_for_day(self, day: int) -> list[Incident]:
        """The incidents whose start falls in local day `day` (the static ones on the first day)."""
        self.plan_until(day)
        return self._by_day.get(day, [])

    def truth_lines(self, last_day: int | None = None) -> Iterator[str]:
        """The truth file's lines, day by day, each day's sorted by (start, kind, subjects)."""
        if last_day is None:
            if self.end_ms is None:
                raise ValueError("an open-ended scenario needs last_day")
            last_day = local_day(self.end_ms - 1)
        for day in range(self.first_day, last_day + 1):
            for inc in self.truth_for_day(day):
                yield truth_line(inc)

    def battery(self, detector: int, day: int) -> float:
        """A smoke detector's battery % on local day `day` (after any replacement that day)."""
        drain = self.d.smoke.battery_per_day[detector] * (day - self.battery_day[detector])
        return float(self.battery_val[detector] - drain)

    # Planning helpers ------------------------------------------------------------------------

    def _device_table(self) -> list[tuple[str, str]]:
        d = self.d
        out = [("water", d.water_id(h)) for h in range(d.n_households)]
        out += [("power", d.power_id(h)) for h in range(d.n_households)]
        out += [("smoke", i) for i in d.smoke.ids]
        out += [("elevator", i) for i in d.elevators.ids]
        out += [("ebike", i) for i in d.ebikes.ids]
        return out

    def _window(self, day: int) -> tuple[int, int]:
        lo = max(self.start_ms, day_start(day))
        hi = day_start(day + 1) if self.end_ms is None else min(self.end_ms, day_start(day + 1))
        return lo, hi

    def _free(self, device_id: str, at: int) -> bool:
        return self.device_busy.get(device_id, 0) <= at

    def _hold(self, device_id: str, until: int) -> None:
        self.device_busy[device_id] = max(self.device_busy.get(device_id, 0), until)

    def _plan_static(self) -> list[Incident]:
        """Conditions already there when the run starts: group rentals, shops, large families, circuits."""
        rng = np.random.default_rng([self.seed, SCENARIO_STATIC])
        d, p, hp = self.d, self.p, self.d.households
        n = d.n_households
        t0 = self.start_ms
        out: list[Incident] = []
        eligible = self.occupied & ~hp.lone_elder
        small = eligible & (hp.registered <= 3)  # a landlord's flat registered to one to three people
        k = round(p.group_rental_share * n)
        if k:
            from_rental = min(round(k * p.group_rental_from_rental_share), int((small & hp.rental).sum()))
            picks = list(_choose(rng, np.flatnonzero(small & hp.rental), from_rental))
            picks += list(_choose(rng, np.flatnonzero(small & ~hp.rental), k - from_rental))
            for h in sorted(picks):
                out.append(self._group_rental(rng, h, t0, pre_existing=True))
        k = round(p.shop_share * n)
        for h in sorted(_choose(rng, np.flatnonzero(eligible & ~self.group_rental), k)):
            self.shop[h] = True
            business = BUSINESSES[int(rng.integers(0, len(BUSINESSES)))]
            out.append(
                Incident(
                    SHOP,
                    "household",
                    (d.household_ids[h],),
                    t0,
                    None,
                    True,
                    (GROUP_RENTAL,),
                    details={"business": business, "registered": int(hp.registered[h]), "actual": int(hp.actual[h])},
                    index=h,
                )
            )
        large = np.flatnonzero(self.occupied & ~self.group_rental & (hp.registered >= p.large_family_min_registered))
        for h in large.tolist():
            out.append(
                Incident(
                    LARGE_FAMILY,
                    "household",
                    (d.household_ids[h],),
                    t0,
                    None,
                    True,
                    (GROUP_RENTAL,),
                    details={"registered": int(hp.registered[h]), "actual": int(hp.actual[h])},
                    index=h,
                )
            )
        eb = d.ebikes
        for s in range(len(eb.ids)):
            appliances = [
                name
                for name, on in (
                    ("fridge", eb.fridge[s]),
                    ("kettle", eb.kettle[s]),
                    ("rice_cooker", eb.rice_cooker[s]),
                    ("heater", eb.heater[s]),
                    ("dehumidifier", eb.dehumidifier[s]),
                )
                if on
            ]
            if appliances:
                out.append(
                    Incident(
                        CIRCUIT,
                        "device",
                        (eb.ids[s],),
                        t0,
                        None,
                        True,
                        (EBIKE_INDOOR,),
                        details={"household_id": d.household_ids[int(eb.household[s])], "appliances": appliances},
                        index=s,
                    )
                )
        return out

    def _group_rental(self, rng: np.random.Generator, h: int, start: int, *, pre_existing: bool) -> Incident:
        d, p, hp = self.d, self.p, self.d.households
        self.group_rental[h] = True
        lo = max(p.group_rental_actual[0], 3 * int(hp.registered[h]))
        actual = int(rng.integers(lo, max(lo, p.group_rental_actual[1]) + 1))
        night = int(rng.binomial(actual, p.group_rental_night_shift_share))
        ebikes = int(rng.binomial(actual, p.group_rental_ebike_share))
        return Incident(
            GROUP_RENTAL,
            "household",
            (d.household_ids[h],),
            start,
            None,
            details={
                "registered": int(hp.registered[h]),
                "actual": actual,
                "night_shift": night,
                "ebikes": ebikes,
                "declared_rental": bool(hp.rental[h]),
                "pre_existing": pre_existing,
            },
            index=h,
        )

    def _plan_day(self, day: int) -> list[Incident]:
        rng = np.random.default_rng([self.seed, SCENARIO_DAY, day])
        lo, hi = self._window(day)
        if hi <= lo:
            return []
        out: list[Incident] = []
        out += self._households_day(rng, day, lo, hi)
        out += self._ebike_day(rng, day, lo, hi)
        out += self._smoke_day(rng, day, lo, hi)
        out += self._elevator_day(rng, day, lo, hi)
        out += self._devices_day(rng, day, lo, hi)
        return out

    def _at(self, rng: np.random.Generator, day: int, lo: int, hi: int, minutes: float) -> int | None:
        """The instant `minutes` after local midnight of `day`, if it falls inside [lo, hi)."""
        t = day_start(day) + int(minutes * MINUTE_MS) + int(rng.integers(0, 1000))
        return t if lo <= t < hi else None

    def _households_day(self, rng: np.random.Generator, day: int, lo: int, hi: int) -> list[Incident]:
        d, p, hp = self.d, self.p, self.d.households
        n = d.n_households
        ids = d.household_ids
        out: list[Incident] = []
        free = self.occupied & (self.suspended_until <= lo)
        # new group rentals
        cand = np.flatnonzero(free & ~hp.lone_elder & ~self.group_rental & ~self.shop & (hp.registered <= 3))
        for h in _choose(rng, cand, int(rng.poisson(p.group_rental_new_per_household_day * n))):
            t = self._at(rng, day, lo, hi, rng.uniform(9 * 60, 20 * 60))
            if t is not None:
                out.append(self._group_rental(rng, int(h), t, pre_existing=False))
        # relatives visiting for about a week
        cand = np.flatnonzero(free & ~self.group_rental & ~self.shop)
        for h in _choose(rng, cand, int(rng.poisson(p.visitors_per_household_day * n))):
            t = self._at(rng, day, lo, hi, rng.uniform(10 * 60, 19 * 60))
            if t is None:
                continue
            extra = int(rng.integers(p.visitors_extra[0], p.visitors_extra[1] + 1))
            end = t + int(rng.uniform(*p.visitors_days) * DAY_MS)
            out.append(
                Incident(
                    VISITORS,
                    "household",
                    (ids[h],),
                    t,
                    end,
                    True,
                    (GROUP_RENTAL,),
                    details={
                        "registered": int(hp.registered[h]),
                        "actual": int(hp.actual[h]) + extra,
                        "visitors": extra,
                    },
                    index=int(h),
                )
            )
        # lone elders: trips away (some declared) and inactivity (a fall, an illness)
        elders = np.flatnonzero(free & hp.lone_elder)
        u = rng.random(len(elders))
        trip = elders[u < p.elder_trip_per_elder_day]
        inactive = elders[
            (u >= p.elder_trip_per_elder_day) & (u < p.elder_trip_per_elder_day + p.lone_elder_inactive_per_elder_day)
        ]
        for h in trip.tolist():
            t = self._at(rng, day, lo, hi, rng.uniform(7 * 60, 11 * 60))
            if t is None:
                continue
            back = day_start(local_day(t) + max(1, round(rng.uniform(*p.elder_trip_days))))
            end = back + int(rng.uniform(13 * 60, 19 * 60) * MINUTE_MS)
            self.suspended_until[h] = end
            declared = bool(rng.random() < p.elder_trip_declared_share)
            out.append(
                Incident(
                    ELDER_AWAY,
                    "household",
                    (ids[h],),
                    t,
                    end,
                    True,
                    (LONE_ELDER_INACTIVE,),
                    declared,
                    details={},
                    index=h,
                )
            )
        for h in inactive.tolist():
            t = self._at(rng, day, lo, hi, rng.uniform(0, 24 * 60))
            if t is None:
                continue
            found = None if p.lone_elder_found_after_h is None else t + int(p.lone_elder_found_after_h * HOUR_MS)
            self.suspended_until[h] = np.iinfo(np.int64).max if found is None else found
            out.append(Incident(LONE_ELDER_INACTIVE, "household", (ids[h],), t, found, index=h))
        # cleaning days and taps left running
        free = self.occupied & (self.suspended_until <= hi)
        cand = np.flatnonzero(free)
        for h in _choose(rng, cand, int(rng.poisson(p.cleaning_day_per_household_day * len(cand)))):
            t = self._at(rng, day, lo, hi, rng.uniform(8 * 60, 15 * 60))
            if t is None or self.suspended_until[h] > t:
                continue
            minutes = int(rng.integers(p.cleaning_minutes[0], p.cleaning_minutes[1] + 1))
            lpm = round(float(rng.uniform(*p.cleaning_lpm)), 2)
            out.append(
                Incident(
                    CLEANING,
                    "household",
                    (ids[h],),
                    t,
                    t + minutes * MINUTE_MS,
                    True,
                    (CONTINUOUS_FLOW, GROUP_RENTAL),
                    details={"flow_lpm": lpm},
                    index=int(h),
                )
            )
        weight = np.where(hp.lone_elder[cand], p.tap_running_elder_factor, 1.0)
        hit = cand[rng.random(len(cand)) < p.tap_running_per_household_day * weight]
        for h in hit.tolist():
            t = self._at(rng, day, lo, hi, rng.uniform(6 * 60, 23 * 60))
            if t is None or self.suspended_until[h] > t:
                continue
            hours = float(rng.uniform(*p.tap_running_hours))
            lpm = round(float(rng.uniform(*p.tap_running_lpm)), 2)
            out.append(
                Incident(
                    CONTINUOUS_FLOW,
                    "household",
                    (ids[h],),
                    t,
                    t + int(hours * HOUR_MS),
                    details={"flow_lpm": lpm, "lone_elder": bool(hp.lone_elder[h])},
                    index=h,
                )
            )
        return out

    def _ebike_day(self, rng: np.random.Generator, day: int, lo: int, hi: int) -> list[Incident]:
        d, p = self.d, self.p
        eb, hp = d.ebikes, d.households
        out: list[Incident] = []
        for s in range(len(eb.ids)):
            h = int(eb.household[s])
            if h >= 0:
                if not eb.charger_owner[s] or rng.random() >= p.ebike_sensor_session_prob:
                    continue
                owner = h
                evening = rng.random() < 0.8
            else:
                if rng.random() >= p.ebike_corridor_sessions_per_day:
                    continue
                in_b = d.building_households[int(eb.building[s])]
                owner = int(in_b[int(rng.integers(0, len(in_b)))])
                evening = rng.random() < 0.6
            start_min = rng.uniform(19 * 60, 23.5 * 60) if evening else rng.uniform(11 * 60, 17 * 60)
            t = self._at(rng, day, lo, hi, start_min)
            if t is None or self.sensor_busy[s] > t or not self._free(eb.ids[s], t):
                continue
            if h >= 0 and self.suspended_until[h] > t:
                continue
            soc0 = float(rng.uniform(0.1, 0.6))
            if evening:  # unplugged when leaving next morning
                end = day_start(day + 1) + int(rng.uniform(6.5 * 60, 8.5 * 60) * MINUTE_MS)
            else:
                end = t + int(rng.uniform(3, 7) * HOUR_MS)
            if h >= 0 and self.suspended_until[h] > end:
                continue
            self.sensor_busy[s] = end
            ch = hp.charger
            details = {
                "household_id": d.household_ids[h] if h >= 0 else None,
                "building_id": d.building_ids[int(eb.building[s])],
                "chemistry": "lithium" if ch.chemistry[owner] == Chemistry.LITHIUM else "lead_acid",
                "pack_v": float(ch.pack_v[owner]),
                "current_a": round(float(ch.current_a[owner]), 2),
                "capacity_ah": round(float(ch.capacity_ah[owner]), 1),
                "efficiency": round(float(ch.efficiency[owner]), 3),
                "soc0": round(soc0, 3),
                "peak_w": round(
                    peak_power(
                        int(ch.chemistry[owner]),
                        float(ch.pack_v[owner]),
                        float(ch.current_a[owner]),
                        float(ch.efficiency[owner]),
                    ),
                    1,
                ),
            }
            out.append(Incident(EBIKE_INDOOR, "device", (eb.ids[s],), t, end, details=details, index=s))
        return out

    def _smoke_day(self, rng: np.random.Generator, day: int, lo: int, hi: int) -> list[Incident]:
        d, p = self.d, self.p
        sm = d.smoke
        n = len(sm.ids)
        out: list[Incident] = []
        if n == 0:
            return out
        # fires: one to three detectors of a building, the second within a few minutes
        n_b = len(d.building_ids)
        for b in _choose(rng, np.arange(n_b), int(rng.poisson(p.fire_per_building_day * n_b))):
            dets = self._smoke_by_building.get(int(b), [])
            t0 = self._at(rng, day, lo, hi, _cooking_minute(rng) if rng.random() < 0.6 else rng.uniform(0, 1440))
            if not dets or t0 is None:
                continue
            order = sorted(dets, key=lambda i: (not sm.kitchen[i], int(rng.integers(0, 1000))))
            first = order[0]
            rest = sorted(order[1:], key=lambda i: (abs(int(sm.floor[i]) - int(sm.floor[first])), i))
            n_more = int(rng.random() < 0.8) + int(rng.random() < 0.35)
            chosen = [first, *rest[:n_more]]
            if not all(self._free(sm.ids[i], t0) for i in chosen):
                continue
            end = t0 + int(rng.uniform(20, 90) * MINUTE_MS)
            events: list[DeviceEvent] = []
            t_alarm = t0
            for k, i in enumerate(chosen):
                if k:
                    t_alarm += int(rng.uniform(20, 180) * 1000)
                events.append(
                    (
                        t_alarm,
                        device_topic("smoke", sm.ids[i], "event"),
                        {"event": "alarm", "obscuration_db_m": round(float(rng.uniform(2.0, 9.0)), 2)},
                    )
                )
                events.append((end + k * 1500, device_topic("smoke", sm.ids[i], "event"), {"event": "alarm_clear"}))
                self._hold(sm.ids[i], end + 60_000)
            out.append(
                Incident(
                    FIRE,
                    "building",
                    (d.building_ids[int(b)],),
                    t0,
                    end + (len(chosen) - 1) * 1500,
                    details={"detectors": [sm.ids[i] for i in chosen], "grid_id": d.building_grid[int(b)]},
                    index=int(b),
                    events=tuple(events),
                )
            )
        # nuisance alarms: cooking in public kitchens, steam and dust in corridors; clear within a minute
        rate = np.where(sm.kitchen, self.kitchen_rate, p.corridor_nuisance_per_detector_day)
        for i in np.flatnonzero(rng.random(n) < rate).tolist():
            kitchen = bool(sm.kitchen[i])
            minute = (
                _cooking_minute(rng)
                if kitchen
                else (rng.uniform(19 * 60, 23 * 60) if rng.random() < 0.6 else rng.uniform(0, 1440))
            )
            t = self._at(rng, day, lo, hi, minute)
            if t is None or not self._free(sm.ids[i], t):
                continue
            clear = t + int(rng.uniform(10, 55) * 1000)
            tp = device_topic("smoke", sm.ids[i], "event")
            events = [(t, tp, {"event": "alarm", "obscuration_db_m": round(float(rng.uniform(0.4, 2.5)), 2)})]
            if rng.random() < 0.25:
                events.append((t + (clear - t) // 2, tp, {"event": "mute"}))
            events.append((clear, tp, {"event": "alarm_clear"}))
            self._hold(sm.ids[i], clear + 1000)
            out.append(
                Incident(
                    NUISANCE_COOKING if kitchen else NUISANCE_STEAM,
                    "device",
                    (sm.ids[i],),
                    t,
                    clear,
                    True,
                    (FIRE,),
                    details={"building_id": d.building_ids[int(sm.building[i])]},
                    index=i,
                    events=tuple(events),
                )
            )
        # faults, removals (tamper), monthly tests by the property company
        u = rng.random(n)
        for i in np.flatnonzero(u < p.smoke_fault_per_detector_day).tolist():
            out += self._smoke_pair(rng, day, lo, hi, i, SMOKE_FAULT, "fault", "fault_clear", (1, 48))
        hit = (u >= p.smoke_fault_per_detector_day) & (
            u < p.smoke_fault_per_detector_day + p.smoke_tamper_per_detector_day
        )
        for i in np.flatnonzero(hit).tolist():
            out += self._smoke_pair(rng, day, lo, hi, i, SMOKE_TAMPER, "tamper", "tamper_clear", (0.5, 72))
        for i in np.flatnonzero(rng.random(n) < p.smoke_test_per_detector_day).tolist():
            t = self._at(rng, day, lo, hi, rng.uniform(9 * 60, 16 * 60))
            if t is None or not self._free(sm.ids[i], t):
                continue
            self._hold(sm.ids[i], t + 1000)
            out.append(
                Incident(
                    SMOKE_TEST,
                    "device",
                    (sm.ids[i],),
                    t,
                    t,
                    True,
                    (FIRE,),
                    index=i,
                    events=((t, device_topic("smoke", sm.ids[i], "event"), {"event": "test"}),),
                )
            )
        # batteries: a replacement resets one; falling below the threshold is reported (truth once)
        for i, repl in list(self.battery_replace_day.items()):
            if repl == day:
                self.battery_val[i], self.battery_day[i] = 100.0, day
                del self.battery_replace_day[i]
        low = np.flatnonzero(
            (self.battery_val - sm.battery_per_day * (day - self.battery_day)) < self.bp.low_battery_pct
        )
        for i in low.tolist():
            if i in self.battery_low_since:
                continue
            t = day_start(day) + int(sm.phase_s[i]) * 1000
            if not lo <= t < hi:
                continue
            self.battery_low_since[i] = t
            replace = day + int(rng.integers(3, 31))
            self.battery_replace_day[i] = replace
            end = day_start(replace) + int(sm.phase_s[i]) * 1000
            out.append(Incident(SMOKE_LOW_BATTERY, "device", (sm.ids[i],), t, end, index=i))
        return out

    def _smoke_pair(
        self,
        rng: np.random.Generator,
        day: int,
        lo: int,
        hi: int,
        i: int,
        kind: str,
        on: str,
        off: str,
        hours: tuple[float, float],
    ) -> list[Incident]:
        sm = self.d.smoke
        t = self._at(rng, day, lo, hi, rng.uniform(0, 1440))
        if t is None or not self._free(sm.ids[i], t):
            return []
        end = t + int(rng.uniform(*hours) * HOUR_MS)
        self._hold(sm.ids[i], end + 1000)
        tp = device_topic("smoke", sm.ids[i], "event")
        return [
            Incident(
                kind,
                "device",
                (sm.ids[i],),
                t,
                end,
                index=i,
                details={"building_id": self.d.building_ids[int(sm.building[i])]},
                events=((t, tp, {"event": on}), (end, tp, {"event": off})),
            )
        ]

    def _elevator_day(self, rng: np.random.Generator, day: int, lo: int, hi: int) -> list[Incident]:
        d, p = self.d, self.p
        el = d.elevators
        out: list[Incident] = []
        n = len(el.ids)
        if n == 0:
            return out
        u = rng.random(n)
        weights = np.array([f[2] for f in ELEVATOR_FAULTS])
        for e in range(n):
            eid = el.ids[e]
            floor = int(rng.integers(1, int(el.floors[e]) + 1))
            tp_event, tp_data = device_topic("elevator", eid, "event"), device_topic("elevator", eid, "data")
            if u[e] < p.trapped_per_elevator_day:
                t = self._at(rng, day, lo, hi, rng.uniform(6 * 60, 23 * 60))
                if t is None or not self._free(eid, t):
                    continue
                at_floor = rng.random() < 0.6
                end = t + int(rng.uniform(15, 60) * MINUTE_MS)
                events: list[DeviceEvent] = [(t, tp_data, {"floor": floor, "moving": False, "door": "closed"})]
                if at_floor:
                    events.append((t + 90_000, tp_event, {"event": "trapped", "code": 93, "floor": floor}))
                else:
                    events.append(
                        (t + 15_000, tp_event, {"event": "stop_outside_door_zone", "code": 4, "floor": floor})
                    )
                    events.append((t + 16_000, tp_event, {"event": "trapped", "code": 90, "floor": floor}))
                events.append((end, tp_event, {"event": "recovered", "floor": floor}))
                events.append((end + 2000, tp_data, {"floor": floor, "moving": False, "door": "open"}))
                self._hold(eid, end + 5000)
                out.append(
                    Incident(
                        TRAPPED,
                        "device",
                        (eid,),
                        t,
                        end,
                        index=e,
                        events=tuple(events),
                        details={
                            "building_id": d.building_ids[int(el.building[e])],
                            "floor": floor,
                            "at_floor_level": at_floor,
                        },
                    )
                )
            elif u[e] < p.trapped_per_elevator_day + p.fault_per_elevator_day:
                t = self._at(rng, day, lo, hi, rng.uniform(0, 1440))
                if t is None or not self._free(eid, t):
                    continue
                name, code, _ = ELEVATOR_FAULTS[int(rng.choice(len(ELEVATOR_FAULTS), p=weights / weights.sum()))]
                end = t + int(rng.uniform(20, 360) * MINUTE_MS)
                fields: dict[str, Any] = {"event": name, "floor": floor}
                if code is not None:
                    fields["code"] = code
                events = [(t, tp_event, fields), (end, tp_event, {"event": "recovered", "floor": floor})]
                self._hold(eid, end + 5000)
                out.append(
                    Incident(
                        ELEVATOR_FAULT,
                        "device",
                        (eid,),
                        t,
                        end,
                        index=e,
                        events=tuple(events),
                        details={"building_id": d.building_ids[int(el.building[e])], "event": name, "code": code},
                    )
                )
            elif u[e] < p.trapped_per_elevator_day + p.fault_per_elevator_day + p.ebike_in_elevator_per_elevator_day:
                t = self._at(rng, day, lo, hi, rng.uniform(7 * 60, 22 * 60))
                if t is None or not self._free(eid, t):
                    continue
                self._hold(eid, t + 60_000)
                out.append(
                    Incident(
                        ELEVATOR_EBIKE,
                        "device",
                        (eid,),
                        t,
                        t,
                        index=e,
                        details={"building_id": d.building_ids[int(el.building[e])]},
                        events=((t, tp_event, {"event": "ebike_detected", "floor": 1}),),
                    )
                )
        return out

    def _devices_day(self, rng: np.random.Generator, day: int, lo: int, hi: int) -> list[Incident]:
        p = self.p
        devices = self._devices
        out: list[Incident] = []
        for k in _choose(rng, np.arange(len(devices)), int(rng.poisson(p.offline_per_device_day * len(devices)))):
            dtype, did = devices[int(k)]
            t = self._at(rng, day, lo, hi, rng.uniform(0, 1440))
            if t is None or not self._free(did, t):
                continue
            hours = {
                "smoke": p.offline_hours_smoke,
                "elevator": p.offline_hours_connected,
                "ebike": p.offline_hours_connected,
            }.get(dtype, p.offline_hours)
            end = t + int(rng.uniform(*hours) * HOUR_MS)
            self._hold(did, end)
            if dtype == "ebike":
                self.sensor_busy[self.d.ebikes.ids.index(did)] = end
            events: tuple[DeviceEvent, ...] = ()
            if dtype in ("elevator", "ebike"):  # devices holding an MQTT connection: the will, then back
                events = (
                    (t, device_topic(dtype, did, "status"), {"online": False}),
                    (end, device_topic(dtype, did, "status"), {"online": True}),
                )
            out.append(
                Incident(OFFLINE, "device", (did,), t, end, details={"device_type": dtype}, index=int(k), events=events)
            )
        n_meters = 2 * self.d.n_households
        for k in _choose(rng, np.arange(n_meters), int(rng.poisson(p.meter_reset_per_meter_day * n_meters))):
            dtype, did = devices[int(k)]
            t = self._at(rng, day, lo, hi, rng.uniform(0, 1440))
            if t is None or not self._free(did, t):
                continue
            out.append(Incident(METER_RESET, "device", (did,), t, t, details={"device_type": dtype}, index=int(k)))
        for _ in range(int(rng.poisson(self.malformed_per_day * (hi - lo) / DAY_MS))):
            k = int(rng.integers(0, len(devices)))
            dtype, did = devices[k]
            reason = MALFORMED_REASONS[int(rng.integers(0, len(MALFORMED_REASONS)))]
            if reason == "unregistered_device":
                did = f"{did[:2]}-X{int(rng.integers(0, 10**6)):06d}"
            t = lo + int(rng.integers(0, hi - lo))
            out.append(
                Incident(MALFORMED, "device", (did,), t, t, details={"reason": reason, "device_type": dtype}, index=k)
            )
        return out


def _choose(rng: np.random.Generator, pool: np.ndarray[Any, Any], k: int) -> list[int]:
    k = min(k, len(pool))
    if k <= 0:
        return []
    return sorted(int(x) for x in rng.choice(pool, size=k, replace=False))


def _cooking_minute(rng: np.random.Generator) -> float:
    """A time of day when people cook: breakfast, lunch or dinner."""
    centre = (6.75 * 60, 11.25 * 60, 17.75 * 60)[int(rng.choice(3, p=[0.2, 0.35, 0.45]))]
    return float(np.clip(rng.normal(centre, 35), 0, 1439))


def peak_power(chemistry: int, pack_v: float, current_a: float, efficiency: float) -> float:
    """Wall power at the end of the constant-current stage (the charge's peak), in W."""
    v_top = pack_v / 12.0 * 14.7 if chemistry == Chemistry.LEAD_ACID else round(pack_v / 3.7) * 4.2
    return v_top * current_a / efficiency + 1.5
