"""The Richardson/CREST domestic demand model, driven by our own seeded generator, vectorised over units.

What comes from richardsonpy 0.2.3 (GPL-3.0; an evaluation-only dependency):
- its bundled data: the active-occupancy transition matrices ``tpm{n}_{wd,we}.csv`` and start states
  (UK time-use survey 2000), the activity profiles ``ActiveAppliances_{wd,we}.csv``, the 33
  appliances of ``Appliances.csv`` and the 100 lamp sets of ``LightBulbs.csv``;
- its appliance calibration (``Appliances``: cycles per year scaled to an annual demand), called
  with our ownership vector through an override of ``randomize``;
- its lighting constants (``LightingModelConfiguration``).

What is ours: the loops. richardsonpy draws every random number from Python's global ``random``
(``random.random``/``random.gauss`` in ``all_states``, ``_get_start_state``, ``randomize``,
``cycle_length``, ``run_application_simulation``, ``run_lighting_simulation``) and loops in pure
Python per appliance and minute, which is neither seedable per household nor fast enough for
hundreds of flats. We never call those functions. The same algorithms run here over arrays of
(unit, appliance) and (unit, lamp) pairs, one minute at a time, from a ``numpy.random.Generator``.

Where richardsonpy departs from CREST we follow CREST (the published model):
- activity statistics are rows ``6 * active_occupants + profile`` (the file has six profiles per
  occupant count; richardsonpy indexes ``5 * occupants + profile`` and so reads a neighbour's row);
- the start state of the occupancy chain is drawn from the column of the household size
  (richardsonpy takes a row, which always yields state 0), and the chain has no forced state
  at the eighth slot of each day (richardsonpy's ``i == len(row) - 1`` test);
- CREST's monthly temperature modifier applies to "other electric space heating" (richardsonpy
  tests the storage-heater index, which never reaches that branch).
Departures of ours, for a continuous multi-day run: appliance cycles and lamps carry over midnight
(CREST simulates one day at a time and starts each day with everything off); rated powers are
redrawn each day as CREST does (normal, sd = mean / 10).
"""

from __future__ import annotations

import csv
import functools
import math
import os
from dataclasses import dataclass

import numpy as np
import richardsonpy  # type: ignore[import-untyped]
from richardsonpy.classes.appliance import Appliances  # type: ignore[import-untyped]
from richardsonpy.classes.lighting import (  # type: ignore[import-untyped]
    LightingModelConfiguration,
    load_lighting_profile,
)

SLOTS_PER_DAY = 144
MIN_PER_DAY = 1440
MIN_PER_BIN = 15
N_APPLIANCES = 33
WEEKDAY, WEEKEND = 0, 1  # richardsonpy's type_weekday = ["wd", "we"]

# Rows of richardsonpy/inputs/Appliances.csv
CHEST_FREEZER, FRIDGE_FREEZER, REFRIGERATOR, UPRIGHT_FREEZER = 0, 1, 2, 3
ANSWER_MACHINE, CD_PLAYER, CLOCK, CORDLESS_PHONE, HIFI, IRON, VACUUM, FAX = 4, 5, 6, 7, 8, 9, 10, 11
PC, PRINTER, TV1, TV2, TV3, VCR_DVD, TV_RECEIVER = 12, 13, 14, 15, 16, 17, 18
HOB, OVEN, MICROWAVE, KETTLE, SMALL_COOKING = 19, 20, 21, 22, 23
DISHWASHER, TUMBLE_DRYER, WASHING_MACHINE, WASHER_DRYER = 24, 25, 26, 27
DESWH, E_INST, ELECTRIC_SHOWER, STORAGE_HEATER, SPACE_HEATER = 28, 29, 30, 31, 32
COOKING_APPLIANCES = (HOB, OVEN, MICROWAVE, SMALL_COOKING)

