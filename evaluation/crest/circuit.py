"""The e-bike sensor's circuit: the sockets by the door, one-minute mean power (DOMAIN.md l.57-77).

What shares the circuit is drawn per flat from CREST's appliances that plausibly sit there (the
fridge, the first TV, the computer, the kettle: their on/off minutes come from the CREST run and
their power is re-drawn from DOMAIN's ranges), plus loads CREST does not have: a rice cooker at
CREST's meals, a winter heater (probability by CREST's monthly temperature modifier), and evening
TV sessions of 2-5 h. An e-bike charger follows a three-stage profile: constant current (flat to
within about 1 % minute to minute, a slow rise of a few per cent as the pack voltage climbs),
constant-voltage taper (exponential over 1-3 h) and float, until the owner unplugs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluation.crest import crest
from evaluation.crest.district import District
from evaluation.crest.params import Params
from evaluation.crest.truth import EBIKE, Record

MIN_PER_DAY = 1440


@dataclass
class CircuitPlan:
    """What one e-bike sensor's circuit carries."""

    household: int
    device_id: str
    household_id: str
    unit: int
    fridge: int | None  # the CREST cold appliance on the circuit
    fridge_w: float
    tv: bool
    tv_w: float
    tv_sd: float
    tv_standby_w: float
    tv_evening: bool
    computer: str | None  # laptop | desktop
    computer_w: float
    monitor_w: float
    kettle: bool
    kettle_w: float
    rice: bool
    rice_cook_w: float
    rice_warm_w: float
    heater: bool
    heater_w: float
    heater_cycling: bool
    base_w: float
    charger: str | None  # lead_acid | lithium | fast
    charge_p: float
    cc_w: float
    float_w: float

    def loads(self) -> list[str]:
        """Names of the loads on the circuit besides a charger."""
        named = (
            ("fridge", self.fridge is not None),
            ("tv", self.tv),
            (self.computer or "computer", self.computer is not None),
            ("kettle", self.kettle),
            ("rice_cooker", self.rice),
            ("heater", self.heater),
        )
        return [name for name, on in named if on]

    def members(self) -> list[tuple[int, int]]:
        """The CREST (unit, appliance) pairs whose minutes this circuit takes over from the meter."""
        out: list[tuple[int, int]] = []
        if self.fridge is not None:
            out.append((self.unit, self.fridge))
        if self.tv:
            out.append((self.unit, crest.TV1))
        if self.computer:
            out.append((self.unit, crest.PC))
        if self.kettle:
            out.append((self.unit, crest.KETTLE))
        return out


