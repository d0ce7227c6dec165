"""Water draws derived from CREST's occupancy and activities, minute by minute per household.

CREST has no water model and no toilet. Its timing drives ours:
- toilet flushes, hand-washing and short taps at random minutes while occupants are active (a
  Poisson rate per active occupant), plus night-time visits (nocturia) of people asleep at home;
- showers placed by CREST's "washing" activity profile (the probability that an active occupant
  is washing, by ten-minute slot, weekday/weekend), a Chinese count per person-day;
- kitchen water at CREST's cooking events (hob, oven, microwave, small cooking grouped into
  meals): food preparation before, dish-washing after, and the kettle filled at each kettle start;
- the washing machine's fill and four rinses at the minutes of CREST's washing-machine cycle, the
  dishwasher's fills at its cycle;
- a mop bucket on some days, timed by CREST's "cleaning" activity profile.
Volumes are in PARAMS.md. The result is litres per local minute, shape (households, minutes).
"""

from __future__ import annotations

import numpy as np

from evaluation.crest import crest
from evaluation.crest.district import District, ElderPlan
from evaluation.crest.params import Params

MIN_PER_DAY = 1440


class _Events:
    """Water draws as (household, first minute, minutes, litres), spread evenly over their minutes."""

    def __init__(self) -> None:
        self.h: list[np.ndarray] = []
        self.m: list[np.ndarray] = []
        self.d: list[np.ndarray] = []
        self.litres: list[np.ndarray] = []

    def add(self, h: np.ndarray, minute: np.ndarray, dur: np.ndarray, litres: np.ndarray) -> None:
        if len(h) == 0:
            return
        self.h.append(np.asarray(h, dtype=np.int64))
        self.m.append(np.asarray(minute, dtype=np.int64))
        self.d.append(np.maximum(np.asarray(dur, dtype=np.int64), 1))
        self.litres.append(np.asarray(litres, dtype=float))

    def render(self, n_households: int, n_min: int) -> np.ndarray:
        out = np.zeros(n_households * n_min)
        if not self.h:
            return out.reshape(n_households, n_min)
        h = np.concatenate(self.h)
        m = np.concatenate(self.m)
        d = np.concatenate(self.d)
        lit = np.concatenate(self.litres)
        rep = np.repeat(np.arange(len(h)), d)
        first = np.repeat(np.cumsum(d) - d, d)
        minute = m[rep] + (np.arange(len(rep)) - first)
        ok = (minute >= 0) & (minute < n_min)
        np.add.at(out, h[rep][ok] * n_min + minute[ok], (lit / d)[rep][ok])
        return out.reshape(n_households, n_min)