# CREST activity use profiles (column "Activity use profile")
P_TV, P_COOKING, P_LAUNDRY, P_WASHING, P_IRONING, P_CLEANING, P_ACTIVE_OCC, P_LEVEL, P_CUSTOM = range(9)

# CREST: relative monthly temperature modifier for electric space heating (Met Office Midlands 2007)
MONTHLY_HEATING_MODIFIER = (1.63, 1.821, 1.595, 0.867, 0.763, 0.191, 0.156, 0.087, 0.399, 0.936, 1.561, 1.994)


def _washing_profile() -> np.ndarray:
    """CREST's washing-machine / washer-dryer power by minute of the cycle (index 1..198; 0 unused)."""
    table = np.zeros(200)
    phases = [
        (1, 8, 73),  # start-up and fill
        (9, 29, 2056),  # heating
        (30, 81, 73),  # wash and drain
        (82, 92, 73),  # spin
        (93, 94, 250),  # rinse
        (95, 105, 73),
        (106, 107, 250),
        (108, 118, 73),
        (119, 120, 250),
        (121, 131, 73),
        (132, 133, 250),
        (134, 138, 568),  # fast spin
        (139, 198, 2500),  # drying (washer-dryer only)
    ]
    for lo, hi, watts in phases:
        table[lo : hi + 1] = watts
    return table


WASHING_PROFILE = _washing_profile()
WASH_CYCLE_MIN = {WASHING_MACHINE: 138, WASHER_DRYER: 198}
# CREST's rinse phases (minute of the cycle at which water is drawn)
WASHER_FILL_MINUTES = (0, 8)
WASHER_RINSE_MINUTES = (92, 105, 118, 131)


@dataclass(frozen=True)
class CrestData:
    """richardsonpy's bundled CREST data, as arrays."""

    tpm_cum: np.ndarray  # (5 sizes, 2 day types, 144 slots, 7 states, 7 next states) cumulative
    start_states: np.ndarray  # (2 day types, 7 states, 7 columns): column n = household size n
    activity: np.ndarray  # (2 day types, 6 active occupants, 6 profiles, 144 slots)
    names: tuple[str, ...]
    uk_ownership: np.ndarray  # (33,) share of UK dwellings with the appliance
    mean_cycle_min: np.ndarray
    mean_power_w: np.ndarray
    standby_w: np.ndarray
    restart_delay_min: np.ndarray
    profile: np.ndarray  # (33,) int
    bulb_sets: tuple[tuple[float, ...], ...]
    light_threshold: tuple[float, float]  # external irradiance threshold mean, sd (W/m2)
    light_calibration: float
    effective_occupancy: np.ndarray  # (6,)
    light_duration_low: np.ndarray  # (9,)
    light_duration_high: np.ndarray  # (9,)
    appliances_csv: str


def inputs_dir() -> str:
    """richardsonpy's input data directory."""
    return os.path.join(os.path.dirname(richardsonpy.__file__), "inputs")


