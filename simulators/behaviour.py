"""Behaviour models: a day of water, power, e-bike circuits and elevator traffic, vectorised with numpy.

Each resident follows a routine for the persona (elder, worker, child, group-rental tenant on
day or night shifts, visitor, shopkeeper): up to four intervals of being awake at home, drawn
for the day (weekdays differ from weekends). Water is drawn in discrete events inside those
intervals (toilet flushes, taps, showers, cooking and dishes, laundry, mopping), so a
15-minute register shows the spiky, mostly idle pattern of a real flat and not a smooth flow.
Power is a minute-by-minute sum of standby, a cycling fridge, lights and electronics that
follow presence, and appliances: rice cooker (cook, then keep warm), kettle, microwave,
electric water heater after showers, washing machine, air conditioner by the day's
temperature, electric heater with its thermostat, dehumidifier in the plum-rain season, and
e-bike chargers with a constant-current / constant-voltage profile (`charge_power`).
Incidents from the scenario change the picture: a lone elder inactive or away leaves standby
and fridge only; a group rental brings its tenants' routines; visitors add people; shops add
business loads; taps left running and cleaning days add flows.

Calibration (averages over normal households, checked by tests/simulators): water ~120 L per
person per day (DOMAIN.md: 125, basin range 94-160); power ~1.5-2.3 kWh per person per day
by season (national 1.7).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from simulators.district import Chemistry, District, Persona
from simulators.scenario import (
    CLEANING,
    CONTINUOUS_FLOW,
    EBIKE_INDOOR,
    ELDER_AWAY,
    ELEVATOR_FAULT,
    GROUP_RENTAL,
    LONE_ELDER_INACTIVE,
    SHOP,
    TRAPPED,
    VISITORS,
    Incident,
)
from simulators.timebase import day_of_year, day_start, weekday
from whistle.timeutil import DAY_MS, MINUTE_MS

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

DAY_MIN = 1440
SLOTS = 96
BLOCK = 1024  # households per vectorised block (memory: a few (BLOCK, 1441) arrays)
BEHAVIOUR_DAY = 20
KWH_PER_LITRE_SHOWER = 0.035  # heating water by 30 K: 4.186 kJ/(kg K) * 30 K / 3600
K = 4  # home-awake intervals per person and day


@dataclass(frozen=True, slots=True)
class DaySignals:
    """One local day of the district's metered signals."""

    day: int
    water_l: FloatArray  # (households, 96): litres drawn in each 15-minute slot
    power_wh: FloatArray  # (households, 96): energy in each slot
    circuit_w: FloatArray  # (e-bike sensors, 1440): mean power in each minute
    temperature_c: float


# E-bike chargers ---------------------------------------------------------------------------------


class Charge(NamedTuple):
    """One e-bike charge: the pack, the charger and the state of charge at plug-in."""

    chemistry: int
    pack_v: float
    current_a: float
    capacity_ah: float
    efficiency: float
    soc0: float


def charge_voltages(chemistry: int, pack_v: float, soc0: float) -> tuple[float, float, float]:
    """(voltage at plug-in, top / absorption voltage, float voltage) of a pack."""
    if chemistry == Chemistry.LEAD_ACID:
        n = pack_v / 12.0  # 12 V blocks of six cells
        return n * (12.0 + 0.6 * soc0), n * 14.7, n * 13.6
    cells = round(pack_v / 3.7)
    return cells * (3.45 + 0.5 * soc0), cells * 4.2, cells * 4.2


def charge_power(minutes: FloatArray, c: Charge) -> FloatArray:
    """Wall power (W) of an e-bike charge `minutes` after plug-in.

    Lead-acid (three stages, DOMAIN.md): constant current while the pack voltage climbs to the
    absorption voltage (14.7 V per 12 V block), then constant voltage with the current decaying
    to ~0.3 A, then float at ~50 mA. Lithium: constant current to 4.2 V per cell, then constant
    voltage until the current falls to C/20, when the charger stops. The charger itself draws
    1-1.5 W. The CC stage lasts until ~80 % (lead) / 85 % (lithium) of capacity is in, so a
    typical 48 V lead-acid charge peaks near 170-200 W and finishes in 6-9 hours.
    """
    t_h = np.asarray(minutes, dtype=np.float64) / 60.0
    v0, v_top, v_float = charge_voltages(c.chemistry, c.pack_v, c.soc0)
    lead = c.chemistry == Chemistry.LEAD_ACID
    target = 0.8 if lead else 0.85
    charge_eff = 0.85 if lead else 0.97
    t_cc = c.capacity_ah * max(0.05, target - c.soc0) / charge_eff / c.current_a  # hours
    tau = (0.2 if lead else 0.15) * c.capacity_ah / c.current_a  # CV decay, hours
    cc = t_h < t_cc
    frac = np.clip(t_h / t_cc, 0.0, 1.0)
    v_cc = v0 + (v_top - v0) * (0.25 * frac + 0.75 * frac**3)  # slow climb, steep near the end
    i_cv = c.current_a * np.exp(-(t_h - t_cc) / tau)
    p = np.where(cc, v_cc * c.current_a, v_top * i_cv) / c.efficiency
    if lead:
        done = ~cc & (i_cv < 0.3)
        p = np.where(done, v_float * 0.05 / c.efficiency + 1.5, p + 1.5)
    else:
        done = ~cc & (i_cv < c.capacity_ah / 20.0)
        p = np.where(done, 0.8, p + 1.0)
    return np.where(t_h >= 0, p, 0.0)