def _activity_weights(occ: np.ndarray, day_types: np.ndarray, offsets: np.ndarray, profile: int) -> np.ndarray:
    """CREST's probability that an active occupant does `profile`, for every unit and slot (0 when nobody is active)."""
    data = crest.load()
    n_slots = occ.shape[1]
    s = np.arange(n_slots)[None, :] - offsets[:, None]
    slot = s % crest.SLOTS_PER_DAY
    dt = np.take_along_axis(day_types, s // crest.SLOTS_PER_DAY + 1, axis=1)
    w = data.activity[dt, np.minimum(occ, 5).astype(np.int64), profile, slot]
    return np.where(occ > 0, w, 0.0)


def _sample_slots(rng: np.random.Generator, weights: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows of slot weights (K, 144) and counts (K,), the (row, slot) of each drawn event."""
    total = weights.sum(axis=1)
    ok = (total > 0) & (counts > 0)
    if not ok.any():
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    rows = np.nonzero(ok)[0]
    pv = weights[rows] / total[rows, None]
    drawn = rng.multinomial(counts[rows], pv)  # (k, 144)
    r, slot = np.nonzero(drawn)
    reps = drawn[r, slot]
    return np.repeat(rows[r], reps), np.repeat(slot, reps)


def _meals(starts: np.ndarray, gap: int) -> list[tuple[int, int, int]]:
    """CREST cooking starts (unit, appliance, minute) grouped into meals: (unit, first minute, last minute)."""
    cook = starts[np.isin(starts[:, 1], crest.COOKING_APPLIANCES)]
    if len(cook) == 0:
        return []
    order = np.lexsort((cook[:, 2], cook[:, 0]))
    cook = cook[order]
    meals: list[tuple[int, int, int]] = []
    u0, first, last = int(cook[0, 0]), int(cook[0, 2]), int(cook[0, 2])
    for u, _, m in cook[1:]:
        if int(u) == u0 and int(m) - last <= gap:
            last = int(m)
            continue
        meals.append((u0, first, last))
        u0, first, last = int(u), int(m), int(m)
    meals.append((u0, first, last))
    return meals


def meals(starts: np.ndarray, params: Params) -> list[tuple[int, int, int]]:
    """Meals (unit, first cooking minute, last cooking minute) from CREST's cooking starts."""
    return _meals(starts, params.meal_gap_min)


def _night_rate(elder: ElderPlan | None, size: int, p: Params) -> float:
    return elder.nocturia if elder is not None else p.night_toilet_other * size


def household_water(
    rng: np.random.Generator,
    district: District,
    occ: np.ndarray,
    away: np.ndarray,
    present: np.ndarray,
    starts: np.ndarray,
    day_types: np.ndarray,
    offsets: np.ndarray,
    params: Params,
) -> np.ndarray:
    """Litres per minute (households, minutes) of everything people do; no masks applied yet."""
    p = params
    hhs = district.households
    units = district.units
    n_h = len(hhs)
    n_units, n_slots = occ.shape
    n_min = n_slots * 10
    days = n_slots // crest.SLOTS_PER_DAY
    unit_h = np.array([u.household for u in units], dtype=np.int64)
    size = np.array([u.size for u in units], dtype=np.int64)
    wf = np.array([h.water_factor for h in hhs])
    cistern = np.array([h.cistern_l for h in hhs])
    lpm = np.array([h.shower_lpm for h in hhs])
    ev = _Events()

    # toilets and hand-washing while active
    lam = occ.astype(float) * p.toilet_per_active_hour / 6.0
    n = rng.poisson(lam)
    u, s = np.nonzero(n)
    u, s = np.repeat(u, n[u, s]), np.repeat(s, n[u, s])
    minute = s * 10 + rng.integers(0, 10, len(u))
    h = unit_h[u]
    ev.add(h, minute, np.ones(len(h)), cistern[h] + rng.uniform(-0.3, 0.3, len(h)))
    wash = rng.random(len(h)) < p.handwash_after_toilet
    ev.add(h[wash], minute[wash] + 1, np.ones(int(wash.sum())), rng.uniform(*p.handwash_litres, int(wash.sum())))
    n = rng.poisson(occ.astype(float) * p.handwash_per_active_hour / 6.0)
    u, s = np.nonzero(n)
    u, s = np.repeat(u, n[u, s]), np.repeat(s, n[u, s])
    ev.add(unit_h[u], s * 10 + rng.integers(0, 10, len(u)), np.ones(len(u)), rng.uniform(*p.handwash_litres, len(u)))

    # short taps (a glass of water, rinsing a cup or a cloth) while active
    n = rng.poisson(occ.astype(float) * p.tap_per_active_hour / 6.0)
    u, s = np.nonzero(n)
    u, s = np.repeat(u, n[u, s]), np.repeat(s, n[u, s])
    ev.add(unit_h[u], s * 10 + rng.integers(0, 10, len(u)), np.ones(len(u)), rng.uniform(*p.tap_litres, len(u)))

    # night-time visits of people asleep at home
    rate = np.array([_night_rate(hhs[x.household].elder, x.size, p) for x in units])
    counts = rng.poisson(np.repeat(rate[:, None], days, axis=1))
    u, d = np.nonzero(counts)
    u, d = np.repeat(u, counts[u, d]), np.repeat(d, counts[u, d])
    minute = d * MIN_PER_DAY + rng.integers(p.night_window_min[0], p.night_window_min[1], len(u))
    slot = minute // 10
    home = present[u, slot] & ~away[u, slot] & (occ[u, slot] == 0)
    u, minute = u[home], minute[home]
    h = unit_h[u]
    ev.add(h, minute, np.ones(len(h)), cistern[h] + rng.uniform(-0.3, 0.3, len(h)))
    wash = rng.random(len(h)) < p.handwash_after_toilet
    ev.add(h[wash], minute[wash] + 1, np.ones(int(wash.sum())), rng.uniform(*p.handwash_litres, int(wash.sum())))

    # showers, timed by CREST's washing profile
    w = _activity_weights(occ, day_types, offsets, crest.P_WASHING).reshape(n_units * days, crest.SLOTS_PER_DAY)
    counts = rng.poisson(np.repeat(size * p.showers_per_person_day, days))
    row, slot = _sample_slots(rng, w, counts)
    u = row // days
    minute = (row % days) * MIN_PER_DAY + slot * 10 + rng.integers(0, 10, len(row))
    h = unit_h[u]
    dur = rng.uniform(*p.shower_minutes, len(h)) * np.sqrt(wf[h])
    ev.add(h, minute, np.ceil(dur), dur * lpm[h])

    # kitchen: preparation before a meal, dishes after it, the kettle filled at each kettle start
    k_h: list[int] = []
    k_at: list[int] = []
    k_dur: list[int] = []
    k_l: list[float] = []
    for unit, first, last in meals(starts, p):
        hh = hhs[units[unit].household]
        elder = units[unit].elder
        if rng.random() < (p.kitchen_prep_p_elder if elder else p.kitchen_prep_p):
            k_h.append(hh.index)
            k_at.append(first - int(rng.integers(0, 11)))
            k_dur.append(int(rng.integers(2, 5)))
            k_l.append(rng.uniform(*p.kitchen_prep_litres) * hh.water_factor)
        p_dish = p.dishes_p_elder if elder else (0.2 if hh.has_dishwasher else p.dishes_p)
        if rng.random() < p_dish:
            at = last + int(rng.integers(p.dishes_delay_min[0], p.dishes_delay_min[1] + 1))
            if at < n_min and occ[unit, at // 10] > 0:
                k_h.append(hh.index)
                k_at.append(at)
                k_dur.append(int(rng.integers(5, 13)))
                k_l.append(rng.uniform(*p.dishes_litres) * (1.0 + 0.3 * (units[unit].size - 1)) * hh.water_factor)
    ev.add(np.array(k_h), np.array(k_at), np.array(k_dur), np.array(k_l))
    kettle = starts[starts[:, 1] == crest.KETTLE]
    ev.add(
        unit_h[kettle[:, 0]], kettle[:, 2] - 1, np.ones(len(kettle)), rng.uniform(*p.kettle_fill_litres, len(kettle))
    )

    # laundry and dishwasher at CREST's cycle phases
    wm = starts[np.isin(starts[:, 1], (crest.WASHING_MACHINE, crest.WASHER_DRYER))]
    h = unit_h[wm[:, 0]]
    ev.add(
        h,
        wm[:, 2] + crest.WASHER_FILL_MINUTES[0],
        np.full(len(h), crest.WASHER_FILL_MINUTES[1]),
        rng.uniform(*p.washer_fill_litres, len(h)),
    )
    for offset in crest.WASHER_RINSE_MINUTES:
        ev.add(h, wm[:, 2] + offset, np.full(len(h), 2), rng.uniform(*p.washer_rinse_litres, len(h)))
    dw = starts[starts[:, 1] == crest.DISHWASHER]
    h = unit_h[dw[:, 0]]
    total = rng.uniform(*p.dishwasher_litres, len(h))
    ev.add(h, dw[:, 2], np.full(len(h), 3), total * 0.6)
    ev.add(h, dw[:, 2] + 35, np.full(len(h), 5), total * 0.4)

    # a mop bucket on some days, timed by CREST's cleaning profile of the flat's first unit
    base = np.array([hh.units[0] for hh in hhs], dtype=np.int64)
    w = _activity_weights(occ[base], day_types[base], offsets[base], crest.P_CLEANING).reshape(
        n_h * days, crest.SLOTS_PER_DAY
    )
    counts = (rng.random(n_h * days) < p.cleaning_p).astype(np.int64)
    row, slot = _sample_slots(rng, w, counts)
    h = row // days
    minute = (row % days) * MIN_PER_DAY + slot * 10 + rng.integers(0, 10, len(row))
    ev.add(h, minute, np.full(len(h), 3), rng.uniform(*p.cleaning_litres, len(h)) * wf[h])

    return ev.render(n_h, n_min)