@functools.lru_cache(maxsize=1)
def load() -> CrestData:
    """Load the CREST data from richardsonpy's package (cached; no randomness)."""
    base = os.path.join(inputs_dir(), "constants")
    day_types = ("wd", "we")
    tpm = np.zeros((5, 2, SLOTS_PER_DAY, 7, 7))
    for n in range(1, 6):
        for d, dt in enumerate(day_types):
            raw = np.loadtxt(os.path.join(base, f"tpm{n}_{dt}.csv"), delimiter=";")
            tpm[n - 1, d] = raw[:, 2:].reshape(SLOTS_PER_DAY, 7, 7)
    starts = np.stack([np.loadtxt(os.path.join(base, f"occ_start_states_{dt}.csv"), delimiter=";") for dt in day_types])
    activity = np.zeros((2, 6, 6, SLOTS_PER_DAY))
    for d, dt in enumerate(day_types):
        raw = np.loadtxt(os.path.join(base, f"ActiveAppliances_{dt}.csv"), delimiter=";")
        for row in raw:
            activity[d, int(row[0]), int(row[1])] = row[2 : 2 + SLOTS_PER_DAY]
    app_csv = os.path.join(inputs_dir(), "Appliances.csv")
    names: list[str] = []
    rows: list[list[float]] = []
    with open(app_csv, encoding="utf8") as fh:
        reader = csv.reader(fh, delimiter=";")
        next(reader)
        for row in reader:
            names.append(row[1])
            rows.append([float(c) for c in row[2:]])
    a = np.array(rows)
    light_csv = os.path.join(inputs_dir(), "LightBulbs.csv")
    bulb_sets = tuple(tuple(load_lighting_profile(filename=light_csv, index=i)) for i in range(100))
    cfg = LightingModelConfiguration()
    return CrestData(
        tpm_cum=np.cumsum(tpm, axis=-1),
        start_states=starts,
        activity=activity,
        names=tuple(names),
        uk_ownership=a[:, 1],
        mean_cycle_min=a[:, 3],
        mean_power_w=a[:, 4],
        standby_w=a[:, 5],
        restart_delay_min=a[:, 6],
        profile=a[:, 8].astype(np.int64),
        bulb_sets=bulb_sets,
        light_threshold=(float(cfg.ext_irr_threshold_mean), float(cfg.ext_irr_threshold_std_dev)),
        light_calibration=float(cfg.calib_scalar),
        effective_occupancy=np.array(cfg.eff_occupancy, dtype=float),
        light_duration_low=np.array(cfg.light_event_lower_value, dtype=float),
        light_duration_high=np.array(cfg.light_event_upper_value, dtype=float),
        appliances_csv=app_csv,
    )


class _OwnedAppliances(Appliances):  # type: ignore[misc]
    """richardsonpy's appliance calibration for an ownership vector we chose (no global `random`)."""

    def __init__(self, filename: str, ownership: np.ndarray, annual_consumption: float) -> None:
        self._ownership = [bool(x) for x in ownership]
        super().__init__(filename, annual_consumption=annual_consumption, randomize_appliances=True)

    def randomize(self) -> None:
        for row, owned in zip(self.data, self._ownership, strict=True):
            row[0] = 1.0 if owned else 0.0


def calibrate(ownership: np.ndarray, annual_kwh: float) -> np.ndarray:
    """CREST's per-minute start-probability scalars (33,) for a dwelling owning `ownership`.

    Cold appliances (CREST's "LEVEL" profile: fridges, freezers, the clock) keep CREST's base
    cycles (calibration factor 1: a fridge-freezer runs about a quarter of the time); the other
    appliances are calibrated by richardsonpy to the rest of the annual demand. CREST scales every
    appliance by one factor, which for a household far below the UK's 3,200 kWh a year would make
    the fridge cycle a few times a day.
    """
    data = load()
    cold = data.profile == P_LEVEL
    cycling = data.mean_cycle_min * data.mean_power_w > 0  # appliances with energy in a cycle
    scalar = np.zeros(N_APPLIANCES)
    cold_kwh = 0.0
    if (ownership & cold & cycling).any():
        cold_app = _OwnedAppliances(data.appliances_csv, ownership & cold, 1.0)
        cold_kwh = float(cold_app.estimate_annual_consumption(1.0))  # sets calib_scalar for factor 1
        scalar = np.where(cold, np.array(cold_app.calib_scalar, dtype=float), scalar)
    if (ownership & ~cold & cycling).any():
        rest = max(annual_kwh - cold_kwh, 0.3 * annual_kwh)
        rest_app = _OwnedAppliances(data.appliances_csv, ownership & ~cold, rest)
        scalar = np.where(cold, scalar, np.array(rest_app.calib_scalar, dtype=float))
    return np.clip(scalar, 0.0, None)