def session_minutes(inc_start: int, inc_end: int, t0: int, c: Charge) -> tuple[IntArray, FloatArray]:
    """The minutes of the day starting at `t0` a charge covers, and its 60-s mean power in each."""
    lo = max(inc_start, t0)
    hi = min(inc_end, t0 + DAY_MS)
    if hi <= lo:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    m0 = (lo - t0) // MINUTE_MS
    m1 = (hi - t0 - 1) // MINUTE_MS + 1
    mins = np.arange(m0, m1, dtype=np.int64)
    edges_lo = np.maximum(t0 + mins * MINUTE_MS, inc_start)
    edges_hi = np.minimum(t0 + (mins + 1) * MINUTE_MS, inc_end)
    cover = (edges_hi - edges_lo) / MINUTE_MS
    mid = ((edges_lo + edges_hi) / 2 - inc_start) / MINUTE_MS
    return mins, charge_power(mid, c) * cover


def charge_of(inc: Incident) -> Charge:
    """The charge described by an `ebike.indoor_charging` incident's details."""
    det = inc.details
    return Charge(
        Chemistry.LITHIUM if det["chemistry"] == "lithium" else Chemistry.LEAD_ACID,
        float(det["pack_v"]),
        float(det["current_a"]),
        float(det["capacity_ah"]),
        float(det["efficiency"]),
        float(det["soc0"]),
    )


# Routines ---------------------------------------------------------------------------------------


def _n(rng: np.random.Generator, mean: float, sd: float, n: int, lo: float, hi: float) -> FloatArray:
    return np.clip(rng.normal(mean, sd, n), lo, hi)


def routines(rng: np.random.Generator, persona: IntArray, weekend: bool) -> tuple[FloatArray, FloatArray]:
    """Home-awake intervals (starts, ends), shape (persons, 4), in minutes of the day."""
    n = len(persona)
    s = np.zeros((n, K))
    e = np.zeros((n, K))
    u = rng.random((n, 4))
    z = np.zeros(n)

    def put(mask: BoolArray, cols: list[tuple[FloatArray, FloatArray]]) -> None:
        for k, (a, b) in enumerate(cols):
            s[mask, k] = a[mask]
            e[mask, k] = b[mask]

    def outing(p: float, lo: float, hi: float, dlo: float, dhi: float, col: int) -> tuple[FloatArray, FloatArray]:
        start = rng.uniform(lo, hi, n)
        length = rng.uniform(dlo, dhi, n)
        on = u[:, col] < p
        return np.where(on, start, 2000.0), np.where(on, start + length, 2000.0)

    # elders: up early, market in the morning, a walk in the afternoon
    wake = _n(rng, 360, 30, n, 270, 480)
    sleep = _n(rng, 1290, 40, n, 1170, 1425)
    a1, b1 = outing(0.55, 420, 540, 45, 120, 0)
    a2, b2 = outing(0.35, 840, 960, 60, 150, 1)
    put(persona == Persona.ELDER, [(wake, np.minimum(a1, sleep)), (b1, np.minimum(a2, sleep)), (b2, sleep)])
    # workers
    wake_w = _n(rng, 400, 25, n, 330, 480)
    leave = wake_w + rng.uniform(30, 60, n)
    back = _n(rng, 1110, 50, n, 1000, 1320)
    sleep_w = _n(rng, 1385, 35, n, 1290, 1439)
    ea, eb = outing(0.12, 1170, 1260, 60, 150, 2)
    home_day = weekend | (u[:, 3] < 0.1)  # weekends, and working from home
    wake_we = _n(rng, 500, 50, n, 400, 660)
    oa, ob = outing(0.6, 600, 900, 120, 360, 0)
    workers = persona == Persona.WORKER
    if weekend:
        put(workers, [(wake_we, np.minimum(oa, sleep_w)), (ob, sleep_w)])
    else:
        put(workers & ~home_day, [(wake_w, leave), (back, np.minimum(ea, sleep_w)), (eb, sleep_w)])
        put(workers & home_day, [(wake_we, np.minimum(oa, sleep_w)), (ob, sleep_w)])
    # children: school on weekdays, home with the family at weekends
    kids = persona == Persona.CHILD
    wake_c = _n(rng, 400, 15, n, 360, 450)
    sleep_c = _n(rng, 1290, 30, n, 1230, 1380)
    if weekend:
        put(kids, [(wake_we, np.minimum(oa, sleep_c)), (ob, sleep_c)])
    else:
        put(kids, [(wake_c, wake_c + rng.uniform(35, 50, n)), (_n(rng, 1000, 30, n, 930, 1110), sleep_c)])
    # group-rental tenants, day shift: out all day, home late, in bed after midnight
    tail = _n(rng, 50, 25, n, 0, 120)
    wake_r = _n(rng, 370, 25, n, 320, 430)
    back_r = _n(rng, 1270, 50, n, 1140, 1439)
    working = ~np.full(n, weekend) | (u[:, 3] < 0.5)
    rd = persona == Persona.RENTER_DAY
    put(rd & working, [(z, tail), (wake_r, wake_r + rng.uniform(20, 45, n)), (back_r, np.full(n, 1440.0))])
    wake_off = _n(rng, 600, 60, n, 480, 720)
    put(rd & ~working, [(z, tail), (wake_off, np.minimum(oa, 1440.0)), (ob, np.full(n, 1440.0))])
    # night shift: home in the morning, asleep by day, out again in the evening
    ret = _n(rng, 455, 20, n, 400, 520)
    put(
        persona == Persona.RENTER_NIGHT,
        [(ret, ret + rng.uniform(45, 90, n)), (_n(rng, 930, 40, n, 840, 1020), _n(rng, 1110, 25, n, 1050, 1170))],
    )
    # visitors: at home a lot, one outing
    va, vb = outing(0.6, 600, 840, 120, 300, 2)
    sleep_v = _n(rng, 1350, 40, n, 1260, 1439)
    put(persona == Persona.VISITOR, [(_n(rng, 450, 40, n, 360, 560), np.minimum(va, sleep_v)), (vb, sleep_v)])
    # shopkeepers: at home all day
    sa, sb = outing(0.3, 900, 1000, 30, 60, 1)
    sleep_h = _n(rng, 1380, 30, n, 1300, 1439)
    put(persona == Persona.HOMEBODY, [(_n(rng, 420, 30, n, 360, 500), np.minimum(sa, sleep_h)), (sb, sleep_h)])
    # tidy: ordered, non-overlapping, inside the day
    s = np.clip(s, 0, DAY_MIN)
    e = np.clip(e, 0, DAY_MIN)
    for k in range(1, K):
        s[:, k] = np.maximum(s[:, k], e[:, k - 1])
    e = np.maximum(e, s)
    return np.floor(s), np.floor(e)


