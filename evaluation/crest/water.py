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
    seed: np.random.SeedSequence,
    district: District,
    occ: np.ndarray,
    away: np.ndarray,
    present: np.ndarray,
    starts: np.ndarray,
    day_types: np.ndarray,
    offsets: np.ndarray,
    params: Params,
) -> np.ndarray:
    """Litres per minute (households, minutes) of everything people do; no masks applied yet.

    Each household draws from its own stream (spawned from `seed` in household order), so what one
    flat does never shifts another's draws: a run with more incidents leaves the other flats alone.
    """
    hhs = district.households
    n_min = occ.shape[1] * 10
    ev = _Events()
    order = np.argsort(starts[:, 0], kind="stable")
    by_unit = np.split(starts[order], np.searchsorted(starts[order, 0], np.arange(1, len(district.units))))
    for hh, child in zip(hhs, seed.spawn(len(hhs)), strict=True):
        rng = np.random.default_rng(child)
        members = np.array(hh.units, dtype=np.int64)
        _household(
            rng,
            district,
            hh.index,
            members,
            occ,
            away,
            present,
            np.concatenate([by_unit[u] for u in members]),
            day_types,
            offsets,
            params,
            ev,
        )
    return ev.render(len(hhs), n_min)


def _household(
    rng: np.random.Generator,
    district: District,
    h: int,
    members: np.ndarray,
    occ_all: np.ndarray,
    away_all: np.ndarray,
    present_all: np.ndarray,
    starts: np.ndarray,
    day_types: np.ndarray,
    offsets: np.ndarray,
    p: Params,
    ev: _Events,
) -> None:
    hh = district.households[h]
    units = [district.units[u] for u in members]
    occ = occ_all[members]
    away = away_all[members]
    present = present_all[members]
    n_units, n_slots = occ.shape
    n_min = n_slots * 10
    days = n_slots // crest.SLOTS_PER_DAY
    size = np.array([u.size for u in units], dtype=np.int64)
    wf = hh.water_factor

    def add(minute: np.ndarray, dur: np.ndarray | int, litres: np.ndarray) -> None:
        minute = np.asarray(minute, dtype=np.int64)
        ev.add(np.full(len(minute), h), minute, np.broadcast_to(np.asarray(dur), minute.shape), litres)

    def poisson_minutes(rate_per_active_hour: float) -> np.ndarray:
        n = rng.poisson(occ.astype(float) * rate_per_active_hour / 6.0)
        u, s = np.nonzero(n)
        s = np.repeat(s, n[u, s])
        return np.asarray(s * 10 + rng.integers(0, 10, len(s)), dtype=np.int64)

    # toilets (with hand-washing after most), further hand-washing and short taps while active
    minute = poisson_minutes(p.toilet_per_active_hour)
    add(minute, 1, hh.cistern_l + rng.uniform(-0.3, 0.3, len(minute)))
    wash = minute[rng.random(len(minute)) < p.handwash_after_toilet] + 1
    add(wash, 1, rng.uniform(*p.handwash_litres, len(wash)))
    minute = poisson_minutes(p.handwash_per_active_hour)
    add(minute, 1, rng.uniform(*p.handwash_litres, len(minute)))
    minute = poisson_minutes(p.tap_per_active_hour)
    add(minute, 1, rng.uniform(*p.tap_litres, len(minute)))

    # night-time visits of people asleep at home
    rate = np.array([_night_rate(hh.elder if x.elder else None, x.size, p) for x in units])
    counts = rng.poisson(np.repeat(rate[:, None], days, axis=1))
    u, d = np.nonzero(counts)
    u, d = np.repeat(u, counts[u, d]), np.repeat(d, counts[u, d])
    minute = d * MIN_PER_DAY + rng.integers(p.night_window_min[0], p.night_window_min[1], len(u))
    slot = minute // 10
    minute = minute[present[u, slot] & ~away[u, slot] & (occ[u, slot] == 0)]
    add(minute, 1, hh.cistern_l + rng.uniform(-0.3, 0.3, len(minute)))
    wash = minute[rng.random(len(minute)) < p.handwash_after_toilet] + 1
    add(wash, 1, rng.uniform(*p.handwash_litres, len(wash)))

    # showers, timed by CREST's washing profile
    w = _activity_weights(occ, day_types[members], offsets[members], crest.P_WASHING).reshape(n_units * days, -1)
    row, slot = _sample_slots(rng, w, rng.poisson(np.repeat(size * p.showers_per_person_day, days)))
    minute = (row % days) * MIN_PER_DAY + slot * 10 + rng.integers(0, 10, len(row))
    dur = rng.uniform(*p.shower_minutes, len(row)) * np.sqrt(wf)
    add(minute, np.ceil(dur).astype(np.int64), dur * hh.shower_lpm)

    # kitchen: preparation before a meal, dishes after it, the kettle filled at each kettle start
    local = {int(u): k for k, u in enumerate(members)}
    for unit, first, last in _meals(starts, p.meal_gap_min):
        k = local[unit]
        elder = units[k].elder
        if rng.random() < (p.kitchen_prep_p_elder if elder else p.kitchen_prep_p):
            at = first - int(rng.integers(0, 11))
            add(np.array([at]), int(rng.integers(2, 5)), np.array([rng.uniform(*p.kitchen_prep_litres) * wf]))
        p_dish = p.dishes_p_elder if elder else (0.2 if hh.has_dishwasher else p.dishes_p)
        if rng.random() < p_dish:
            at = last + int(rng.integers(p.dishes_delay_min[0], p.dishes_delay_min[1] + 1))
            litres = rng.uniform(*p.dishes_litres) * (1.0 + 0.3 * (units[k].size - 1)) * wf
            if at < n_min and occ[k, at // 10] > 0:
                add(np.array([at]), int(rng.integers(5, 13)), np.array([litres]))
    kettle = starts[starts[:, 1] == crest.KETTLE, 2]
    add(kettle - 1, 1, rng.uniform(*p.kettle_fill_litres, len(kettle)))

    # laundry and dishwasher at CREST's cycle phases
    wm = starts[np.isin(starts[:, 1], (crest.WASHING_MACHINE, crest.WASHER_DRYER)), 2]
    add(wm + crest.WASHER_FILL_MINUTES[0], crest.WASHER_FILL_MINUTES[1], rng.uniform(*p.washer_fill_litres, len(wm)))
    for offset in crest.WASHER_RINSE_MINUTES:
        add(wm + offset, 2, rng.uniform(*p.washer_rinse_litres, len(wm)))
    dw = starts[starts[:, 1] == crest.DISHWASHER, 2]
    total = rng.uniform(*p.dishwasher_litres, len(dw))
    add(dw, 3, total * 0.6)
    add(dw + 35, 5, total * 0.4)

    # a mop bucket on some days, timed by CREST's cleaning profile of the flat's first unit
    w = _activity_weights(occ[:1], day_types[members[:1]], offsets[members[:1]], crest.P_CLEANING).reshape(days, -1)
    row, slot = _sample_slots(rng, w, (rng.random(days) < p.cleaning_p).astype(np.int64))
    minute = row * MIN_PER_DAY + slot * 10 + rng.integers(0, 10, len(row))
    add(minute, 3, rng.uniform(*p.cleaning_litres, len(row)) * wf)