def homebound_tpm_cum(leave: float, come_back: float, first_slot: int, last_slot: int) -> np.ndarray:
    """CREST's one-person chain made more homebound between two slots: (2, 144, 7, 7) cumulative.

    The probability of going from active to inactive is multiplied by `leave` and that of coming
    back from inactive by `come_back` (capped at 1), the difference moved onto staying; the
    time-of-day shape of every transition is CREST's.
    """
    data = load()
    p = np.diff(np.concatenate([np.zeros((*data.tpm_cum.shape[1:4], 1)), data.tpm_cum[0]], axis=-1), axis=-1)
    day = slice(first_slot, last_slot)
    go = p[:, day, 1, 0] * leave
    p[:, day, 1, 1] += p[:, day, 1, 0] - go
    p[:, day, 1, 0] = go
    back = np.minimum(p[:, day, 0, 1] * come_back, p[:, day, 0, 1] + p[:, day, 0, 0])
    p[:, day, 0, 0] -= back - p[:, day, 0, 1]
    p[:, day, 0, 1] = back
    return np.cumsum(p, axis=-1)


def run_occupancy(
    rng: np.random.Generator,
    sizes: np.ndarray,
    day_types: np.ndarray,
    offsets: np.ndarray,
    n_slots: int,
    homebound: np.ndarray | None = None,
    homebound_cum: np.ndarray | None = None,
) -> np.ndarray:
    """CREST active occupancy (U, n_slots) int8, one Markov chain per unit.

    `sizes` (U,) people 1..5; `day_types` (U, days + 1) WEEKDAY/WEEKEND of each virtual day, the
    first column being the day before the run; `offsets` (U,) slots by which a unit's day runs
    late (0 for most; a night-shift worker's day is CREST's day shifted by 10-12 hours).
    Units flagged in `homebound` (one person each) follow `homebound_cum` (see homebound_tpm_cum).
    """
    data = load()
    n_units = len(sizes)
    size_idx = sizes.astype(np.int64) - 1
    tpm_cum = data.tpm_cum
    if homebound is not None and homebound_cum is not None and homebound.any():
        assert np.all(sizes[homebound] == 1), "a homebound chain is a one-person chain"
        tpm_cum = np.concatenate([tpm_cum, homebound_cum[None]], axis=0)
        size_idx = np.where(homebound, 5, size_idx)
    rows = np.arange(n_units)
    virt = -offsets.astype(np.int64)
    dt0 = day_types[rows, virt // SLOTS_PER_DAY + 1]
    # start state: CREST's distribution for the household size, drawn once at the first virtual slot
    start_p = data.start_states[dt0, :, sizes.astype(np.int64)]  # (U, 7): column n is household size n
    cum0 = np.cumsum(start_p, axis=1)
    state = np.minimum((rng.random(n_units)[:, None] >= cum0).sum(axis=1), sizes).astype(np.int64)
    occ = np.zeros((n_units, n_slots), dtype=np.int8)
    draws = rng.random((n_slots, n_units))
    for s in range(n_slots):
        v = s - offsets
        slot = v % SLOTS_PER_DAY
        dt = day_types[rows, v // SLOTS_PER_DAY + 1]
        cum = tpm_cum[size_idx, dt, slot, state]  # (U, 7)
        less = draws[s][:, None] < cum
        has = less.any(axis=1)
        state = np.where(has, less.argmax(axis=1), state)
        occ[:, s] = state
    return occ


@dataclass(frozen=True)
class ApplianceRun:
    """What the appliance model produced."""

    meter_wmin: np.ndarray  # (U, bins) W*min per 15-min bin of the unit's appliances (circuit members excluded)
    member_power: np.ndarray  # (minutes, K) float32 W of the recorded (unit, appliance) circuit members
    starts: np.ndarray  # (n, 3) int64 rows (unit, appliance, minute) of recorded start events
    standby_w: np.ndarray  # (U,) constant standby of the unit's metered appliances
    cold_w: np.ndarray  # (U,) rated power of the unit's metered cold appliances (sum, upper bound)


def run_appliances(
    rng: np.random.Generator,
    occ: np.ndarray,
    present: np.ndarray,
    day_types: np.ndarray,
    offsets: np.ndarray,
    owned: np.ndarray,
    calib: np.ndarray,
    standby_on: np.ndarray,
    dead_start: np.ndarray,
    dead_end: np.ndarray,
    month_of_day: np.ndarray,
    members: list[tuple[int, int]],
    start_kinds: tuple[int, ...],
) -> ApplianceRun:
    """CREST's appliance model (run_application_simulation), minute by minute over all owned pairs.

    `occ`/`present` (U, slots); `dead_start`/`dead_end` (U,) minutes of an inactivity incident
    (-1 when none): from its start the unit counts as inactive and every running cycle of a
    non-cold appliance is cut, so the meter falls to standby and the cold appliances' cycling.
    """
    data = load()
    n_units, n_slots = occ.shape
    n_min = n_slots * 10
    n_bins = n_min // MIN_PER_BIN
    u_idx, a_idx = np.nonzero(owned)
    n_pairs = len(u_idx)
    profile = data.profile[a_idx]
    standby = data.standby_w[a_idx] * standby_on[u_idx]
    mean_len = data.mean_cycle_min[a_idx]
    delay0 = data.restart_delay_min[a_idx]
    rated_mean = data.mean_power_w[a_idx]
    pair_calib = calib[u_idx, a_idx]
    cold = profile == P_LEVEL
    pause_ok = (profile != P_LEVEL) & (profile != P_LAUNDRY) & (profile != P_CUSTOM)
    is_tv = np.isin(a_idx, (TV1, TV2, TV3))
    is_heat = np.isin(a_idx, (STORAGE_HEATER, SPACE_HEATER))
    wash_idx = np.nonzero(np.isin(a_idx, (WASHING_MACHINE, WASHER_DRYER)))[0]
    wash_total = np.where(a_idx[wash_idx] == WASHING_MACHINE, 138, 198)
    act_prof = np.minimum(profile, 5)
    uses_activity = profile < P_ACTIVE_OCC
    is_space_heater = a_idx == SPACE_HEATER
    never = profile == P_CUSTOM  # storage heaters' custom handler is not modelled (we never own them)

    pair_of = {(int(u), int(a)): i for i, (u, a) in enumerate(zip(u_idx, a_idx, strict=True))}
    member_pairs = np.array([pair_of[m] for m in members], dtype=np.int64)
    metered = np.ones(n_pairs, dtype=bool)
    metered[member_pairs] = False
    record = np.isin(a_idx, start_kinds)

    meter_standby = np.bincount(u_idx, weights=standby * metered, minlength=n_units)
    cold_w = np.bincount(u_idx, weights=rated_mean * 1.3 * (cold & metered), minlength=n_units)

    left = np.zeros(n_pairs)
    delay = rng.random(n_pairs) * delay0 * 2.0  # CREST: random initial restart delay for diversity
    rated = rated_mean.copy()
    meter = np.zeros((n_units, n_bins))
    member_power = np.zeros((n_min, len(member_pairs)), dtype=np.float32)
    acc = np.zeros(n_pairs)
    starts: list[np.ndarray] = []

    event_minutes = {int(x) for x in dead_start if x >= 0} | {int(x) for x in dead_end if x >= 0}
    rows = np.arange(n_units)
    p_start = np.zeros(n_pairs)
    pausing = np.zeros(n_pairs, dtype=bool)
    pres_pair = np.ones(n_pairs)
    draws = np.zeros((3, 10, n_pairs))
    for m in range(n_min):
        s, r = divmod(m, 10)
        if m % MIN_PER_DAY == 0:
            rated = rng.normal(rated_mean, rated_mean / 10.0)
        if r == 0 or m in event_minutes:
            if r == 0:
                # every pair draws the same numbers whatever happens (start test, TV length, heater
                # length), so one unit's behaviour never shifts another's stream
                draws = rng.random((3, 10, n_pairs))
            occ_u = occ[:, s].astype(np.int64)
            dead = (dead_start >= 0) & (m >= dead_start) & (m < dead_end)
            occ_u = np.where(dead, 0, occ_u)
            v = s - offsets
            slot = v % SLOTS_PER_DAY
            dt = day_types[rows, v // SLOTS_PER_DAY + 1]
            occ_p = occ_u[u_idx]
            act = data.activity[dt[u_idx], np.minimum(occ_p, 5), act_prof, slot[u_idx]]
            month = month_of_day[min(s // SLOTS_PER_DAY, len(month_of_day) - 1)]
            act = np.where(uses_activity, act, 1.0)
            act = np.where(is_space_heater, MONTHLY_HEATING_MODIFIER[month - 1], act)
            allowed = ((occ_p > 0) & ~never) | (profile == P_LEVEL)
            pres_pair = present[u_idx, s].astype(float)
            p_start = pair_calib * act * allowed * pres_pair
            pausing = (occ_p == 0) & pause_ok
            killed = np.isin(u_idx, np.nonzero(dead_start == m)[0]) & ~cold
            left[killed] = 0.0
        off = left <= 0
        waiting = off & (delay > 0)
        delay = np.where(waiting, delay - 1.0, delay)
        start = off & ~waiting & (draws[0, r] < p_start)
        running = ~off & ~pausing
        if start.any():
            idx = np.nonzero(start)[0]
            length = mean_len[idx].copy()
            tv = is_tv[idx]
            if tv.any():
                length[tv] = np.round(70.0 * (-np.log(1.0 - draws[1, r, idx[tv]])) ** 1.1)
            heat = is_heat[idx]
            if heat.any():  # normal(mean, mean / 10) by the Box-Muller transform of two fixed draws
                z = np.sqrt(-2.0 * np.log(1.0 - draws[1, r, idx[heat]])) * np.cos(2.0 * np.pi * draws[2, r, idx[heat]])
                length[heat] = mean_len[idx][heat] * (1.0 + z / 10.0)
            left[idx] = length
            delay[idx] = delay0[idx]
            rec = idx[record[idx]]
            if len(rec):
                starts.append(np.stack([u_idx[rec], a_idx[rec], np.full(len(rec), m)], axis=1))
        on = running | start
        power = np.where(on, rated, standby)
        if len(wash_idx):
            temp = np.clip(wash_total - left[wash_idx] + 1, 0, 199).astype(np.int64)
            wp = WASHING_PROFILE[temp]
            power[wash_idx] = np.where(on[wash_idx], np.where(wp > 0, wp, standby[wash_idx]), standby[wash_idx])
        left = np.where(on, left - 1.0, left)
        power = power * pres_pair
        acc += power
        member_power[m] = power[member_pairs]
        if m % MIN_PER_BIN == MIN_PER_BIN - 1:
            meter[:, m // MIN_PER_BIN] = np.bincount(u_idx, weights=acc * metered, minlength=n_units)
            acc[:] = 0.0
    start_arr = np.concatenate(starts) if starts else np.zeros((0, 3), dtype=np.int64)
    return ApplianceRun(meter, member_power, start_arr.astype(np.int64), meter_standby, cold_w)


def run_lighting(
    rng: np.random.Generator,
    occ: np.ndarray,
    present: np.ndarray,
    dead_start: np.ndarray,
    dead_end: np.ndarray,
    bulbs: list[np.ndarray],
    irradiance: np.ndarray,
    daylight_switching: np.ndarray,
) -> np.ndarray:
    """CREST's lighting model (run_lighting_simulation) over all (unit, lamp) pairs: W*min per bin (U, bins).

    A lamp switches on with probability effective_occupancy[active] x its use weighting when the
    outside irradiance is below the dwelling's threshold (or, 5 % of the time, regardless: CREST's
    rule; off for `daylight_switching` False), burns for one of CREST's nine duration bands and goes
    out when nobody is active. Thresholds and lamp weightings are redrawn each day, as in CREST.
    """
    data = load()
    n_units, n_slots = occ.shape
    n_min = n_slots * 10
    n_bins = n_min // MIN_PER_BIN
    q_unit = np.concatenate([np.full(len(b), u, dtype=np.int64) for u, b in enumerate(bulbs)])
    rating = np.concatenate(bulbs).astype(float)
    n_q = len(q_unit)
    eff = data.effective_occupancy
    low_b, high_b = data.light_duration_low, data.light_duration_high
    thr_mean, thr_sd = data.light_threshold
    daylight_q = daylight_switching[q_unit]
    remaining = np.zeros(n_q, dtype=np.int64)
    meter = np.zeros((n_units, n_bins))
    acc = np.zeros(n_q)
    thr_q = np.zeros(n_q)
    weight = np.zeros(n_q)
    occ_q = np.zeros(n_q, dtype=np.int64)
    pres_q = np.zeros(n_q)
    draws = np.zeros((10, 4, n_q))
    event_minutes = {int(x) for x in dead_start if x >= 0} | {int(x) for x in dead_end if x >= 0}
    for m in range(n_min):
        s, r = divmod(m, 10)
        if m % MIN_PER_DAY == 0:
            thr_q = np.asarray(rng.normal(thr_mean, thr_sd, size=n_units))[q_unit]
            weight = data.light_calibration * -np.log(rng.random(n_q))
        if r == 0 or m in event_minutes:
            if r == 0:
                draws = rng.random((10, 4, n_q))  # fixed per lamp: one unit never shifts another's stream
            dead = (dead_start >= 0) & (m >= dead_start) & (m < dead_end)
            occ_u = np.where(dead, 0, occ[:, s].astype(np.int64))
            occ_q = occ_u[q_unit]
            pres_q = present[q_unit, s].astype(float)
        on = remaining > 0
        cont = on & (occ_q > 0)
        low = (irradiance[m] < thr_q) | ((draws[r, 0] < 0.05) & daylight_q)
        switch = ~cont & low & (draws[r, 1] < eff[np.minimum(occ_q, 5)] * weight)
        remaining = np.where(cont, remaining - 1, 0)
        if switch.any():
            idx = np.nonzero(switch)[0]
            band = np.minimum((draws[r, 2, idx] * 9).astype(np.int64), 8)
            dur = low_b[band] + draws[r, 3, idx] * (high_b[band] - low_b[band])
            remaining[idx] = np.maximum(dur.astype(np.int64), 1) - 1
        lit = cont | switch
        acc += lit * rating * pres_q
        if m % MIN_PER_BIN == MIN_PER_BIN - 1:
            meter[:, m // MIN_PER_BIN] = np.bincount(q_unit, weights=acc, minlength=n_units)
            acc[:] = 0.0
    return meter


def annual_target_kwh(
    size: int, per_person_day: float, mfh_curve: tuple[float, ...], size_weights: tuple[float, ...]
) -> float:
    """Annual kWh of a CREST unit of `size`: CREST's shape by size, scaled so the mean person uses `per_person_day`."""
    persons = np.arange(1, 6)
    w = np.array(size_weights) * persons  # people by household size
    curve = np.array(mfh_curve)
    mean_per_person = float((w * curve / persons).sum() / w.sum())  # kWh/year per person over the population
    return float(curve[size - 1]) * per_person_day * 365.0 / mean_per_person


def tv_cycle_mean_min() -> float:
    """CREST's mean TV-viewing length: 70 x Gamma(2.1) minutes."""
    return 70.0 * math.gamma(2.1)