def _clip_to(s: FloatArray, e: FloatArray, lo: FloatArray, hi: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Intervals restricted to [lo, hi) per row."""
    s2 = np.clip(s, lo[:, None], hi[:, None])
    e2 = np.clip(e, lo[:, None], hi[:, None])
    return s2, np.maximum(e2, s2)


def _remove(s: FloatArray, e: FloatArray, a: FloatArray, b: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Intervals minus [a, b) per row (one interval may split: its tail goes to an empty column)."""
    has = (b > a)[:, None]
    if not has.any():
        return s, e
    A, B = a[:, None], b[:, None]
    left = s < A
    right = e > B
    new_s = np.where(has & ~left, np.maximum(s, B), s)
    new_e = np.where(has & left, np.minimum(e, A), e)
    new_e = np.maximum(new_e, new_s)
    split = has & left & right
    for r, k in zip(*np.nonzero(split), strict=True):  # rare: an absence inside one stretch at home
        lens = new_e[r] - new_s[r]
        free = int(np.argmin(lens))
        if lens[free] > 0:
            continue
        new_s[r, free], new_e[r, free] = b[r], e[r, k]
        order = np.argsort(new_s[r], kind="stable")
        new_s[r], new_e[r] = new_s[r][order], new_e[r][order]
    return new_s, new_e


def _sample_in(rng: np.random.Generator, s: FloatArray, e: FloatArray, who: IntArray) -> tuple[FloatArray, BoolArray]:
    """One uniform instant inside each listed person's intervals (and whether they had any)."""
    if len(who) == 0:
        return np.zeros(0), np.zeros(0, dtype=bool)
    ss, ee = s[who], e[who]
    cum = np.cumsum(ee - ss, axis=1)
    tot = cum[:, -1]
    x = rng.random(len(who)) * tot
    k = np.minimum((x[:, None] >= cum).sum(axis=1), K - 1)
    rows = np.arange(len(who))
    prev = np.where(k > 0, cum[rows, np.maximum(k - 1, 0)], 0.0)
    return ss[rows, k] + (x - prev), tot > 0


class _Loads:
    """Rectangular loads (start minute, length, rate) rendered minute by minute with difference arrays."""

    def __init__(self) -> None:
        self.rows: list[IntArray] = []
        self.start: list[IntArray] = []
        self.length: list[IntArray] = []
        self.rate: list[FloatArray] = []

    def add(self, rows: IntArray, start: NDArray[Any], length: NDArray[Any], amount_per_min: NDArray[Any]) -> None:
        if len(rows) == 0:
            return
        begin = np.asarray(start, dtype=np.float64)
        st = np.clip(np.floor(begin), 0, DAY_MIN - 1).astype(np.int64)
        # whole minutes covering [start, start + length): unbiased, and exact at both ends
        ln = np.maximum(1, np.floor(begin + np.asarray(length, dtype=np.float64)) - np.floor(begin)).astype(np.int64)
        self.rows.append(np.asarray(rows, dtype=np.int64))
        self.start.append(st)
        self.length.append(ln)
        self.rate.append(np.broadcast_to(np.asarray(amount_per_min, dtype=np.float64), st.shape).copy())

    def render(self, n_rows: int) -> FloatArray:
        out = np.zeros((n_rows, DAY_MIN + 1))
        if not self.rows:
            return out[:, :DAY_MIN]
        r = np.concatenate(self.rows)
        st = np.concatenate(self.start)
        en = np.minimum(st + np.concatenate(self.length), DAY_MIN)
        v = np.concatenate(self.rate)
        w = DAY_MIN + 1
        flat = np.bincount(
            np.concatenate([r * w + st, r * w + en]), weights=np.concatenate([v, -v]), minlength=n_rows * w
        )
        return np.asarray(np.cumsum(flat.reshape(n_rows, w), axis=1)[:, :DAY_MIN], dtype=np.float64)


def _interval_mask(lo: FloatArray, hi: FloatArray) -> BoolArray:
    m = np.arange(DAY_MIN)[None, :]
    return (m >= lo[:, None]) & (m < hi[:, None])


def _cycle(n: int, period: IntArray | int, duty: FloatArray | float, phase: IntArray) -> BoolArray:
    m = np.arange(DAY_MIN)[None, :]
    per = np.broadcast_to(np.asarray(period), (n,))[:, None]
    return np.asarray(((m + phase[:, None]) % per) < (np.broadcast_to(np.asarray(duty), (n,))[:, None] * per))


def temperature(seed: int, day: int, monthly: tuple[float, ...], noise: float) -> float:
    """The day's mean temperature (°C): the month's normal, interpolated, plus weather."""
    doy = day_of_year(day)
    x = (doy + 0.5) / 365.0 * 12.0 - 0.5
    i = math.floor(x)
    f = x - i
    base = monthly[i % 12] * (1 - f) + monthly[(i + 1) % 12] * f
    return base + float(np.random.default_rng([seed, BEHAVIOUR_DAY, day, 0]).normal(0, noise))


def _sun(day: int) -> tuple[float, float]:
    """Sunrise and sunset in Shanghai (minutes of the local day)."""
    c = math.cos(2 * math.pi * (day_of_year(day) - 172) / 365.0)
    return 355.0 - 55.0 * c, 1080.0 + 60.0 * c


# The day ----------------------------------------------------------------------------------------


def simulate_day(district: District, incidents: list[Incident], day: int, seed: int) -> DaySignals:
    """Water and power of every household and the power on every e-bike circuit, for one local day."""
    d = district
    bp = d.params.behaviour
    n_h = d.n_households
    t0 = day_start(day)
    temp = temperature(seed, day, bp.monthly_temp_c, bp.temp_noise_c)
    water = np.zeros((n_h, SLOTS))
    power = np.zeros((n_h, SLOTS))
    circuits = np.zeros((len(d.ebikes.ids), DAY_MIN))
    by_kind: dict[str, list[Incident]] = {}
    for inc in incidents:
        by_kind.setdefault(inc.kind, []).append(inc)
    for b0 in range(0, n_h, BLOCK):
        b1 = min(n_h, b0 + BLOCK)
        rng = np.random.default_rng([seed, BEHAVIOUR_DAY, day, b0 // BLOCK + 1])
        w, p = _block(d, rng, by_kind, day, t0, temp, b0, b1, circuits, seed)
        water[b0:b1] = w
        power[b0:b1] = p
    # corridor circuits: lights at night and whatever is charged there
    eb = d.ebikes
    corridor = np.flatnonzero(eb.household < 0)
    if len(corridor):
        sunrise, sunset = _sun(day)
        m = np.arange(DAY_MIN)
        dark = (m < sunrise) | (m >= sunset)
        circuits[corridor] = eb.base_w[corridor, None] * np.where(dark, 1.0, 0.3)[None, :]
    for inc in by_kind.get(EBIKE_INDOOR, []):
        mins, watts = session_minutes(inc.start, inc.end or inc.start, t0, charge_of(inc))
        circuits[inc.index, mins] += watts
        h = int(eb.household[inc.index])
        if h >= 0:
            np.add.at(power[h], mins // 15, watts / 60.0)
    if len(circuits):
        rng = np.random.default_rng([seed, BEHAVIOUR_DAY, day, 0, 1])
        circuits *= 1.0 + rng.normal(0, 0.004, circuits.shape)
        circuits += rng.normal(0, 0.15, circuits.shape)
        np.maximum(circuits, 0.0, out=circuits)
    return DaySignals(day, water, power, circuits, temp)


def _block(
    d: District,
    rng: np.random.Generator,
    by_kind: dict[str, list[Incident]],
    day: int,
    t0: int,
    temp: float,
    b0: int,
    b1: int,
    circuits: FloatArray,
    seed: int,
) -> tuple[FloatArray, FloatArray]:
    bp = d.params.behaviour
    hp = d.households
    nb = b1 - b0
    weekend = weekday(day) >= 5
    doy = day_of_year(day)
    hs = slice(b0, b1)

    def minute_of(ms: int) -> float:
        return float(np.clip((ms - t0) / MINUTE_MS, 0, DAY_MIN))

    # Who is here today: the usual residents (not in a group-rented flat), tenants, visitors.
    rows: list[IntArray] = []
    personas: list[IntArray] = []
    lo_l: list[FloatArray] = []
    hi_l: list[FloatArray] = []
    ph = d.persons.household
    sel = (ph >= b0) & (ph < b1)
    base_rows = ph[sel] - b0
    base_persona = d.persons.persona[sel]
    gone_from = np.full(nb, float(DAY_MIN))  # the usual residents leave a flat that becomes a group rental
    rental_like = np.zeros(nb, dtype=bool)
    for inc in by_kind.get(GROUP_RENTAL, []):
        if not b0 <= inc.index < b1:
            continue
        row = inc.index - b0
        rental_like[row] = True
        gone_from[row] = 0.0 if inc.start <= t0 else minute_of(inc.start)
        n_all = int(inc.details["actual"])
        n_night = int(inc.details["night_shift"])
        kinds = np.array([Persona.RENTER_NIGHT] * n_night + [Persona.RENTER_DAY] * (n_all - n_night))
        rows.append(np.full(n_all, row))
        personas.append(kinds)
        lo_l.append(np.full(n_all, minute_of(inc.start)))
        hi_l.append(np.full(n_all, float(DAY_MIN)))
    rows.insert(0, base_rows)
    personas.insert(
        0,
        np.where(
            np.isin(base_rows, np.flatnonzero(_shop_mask(by_kind, b0, b1))),
            np.where(base_persona == Persona.CHILD, base_persona, Persona.HOMEBODY),
            base_persona,
        ),
    )
    lo_l.insert(0, np.zeros(len(base_rows)))
    hi_l.insert(0, gone_from[base_rows])
    for inc in by_kind.get(VISITORS, []):
        if not b0 <= inc.index < b1:
            continue
        k = int(inc.details["visitors"])
        rows.append(np.full(k, inc.index - b0))
        personas.append(np.full(k, Persona.VISITOR))
        lo_l.append(np.full(k, minute_of(inc.start)))
        hi_l.append(np.full(k, minute_of(inc.end or t0 + DAY_MS)))
    prow = np.concatenate(rows).astype(np.int64)
    persona = np.concatenate(personas).astype(np.int64)
    plo = np.concatenate(lo_l)
    phi = np.concatenate(hi_l)

    # Absences of the whole flat: a lone elder away or inactive (one per flat and day at most).
    sus_lo = np.zeros(nb)
    sus_hi = np.zeros(nb)
    for kind in (ELDER_AWAY, LONE_ELDER_INACTIVE):
        for inc in by_kind.get(kind, []):
            if b0 <= inc.index < b1:
                sus_lo[inc.index - b0] = minute_of(inc.start)
                sus_hi[inc.index - b0] = minute_of(inc.end if inc.end is not None else t0 + DAY_MS)

    s, e = routines(rng, persona, weekend)
    s, e = _clip_to(s, e, plo, phi)
    s, e = _remove(s, e, sus_lo[prow], sus_hi[prow])
    home_h = (e - s).sum(axis=1) / 60.0
    n_p = len(prow)

    # Presence: residents awake at home, minute by minute.
    pres = _Loads()
    for k in range(K):
        pres.add(prow, s[:, k], e[:, k] - s[:, k], np.ones(n_p))
    awake = np.rint(pres.render(nb))
    anyone = awake > 0

    water = _Loads()
    elec = _Loads()
    circ = _Loads()  # loads on a flat's e-bike sensor circuit (rows = block rows)
    sensor = hp.sensor[hs]
    eb = d.ebikes
    has_sensor = sensor >= 0

    def on_circuit(flags: BoolArray) -> BoolArray:
        """Whether a flat's appliance is on its e-bike sensor's circuit."""
        if not len(flags):
            return np.zeros(nb, dtype=bool)
        return np.where(has_sensor, flags[np.maximum(sensor, 0)], False)

    kettle_c = on_circuit(eb.kettle)
    rice_c = on_circuit(eb.rice_cooker)
    heater_c = on_circuit(eb.heater)
    dehum_c = on_circuit(eb.dehumidifier)
    fridge_c = on_circuit(eb.fridge)
    habit_w = hp.water_habit[hs] * bp.water_scale
    habit_p = hp.power_habit[hs] * bp.power_scale

    def events(who: IntArray) -> tuple[IntArray, FloatArray]:
        t, ok = _sample_in(rng, s, e, who)
        return prow[who[ok]], t[ok]

    # toilets and taps
    lam = bp.toilet_per_home_hour * home_h + 0.3 * (home_h > 0)
    who = np.repeat(np.arange(n_p), rng.poisson(lam))
    r, t = events(who)
    water.add(r, t, np.ones(len(r)), hp.cistern_l[b0 + r] * habit_w[r])
    who = np.repeat(np.arange(n_p), rng.poisson(bp.tap_per_home_hour * home_h))
    r, t = events(who)
    water.add(r, t, np.ones(len(r)), rng.uniform(*bp.tap_litres, len(r)) * habit_w[r])
    # showers: most in the evening, some in the morning; electric water heaters reheat after
    warm = float(np.clip((temp - 8.0) / 18.0, 0.0, 1.0))
    p_shower = bp.shower_prob_winter + (bp.shower_prob_summer - bp.shower_prob_winter) * warm
    showers = np.flatnonzero((rng.random(n_p) < p_shower) & (home_h >= 0.75))
    last = np.argmax(np.where(e[showers] > s[showers], np.arange(K)[None, :], -1), axis=1)
    first = np.argmax(e[showers] > s[showers], axis=1)
    morning = rng.random(len(showers)) < 0.3
    col = np.where(morning, first, last)
    ss, ee = s[showers, col], e[showers, col]
    when = np.where(morning, ss + rng.uniform(5, 30, len(showers)), ee - rng.uniform(15, 120, len(showers)))
    when = np.clip(when, ss, np.maximum(ss, ee - 5))
    litres = rng.lognormal(math.log(bp.shower_litres_median), bp.shower_litres_sigma, len(showers))
    litres *= np.where(persona[showers] == Persona.ELDER, 0.8, 1.0)
    r = prow[showers]
    litres *= habit_w[r]
    lpm = rng.uniform(6.0, 9.0, len(showers))
    water.add(r, when, litres / lpm, lpm)
    heat = hp.electric_water_heater[b0 + r]
    kw = rng.uniform(*bp.water_heater_kw, len(r))
    heat_min = litres * KWH_PER_LITRE_SHOWER / kw * 60.0
    elec.add(r[heat], (when + litres / lpm)[heat], heat_min[heat], kw[heat] * 1000.0)

    # household chores and meals
    present = np.flatnonzero(np.bincount(prow, minlength=nb) > 0)
    n_here = np.bincount(prow, weights=(home_h > 0).astype(float), minlength=nb)
    meal_prob = np.where(rental_like, 0.25, 0.92)
    for centre, rice in ((420.0, False), (690.0, True), (1100.0, True)):
        at = np.clip(np.rint(centre + rng.normal(0, 20, nb)), 0, DAY_MIN - 1).astype(np.int64)
        cooks = np.flatnonzero(anyone[np.arange(nb), at] & (rng.random(nb) < meal_prob))
        if not len(cooks):
            continue
        people = awake[cooks, at[cooks]]
        litres = (bp.meal_litres[0] + bp.meal_litres[1] * people) * habit_w[cooks]
        water.add(cooks, at[cooks] - 20, np.full(len(cooks), 10.0), 0.4 * litres / 10)
        water.add(cooks, at[cooks] + 25, np.full(len(cooks), 10.0), 0.6 * litres / 10)
        if rice:
            cook = cooks[rng.random(len(cooks)) < 0.6]
            dur = rng.uniform(25, 40, len(cook))
            rw = rng.uniform(*bp.rice_cooker_w, len(cook))
            warm_min = rng.uniform(30, 120, len(cook))
            elec.add(cook, at[cook] - dur, dur, rw * habit_p[cook])
            elec.add(cook, at[cook], warm_min, np.full(len(cook), bp.rice_cooker_keep_warm_w))
            on_c = rice_c[cook]
            circ.add(cook[on_c], (at[cook] - dur)[on_c], dur[on_c], rw[on_c])
            circ.add(cook[on_c], at[cook][on_c], warm_min[on_c], np.full(int(on_c.sum()), bp.rice_cooker_keep_warm_w))
        micro = cooks[rng.random(len(cooks)) < bp.microwave_prob]
        elec.add(micro, at[micro] - 5, rng.uniform(2, 4, len(micro)), np.full(len(micro), 900.0))
    # kettles at random moments someone is at home
    k_n = rng.poisson(bp.kettle_per_day[0] * (n_here > 0) + bp.kettle_per_day[1] * n_here)
    hh_of = np.repeat(np.arange(nb), k_n)
    r, t = _household_moments(rng, prow, s, e, hh_of)
    dur = rng.uniform(2.5, 5.0, len(r))
    kw = rng.uniform(*bp.kettle_w, len(r))
    elec.add(r, t, dur, kw)
    on_c = kettle_c[r]
    circ.add(r[on_c], t[on_c], dur[on_c], kw[on_c])
    # laundry and mopping
    loads = rng.poisson(bp.laundry_loads_per_person * n_here)
    hh_of = np.repeat(np.arange(nb), loads)
    r, t = _household_moments(rng, prow, s, e, hh_of)
    litres = rng.uniform(*bp.laundry_litres, len(r)) * habit_w[r]
    water.add(r, t, np.full(len(r), 45.0), litres / 45.0)
    elec.add(r, t, rng.uniform(45, 70, len(r)), rng.uniform(*bp.laundry_w, len(r)))
    mop = present[rng.random(len(present)) < bp.mop_prob]
    r, t = _household_moments(rng, prow, s, e, mop)
    water.add(r, t, np.full(len(r), 5.0), rng.uniform(8, 15, len(r)) / 5.0)

    # extra flows: taps left running, cleaning days (a tap keeps running whatever befalls the resident)
    flows = _Loads()
    for kind in (CONTINUOUS_FLOW, CLEANING):
        for inc in by_kind.get(kind, []):
            if b0 <= inc.index < b1:
                a = minute_of(inc.start)
                z = minute_of(inc.end or t0 + DAY_MS)
                if z > a:
                    flows.add(
                        np.array([inc.index - b0]),
                        np.array([a]),
                        np.array([z - a]),
                        np.array([float(inc.details["flow_lpm"])]),
                    )

    # shops run from flats
    for inc in by_kind.get(SHOP, []):
        if b0 <= inc.index < b1:
            _shop_day(rng, inc.index - b0, str(inc.details["business"]), water, elec)

    # minute-level power: standby, fridge, lights and electronics, climate
    sunrise, sunset = _sun(day)
    m = np.arange(DAY_MIN)
    light = np.where((m < sunrise + 30) | (m >= sunset - 30), 1.0, bp.daylight_factor)
    summer = 1.0 + 0.3 * float(np.clip((temp - 20.0) / 10.0, 0.0, 1.0))
    fridge_on = _cycle(nb, hp.fridge_period[hs], np.minimum(0.85, hp.fridge_duty[hs] * summer), hp.fridge_phase[hs])
    fridge = fridge_on * (hp.fridge_w[hs] * ~hp.fridge_off[hs])[:, None]
    watts = np.full((nb, DAY_MIN), 0.0) + hp.standby_w[hs][:, None] + fridge
    people_w = np.where(anyone, bp.light_base_w + bp.light_per_person_w * np.minimum(awake, 8), 0.0)
    # group-rental tenants each light and power a partitioned room (lamp, laptop, fan, chargers)
    people_w += np.where(rental_like[:, None], bp.tenant_room_w * awake, 0.0)
    watts += people_w * light[None, :] * habit_p[:, None]
    # air conditioning when it is hot, heating when it is cold
    units = hp.ac_units[hs]
    cool = float(np.clip((temp - bp.cooling_from_c) / 5.0, 0.0, 1.0))
    hot_day = temp > 29.0
    if cool > 0:
        elders_only = np.bincount(prow, weights=(persona != Persona.ELDER).astype(float), minlength=nb) == 0
        use = (units > 0) & (rng.random(nb) < 0.8 * cool * np.where(elders_only, 0.6, 1.0))
        hours = (m >= (780 if hot_day else 1140))[None, :]
        on_units = np.minimum(units[:, None], np.ceil(awake / 3.0))
        watts += np.where(use[:, None] & hours, on_units * hp.ac_w[hs][:, None], 0.0)
        night = use & (rng.random(nb) < 0.8 * float(np.clip((temp - 27.5) / 3.0, 0.0, 1.0)))
        starts = np.where(e > s, s, DAY_MIN).min(axis=1)
        ends = np.where(e > s, e, 0).max(axis=1)
        first_in = np.full(nb, float(DAY_MIN))
        last_out = np.zeros(nb)
        np.minimum.at(first_in, prow, starts)
        np.maximum.at(last_out, prow, ends)
        asleep_home = _interval_mask(np.zeros(nb), np.where(first_in < DAY_MIN, first_in, 0)) | _interval_mask(
            np.where(last_out > 1200, last_out, DAY_MIN), np.full(nb, float(DAY_MIN))
        )
        sleepers = np.minimum(units, np.maximum(1, np.ceil(n_here / 3.0)))
        watts += np.where(night[:, None] & asleep_home, 0.5 * (sleepers * hp.ac_w[hs])[:, None], 0.0)
    heat_need = float(np.clip((bp.heating_below_c - temp) / 7.0, 0.0, 1.0))
    if heat_need > 0:
        elders = np.bincount(prow, weights=(persona == Persona.ELDER).astype(float), minlength=nb) > 0
        evening = rng.random(nb) < 0.6 * heat_need
        morning = rng.random(nb) < 0.25 * heat_need
        afternoon = elders & (rng.random(nb) < 0.4 * heat_need)
        ev_a = rng.uniform(1080, 1200, nb)
        when = (
            (evening[:, None] & _interval_mask(ev_a, ev_a + rng.uniform(90, 180, nb)))
            | (morning[:, None] & ((m >= 390) & (m < 480))[None, :])
            | (afternoon[:, None] & ((m >= 780) & (m < 1020))[None, :])
        )
        on = when & anyone
        heater = hp.heater[hs]
        cyc = _cycle(nb, 22, 0.6, rng.integers(0, 22, nb))
        heater_w = np.where(on & heater[:, None] & cyc, hp.heater_w[hs][:, None], 0.0)
        pump = on & ~heater[:, None] & (units[:, None] > 0)
        watts += heater_w + np.where(
            pump, 1.2 * np.minimum(units[:, None], np.ceil(awake / 3.0)) * hp.ac_w[hs][:, None], 0.0
        )
        rows_c = np.flatnonzero(heater_c)
        circuits[sensor[rows_c]] += heater_w[rows_c]
    if 140 <= doy <= 195:  # 梅雨, the plum rains: dehumidifiers run for hours
        runs = hp.dehumidifier[hs] & (rng.random(nb) < 0.5) & (np.bincount(prow, minlength=nb) > 0)
        d_start = rng.uniform(9 * 60, 20 * 60, nb)
        d_end = d_start + rng.uniform(120, 360, nb)
        mask = runs[:, None] & _interval_mask(d_start, d_end) & _cycle(nb, 32, 0.78, rng.integers(0, 32, nb))
        dw = np.where(mask, hp.dehumidifier_w[hs][:, None], 0.0)
        watts += dw
        rows_c = np.flatnonzero(dehum_c)
        circuits[sensor[rows_c]] += dw[rows_c]

    # e-bikes charged in flats without a sensor (and the delivery riders of group rentals): evening to
    # morning, so yesterday's charge may still be running
    bikes = hp.ebike_indoor[hs].astype(np.int64)
    for inc in by_kind.get(GROUP_RENTAL, []):
        if b0 <= inc.index < b1 and inc.start < t0 + DAY_MS:
            bikes[inc.index - b0] = int(inc.details.get("ebikes", 0))
    ch = hp.charger
    for row_o in np.flatnonzero(bikes).tolist():
        hh = b0 + row_o
        for dd in (day - 1, day):
            r2 = np.random.default_rng([seed, BEHAVIOUR_DAY, dd, 0, 2, hh])
            for k in range(int(bikes[row_o])):
                if r2.random() >= bp.ebike_session_prob:
                    continue
                st = day_start(dd) + int(r2.uniform(19.5 * 60, 23.5 * 60) * MINUTE_MS)
                en = day_start(dd + 1) + int(r2.uniform(6.5 * 60, 8 * 60) * MINUTE_MS)
                c = (hh * 7 + k * 131) % len(ch.chemistry) if k else hh  # other riders' chargers
                charge = Charge(
                    int(ch.chemistry[c]),
                    float(ch.pack_v[c]),
                    float(ch.current_a[c]),
                    float(ch.capacity_ah[c]),
                    float(ch.efficiency[c]),
                    float(r2.uniform(0.1, 0.6)),
                )
                mins, w = session_minutes(st, en, t0, charge)
                watts[row_o, mins] += w

    watts += elec.render(nb) * 1.0
    # what shares a flat's e-bike sensor circuit
    rows_c = np.flatnonzero(has_sensor)
    if len(rows_c):
        cw = circ.render(nb)[rows_c] + np.where(fridge_c[rows_c, None], fridge[rows_c], 0.0)
        circuits[sensor[rows_c]] += cw + eb.base_w[sensor[rows_c]][:, None]
    flow = water.render(nb)

    # an absent or inactive flat: standby and fridge only, no water
    absent = _interval_mask(sus_lo, sus_hi)
    if absent.any():
        flow[absent] = 0.0
        idle = hp.standby_w[hs][:, None] + fridge
        watts = np.where(absent, idle, watts)
        rows_c = np.flatnonzero(has_sensor & absent.any(axis=1))
        for rc in rows_c.tolist():
            keep = eb.base_w[sensor[rc]] + (fridge[rc] if fridge_c[rc] else 0.0)
            circuits[sensor[rc]] = np.where(absent[rc], keep, circuits[sensor[rc]])
    flow += flows.render(nb)
    water_slots = flow.reshape(nb, SLOTS, 15).sum(axis=2)
    power_slots = watts.reshape(nb, SLOTS, 15).sum(axis=2) / 60.0
    return water_slots, power_slots


def _shop_mask(by_kind: dict[str, list[Incident]], b0: int, b1: int) -> BoolArray:
    mask = np.zeros(b1 - b0, dtype=bool)
    for inc in by_kind.get(SHOP, []):
        if b0 <= inc.index < b1:
            mask[inc.index - b0] = True
    return mask


def _household_moments(
    rng: np.random.Generator, prow: IntArray, s: FloatArray, e: FloatArray, hh: IntArray
) -> tuple[IntArray, FloatArray]:
    """For each listed flat (block row), an instant when one of its residents is at home."""
    if len(hh) == 0 or len(prow) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    order = np.argsort(prow, kind="stable")
    counts = np.bincount(prow, minlength=int(hh.max()) + 1)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    c = counts[hh]
    ok = c > 0
    hh = hh[ok]
    pick = first[hh] + (rng.random(len(hh)) * c[ok]).astype(np.int64)
    who = order[pick]
    t, has = _sample_in(rng, s, e, who)
    return hh[has], t[has]


def _shop_day(rng: np.random.Generator, r: int, business: str, water: _Loads, elec: _Loads) -> None:
    row = np.array([r])
    if business == "hair_salon":
        n = int(rng.integers(15, 40))
        t = rng.uniform(9 * 60, 20 * 60, n)
        water.add(np.full(n, r), t, np.full(n, 2.0), rng.uniform(3.0, 5.0, n))
        elec.add(np.full(n, r), t + 3, rng.uniform(5, 10, n), rng.uniform(1200, 1800, n))
        elec.add(row, np.array([540.0]), np.array([720.0]), np.array([rng.uniform(250, 450)]))
    elif business == "eatery":
        for a, z in ((600.0, 840.0), (990.0, 1260.0)):
            water.add(row, np.array([a]), np.array([z - a]), np.array([rng.uniform(0.8, 1.6)]))
            elec.add(row, np.array([a]), np.array([z - a]), np.array([rng.uniform(1500, 3500)]))
        elec.add(row, np.array([0.0]), np.array([1440.0]), np.array([rng.uniform(250, 450)]))  # freezers
    elif business == "online_shop":
        elec.add(row, np.array([540.0]), np.array([840.0]), np.array([rng.uniform(400, 900)]))
    else:  # tailor: sewing machines and a steam iron
        elec.add(row, np.array([540.0]), np.array([600.0]), np.array([rng.uniform(150, 300)]))
        n = int(rng.integers(6, 15))
        elec.add(np.full(n, r), rng.uniform(540, 1140, n), rng.uniform(5, 20, n), np.full(n, 1100.0))


# Elevators ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Trips:
    """One elevator's trips in a day: departure instants, from and to floors, and load."""

    depart: IntArray
    arrive: IntArray
    origin: IntArray
    dest: IntArray
    load_pct: IntArray
    speed_mps: float


def elevator_trips(district: District, incidents: list[Incident], day: int, seed: int, e: int) -> Trips:
    """An elevator's traffic for a day: morning down-peak, evening up-peak, quiet nights."""
    el = district.elevators
    bp = district.params.behaviour
    rng = np.random.default_rng([seed, BEHAVIOUR_DAY, day, 0, 3, e])
    t0 = day_start(day)
    weekend = weekday(day) >= 5
    n = int(rng.poisson(bp.trips_per_household * int(el.households[e]) * (0.9 if weekend else 1.0)))
    centres = np.array([480.0, 780.0, 1110.0, 1290.0, 180.0])
    spread = np.array([50.0, 150.0, 70.0, 60.0, 120.0])
    share = np.array([0.25, 0.25, 0.3, 0.15, 0.05])
    comp = rng.choice(5, size=n, p=share)
    minute = np.clip(rng.normal(centres[comp], spread[comp]), 0, DAY_MIN - 1)
    t = np.sort(t0 + (minute * MINUTE_MS).astype(np.int64))
    floors = int(el.floors[e])
    speed = 1.0 if floors <= 11 else 1.75
    down = rng.random(n) < np.where(comp == 0, 0.85, np.where(comp >= 2, 0.2, 0.5))
    upper = rng.integers(2, floors + 1, n)
    origin = np.where(down, upper, 1)
    dest = np.where(down, 1, upper)
    travel = ((np.abs(dest - origin) * 3.0 / speed + 4.0) * 1000).astype(np.int64)
    # one car: a trip waits for the previous one and its doors
    for i in range(1, n):
        earliest = t[i - 1] + travel[i - 1] + 8000
        t[i] = max(t[i], earliest)
    keep = t < t0 + DAY_MS - 60_000
    for inc in incidents:
        if inc.kind in (TRAPPED, ELEVATOR_FAULT) and inc.index == e:
            end = inc.end if inc.end is not None else t0 + DAY_MS
            keep &= ~((t + travel > inc.start - 1000) & (t < end + 5000))
    load = np.clip(rng.normal(18, 10, n), 5, 95).astype(np.int64)
    return Trips(t[keep], (t + travel)[keep], origin[keep], dest[keep], load[keep], speed)