def plan(rng: np.random.Generator, district: District, params: Params) -> list[CircuitPlan]:
    """Draw the circuit of every household with an e-bike sensor."""
    p = params
    plans: list[CircuitPlan] = []
    for hh in district.households:
        if hh.ebike_id is None:
            continue
        unit = hh.units[0]
        owned = district.units[unit].owned
        cold = next((a for a in (crest.REFRIGERATOR, crest.FRIDGE_FREEZER) if owned[a]), None)
        fridge = cold if (cold is not None and rng.random() < p.circuit_fridge_p) else None
        tv = bool(owned[crest.TV1] and rng.random() < p.circuit_tv_p)
        computer = None
        if owned[crest.PC] and rng.random() < p.circuit_computer_p:
            computer = "laptop" if rng.random() < p.laptop_p else "desktop"
        kettle = bool(owned[crest.KETTLE] and rng.random() < p.circuit_kettle_p)
        rice = bool(rng.random() < p.circuit_rice_p)
        heater = bool(rng.random() < p.circuit_heater_p)
        group = hh.kind == "group_rental"
        charges = rng.random() < (p.charges_indoors_p_group_rental if group else p.charges_indoors_p)
        kind = None
        cc_w = float_w = charge_p = 0.0
        if charges:
            kind = ("lead_acid", "lithium", "fast")[int(rng.choice(3, p=np.array(p.charger_kinds)))]
            rng_w = {"lead_acid": p.lead_acid_w, "lithium": p.lithium_w, "fast": p.fast_w}[kind]
            cc_w = float(rng.uniform(*rng_w))
            float_w = float(rng.uniform(*(p.lead_float_w if kind == "lead_acid" else p.lithium_idle_w)))
            charge_p = float(rng.uniform(*(p.charge_night_p_group_rental if group else p.charge_night_p)))
        plans.append(
            CircuitPlan(
                household=hh.index,
                device_id=hh.ebike_id,
                household_id=hh.id,
                unit=unit,
                fridge=fridge,
                fridge_w=float(rng.uniform(*p.fridge_w)),
                tv=tv,
                tv_w=float(rng.uniform(*p.tv_w)),
                tv_sd=float(rng.uniform(*p.tv_picture_sd)),
                tv_standby_w=float(rng.uniform(0.5, 2.0)),
                tv_evening=tv,
                computer=computer,
                computer_w=float(rng.uniform(*(p.laptop_w if computer == "laptop" else p.desktop_w))),
                monitor_w=float(rng.uniform(*p.monitor_w)) if computer == "desktop" else 0.0,
                kettle=kettle,
                kettle_w=float(rng.uniform(*p.kettle_w)),
                rice=rice,
                rice_cook_w=float(rng.uniform(*p.rice_cook_w)),
                rice_warm_w=float(rng.uniform(*p.rice_warm_w)),
                heater=heater,
                heater_w=float(rng.uniform(*p.heater_w)),
                heater_cycling=bool(rng.random() < p.heater_cycling_p),
                base_w=float(rng.uniform(*p.circuit_base_w)) if rng.random() < 0.5 else 0.0,
                charger=kind,
                charge_p=charge_p,
                cc_w=cc_w,
                float_w=float_w,
            )
        )
    return plans


def _smooth_noise(rng: np.random.Generator, n: int, tau: float = 3.0) -> np.ndarray:
    """Unit-variance noise correlated over a few minutes (a picture's or a CPU's load)."""
    k = np.exp(-np.arange(int(4 * tau) + 1) / tau)
    white = rng.standard_normal(n + len(k) - 1)
    return np.convolve(white, k / np.sqrt((k * k).sum()), mode="valid")[:n]


def runs(mask: np.ndarray, merge_gap: int = 0) -> list[tuple[int, int]]:
    """Half-open (start, end) runs of True, runs closer than `merge_gap` minutes merged."""
    if not mask.any():
        return []
    d = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts = np.nonzero(d == 1)[0]
    ends = np.nonzero(d == -1)[0]
    out: list[tuple[int, int]] = []
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        if out and s - out[-1][1] <= merge_gap:
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


@dataclass(frozen=True)
class CircuitRun:
    """The rendered circuits."""

    true_w: np.ndarray  # (circuits, minutes) what flows (for the household's power meter)
    measured_dw: np.ndarray  # (circuits, minutes) int64 the sensor's reading in 0.1 W
    records: list[Record]


def render(
    seed: np.random.SeedSequence,
    plans: list[CircuitPlan],
    member_power: np.ndarray,
    member_cols: dict[tuple[int, int], int],
    occ: np.ndarray,
    meal_list: list[tuple[int, int, int]],
    month_of_day: np.ndarray,
    params: Params,
) -> CircuitRun:
    """Every circuit's minute-by-minute power, the charging sessions and the long-running confounders."""
    p = params
    n_min = member_power.shape[0]
    days = n_min // MIN_PER_DAY
    true_w = np.zeros((len(plans), n_min))
    measured = np.zeros((len(plans), n_min), dtype=np.int64)
    records: list[Record] = []
    meals_by_unit: dict[int, list[tuple[int, int]]] = {}
    for unit, first, last in meal_list:
        meals_by_unit.setdefault(unit, []).append((first, last))
    for ci, (c, child) in enumerate(zip(plans, seed.spawn(len(plans)), strict=True)):
        rng = np.random.default_rng(child)  # one stream per circuit: one flat's draws never shift another's
        occ_u = occ[c.unit]
        total = np.full(n_min, c.base_w)
        tv_on = np.zeros(n_min, dtype=bool)
        heat_on = np.zeros(n_min, dtype=bool)
        comp_on = np.zeros(n_min, dtype=bool)
        if c.fridge is not None:
            on = member_power[:, member_cols[(c.unit, c.fridge)]] > 1.0
            total += np.where(on, c.fridge_w * (1.0 + 0.02 * rng.standard_normal(n_min)), 0.0)
        if c.tv:
            tv_on = member_power[:, member_cols[(c.unit, crest.TV1)]] > 4.0
            for d in range(days):
                if rng.random() < p.tv_evening_p:
                    st = d * MIN_PER_DAY + int(rng.integers(p.tv_evening_start_min[0], p.tv_evening_start_min[1] + 1))
                    if st < n_min and occ_u[st // 10] > 0:
                        tv_on[st : st + int(rng.uniform(*p.tv_evening_min))] = True
            pic = np.clip(1.0 + c.tv_sd * _smooth_noise(rng, n_min), 0.85, 1.15)
            total += np.where(tv_on, c.tv_w * pic, c.tv_standby_w)
            for s, e in runs(tv_on, 10):
                if e - s >= p.circuit_confounder_min:
                    records.append(
                        _confounder(
                            "confounder.circuit_tv",
                            c,
                            s,
                            e,
                            {"tv_w": round(c.tv_w, 1), "picture_sd": round(c.tv_sd, 3)},
                        )
                    )
        if c.computer:
            comp_on = member_power[:, member_cols[(c.unit, crest.PC)]] > 6.0
            if c.computer == "laptop":
                load = np.clip(1.0 + 0.06 * _smooth_noise(rng, n_min, 2.0), 0.8, 1.2) * c.computer_w
                idle = 1.0
            else:
                load = np.clip(1.0 + 0.15 * _smooth_noise(rng, n_min, 1.5), 0.5, 1.5) * c.computer_w + c.monitor_w
                idle = 2.0
            total += np.where(comp_on, load, idle)
            for s, e in runs(comp_on, 10):
                if e - s >= p.circuit_confounder_min:
                    records.append(
                        _confounder(
                            "confounder.circuit_laptop",
                            c,
                            s,
                            e,
                            {"computer": c.computer, "computer_w": round(c.computer_w + c.monitor_w, 1)},
                        )
                    )
        if c.kettle:
            on = member_power[:, member_cols[(c.unit, crest.KETTLE)]] > 2.0
            total += np.where(on, c.kettle_w * (1.0 + 0.01 * rng.standard_normal(n_min)), 0.0)
        if c.rice:
            for first, _last in meals_by_unit.get(c.unit, []):
                if rng.random() >= p.rice_p:
                    continue
                st = max(0, first - int(rng.integers(10, 41)))
                cook = int(rng.uniform(*p.rice_cook_min))
                warm = int(rng.uniform(*p.rice_warm_min))
                a, b = st, min(st + cook, n_min)
                total[a:b] += c.rice_cook_w * (1.0 + 0.02 * rng.standard_normal(b - a))
                a, b = b, min(b + warm, n_min)
                total[a:b] += c.rice_warm_w * (1.0 + 0.05 * rng.standard_normal(b - a))
        if c.heater:
            for d in range(days):
                mod = crest.MONTHLY_HEATING_MODIFIER[int(month_of_day[d]) - 1]
                if rng.random() >= min(0.9, p.heater_day_p * mod):
                    continue
                window = (1080, 1320) if rng.random() < 0.7 else (360, 480)
                st = d * MIN_PER_DAY + int(rng.integers(window[0], window[1]))
                if st >= n_min or occ_u[st // 10] == 0:
                    continue
                en = min(st + int(rng.uniform(*p.heater_min)), n_min)
                if c.heater_cycling:
                    t = st
                    while t < en:
                        on_len = int(rng.uniform(*p.heater_on_min))
                        heat_on[t : min(t + on_len, en)] = True
                        t += on_len + int(rng.uniform(*p.heater_off_min))
                else:
                    heat_on[st:en] = True
                records.append(
                    _confounder(
                        "confounder.circuit_heater",
                        c,
                        st,
                        en,
                        {"heater_w": round(c.heater_w, 1), "cycling": c.heater_cycling},
                    )
                )
            total += np.where(heat_on, c.heater_w * (1.0 + 0.01 * rng.standard_normal(n_min)), 0.0)
        if c.charger:
            charge = np.zeros(n_min)
            prev_end = -1
            for d in range(days):
                if rng.random() >= c.charge_p:
                    continue
                r = rng.random()
                if r < p.charge_evening_p:
                    kind, st = "evening", int(rng.integers(1080, 1381))
                elif r < p.charge_evening_p + p.charge_day_p:
                    kind, st = "day", int(rng.integers(660, 961))
                else:
                    kind, st = "late", int(rng.integers(1380, 1501))
                st += d * MIN_PER_DAY
                # the owner plugs in on coming home: the first active slot within 90 minutes
                slots = np.nonzero(occ_u[st // 10 : min(st // 10 + 9, len(occ_u))] > 0)[0]
                if len(slots) == 0:
                    continue
                st = max(st, (st // 10 + int(slots[0])) * 10 + int(rng.integers(0, 10)))
                if st <= prev_end + 30 or st >= n_min:
                    continue
                if kind == "day":
                    dur = int(rng.uniform(4.0, 8.0) * 60)
                else:
                    unplug = (st // MIN_PER_DAY + (1 if st % MIN_PER_DAY >= 720 else 0)) * MIN_PER_DAY
                    unplug += int(rng.integers(p.unplug_min[0], p.unplug_min[1] + 1))
                    dur = unplug - st
                    lo, hi = int(p.session_h[0] * 60), int(p.session_h[1] * 60)
                    if dur > hi:
                        dur = hi - int(rng.integers(0, 60))
                    elif dur < lo:
                        dur = lo + int(rng.integers(0, 60))
                avail = dur - 10
                taper = int(min(rng.uniform(*p.taper_min), avail * 0.6))
                cc = int(min(rng.uniform(*p.cc_min), avail - taper))
                rise = float(rng.uniform(*p.cc_rise))
                tcc = np.arange(cc)
                cc_curve = c.cc_w * (1.0 + rise * tcc / max(cc, 1)) * (1.0 + p.cc_noise_sd * rng.standard_normal(cc))
                end_cc = c.cc_w * (1.0 + rise)
                tt = np.arange(taper)
                taper_curve = c.float_w + (end_cc - c.float_w) * np.exp(-3.0 * tt / max(taper, 1))
                taper_curve *= 1.0 + p.cc_noise_sd * rng.standard_normal(taper)
                rest = dur - cc - taper
                float_curve = c.float_w * (1.0 + 0.03 * rng.standard_normal(rest))
                curve = np.concatenate([cc_curve, taper_curve, float_curve])
                en = min(st + dur, n_min)
                charge[st:en] = curve[: en - st]
                prev_end = st + dur
                sharing = [
                    name for name, on in (("tv", tv_on), ("heater", heat_on), ("computer", comp_on)) if on[st:en].any()
                ]
                records.append(
                    Record(
                        kind=EBIKE,
                        subject_type="device",
                        subject_ids=(c.device_id,),
                        start=st,
                        end=st + dur,
                        confounder=False,
                        could_be_mistaken_for=(),
                        details={
                            "household_id": c.household_id,
                            "charger": c.charger,
                            "cc_w": round(c.cc_w, 1),
                            "cc_min": cc,
                            "taper_min": taper,
                            "float_w": round(c.float_w, 2),
                            "start_kind": kind,
                            "sharing_circuit_with": sharing,
                            "circuit_loads": c.loads(),
                        },
                    )
                )
            total += charge
        true_w[ci] = total
        noisy = total * (1.0 + p.sensor_noise_sd * rng.standard_normal(n_min)) + p.sensor_noise_w * rng.standard_normal(
            n_min
        )
        measured[ci] = np.round(np.clip(noisy, 0.0, None) * 10.0).astype(np.int64)
    return CircuitRun(true_w, measured, records)


def _confounder(kind: str, c: CircuitPlan, start: int, end: int, details: dict[str, object]) -> Record:
    return Record(
        kind=kind,
        subject_type="device",
        subject_ids=(c.device_id,),
        start=start,
        end=end,
        confounder=True,
        could_be_mistaken_for=(EBIKE,),
        details={"household_id": c.household_id, **details},
    )
