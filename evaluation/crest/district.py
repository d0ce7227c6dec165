"""The district: the registry (CONTRACT.md section 2) and each household's plan of people, appliances and events.

A household is made of CREST *units*: one Markov chain of active occupancy (1-5 people) each.
An ordinary flat is one unit of its size; a group rental sums several (5-10 people); a large
family two; visitors and a group rental's late arrivals are units present only part of the run.
Elder schedules (naps, outings, trips, incidents) are drawn here too: they do not depend on the
CREST chains, only on the calendar.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evaluation.crest import crest
from evaluation.crest.params import Params

MIN_PER_DAY = 1440
PREFIX = "CR"
STREET_NAME = "晨风路街道"
ROAD = "晨风路"

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹彭曾萧田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢"
GIVEN = (
    *("秀英", "桂英", "秀兰", "玉兰", "建国", "国强", "建华", "丽", "敏", "静", "伟", "芳", "军", "洋", "勇", "艳"),
    *("杰", "娟", "涛", "明", "超", "霞", "平", "华", "玲", "红", "斌", "琳", "志强", "海燕", "文", "婷"),
    *("磊", "浩", "晨", "雪", "慧", "宇", "欣", "佳", "凤英", "德明", "美华", "金宝", "根娣", "阿毛"),
)
RELATIONS = ("daughter", "son", "niece", "neighbour", "son-in-law")


@dataclass
class Unit:
    """One CREST chain inside a household."""

    household: int
    size: int
    role: str  # base | extra | guest
    weekend_chain: bool
    offset: int  # slots by which this unit's day runs late
    present_from: int  # minute of the run
    present_to: int
    owned: np.ndarray
    annual_kwh: float
    bulbs: np.ndarray
    daylight_lights: bool
    elder: bool = False


@dataclass
class Trip:
    """An elder away from home (a confounder, declared or not)."""

    start: int
    end: int
    declared: bool
    declared_start: int
    declared_end: int
    reason: str = "trip"


@dataclass
class Incident:
    """A lone elder who stops showing any sign of life (a fall) and is found later."""

    start: int
    end: int  # found (may lie past the run's end: then the truth's end is null)
    lamp_w: float
    night_flush: int  # minutes before the start of a night-time toilet visit (0: none)


@dataclass
class ElderPlan:
    """A lone elder's habits and calendar, in minutes of the run."""

    flat_meter: bool
    quiet_afternoons: bool
    nocturia: float
    nap_habit_min: float
    naps: list[tuple[int, int]] = field(default_factory=list)
    long_naps: list[tuple[int, int]] = field(default_factory=list)
    outings: list[tuple[int, int]] = field(default_factory=list)
    quiet: list[tuple[int, int]] = field(default_factory=list)
    trips: list[Trip] = field(default_factory=list)
    incident: Incident | None = None


@dataclass
class ShopPlan:
    """A shop run from the flat: open hours, a load and water draws while open."""

    kind: str  # salon | snack
    open_min: int
    close_min: int
    closed_weekday: int | None
    base_w: float
    burst_w: float
    bursts_per_hour: float
    burst_min: float
    draws_per_hour: float
    draw_litres: tuple[float, float]


@dataclass
class Household:
    """A flat: its registry entry, its meters and what its people do."""

    index: int
    id: str
    building_id: str
    unit_label: str
    registered: int
    actual: int
    tags: list[str]
    contacts: list[dict[str, str]]
    kind: str  # ordinary | lone_elder | group_rental | large_family | shop | shift_worker
    units: list[int]
    water_id: str
    power_id: str
    ebike_id: str | None
    water_step_dl: int  # register resolution in decilitres (1 = 0.1 L, 10 = 1 L)
    power_step_wh: int  # register resolution in Wh (1 = 0.001 kWh, 10 = 0.01 kWh)
    power_first: bool
    water_init_dl: int
    power_init_wh: int
    water_factor: float
    cistern_l: float
    shower_lpm: float
    has_dishwasher: bool = False
    elder: ElderPlan | None = None
    shop: ShopPlan | None = None
    rental_from: int | None = None  # minute the flat becomes over-occupied (group rentals)
    visit: tuple[int, int, int] | None = None  # (start, end, guests)
    unregistered: bool = False


@dataclass
class District:
    """Everything the generator decided before simulating behaviour."""

    registry: dict[str, Any]
    households: list[Household]
    units: list[Unit]
    days: int
    first_day: dt.date


def _name(rng: np.random.Generator) -> str:
    return str(SURNAMES[int(rng.integers(len(SURNAMES)))]) + str(GIVEN[int(rng.integers(len(GIVEN)))])


def _phone(rng: np.random.Generator, prefix: str) -> str:
    return "+86" + prefix + "".join(str(int(d)) for d in rng.integers(0, 10, 11 - len(prefix)))


def _u(rng: np.random.Generator, r: tuple[float, float]) -> float:
    return float(rng.uniform(r[0], r[1]))


def _i(rng: np.random.Generator, r: tuple[int, int]) -> int:
    """Integer uniform on the closed range."""
    return int(rng.integers(r[0], r[1] + 1))


# Ownership shares for a Shanghai flat (assumed; CREST's UK share in Appliances.csv is the
# starting point). Heating and water heating are not owned: gas water heaters, and winter heaters
# appear only as the e-bike circuit's heater.
_BASE_OWNERSHIP = {
    crest.CHEST_FREEZER: 0.05,
    crest.UPRIGHT_FREEZER: 0.03,
    crest.ANSWER_MACHINE: 0.05,
    crest.CD_PLAYER: 0.15,
    crest.CLOCK: 0.8,
    crest.CORDLESS_PHONE: 0.4,
    crest.HIFI: 0.15,
    crest.IRON: 0.5,
    crest.VACUUM: 0.5,
    crest.PC: 0.6,
    crest.PRINTER: 0.25,
    crest.TV1: 0.92,
    crest.TV2: 0.3,
    crest.TV3: 0.03,
    crest.VCR_DVD: 0.1,
    crest.TV_RECEIVER: 0.75,
    crest.HOB: 0.45,
    crest.OVEN: 0.2,
    crest.MICROWAVE: 0.65,
    crest.KETTLE: 0.85,
    crest.SMALL_COOKING: 1.0,
    crest.DISHWASHER: 0.1,
    crest.TUMBLE_DRYER: 0.05,
}
_ELDER_OWNERSHIP = {
    **_BASE_OWNERSHIP,
    crest.CLOCK: 0.9,
    crest.CORDLESS_PHONE: 0.7,
    crest.CD_PLAYER: 0.2,
    crest.HIFI: 0.1,
    crest.IRON: 0.2,
    crest.VACUUM: 0.3,
    crest.PC: 0.15,
    crest.PRINTER: 0.02,
    crest.TV1: 0.95,
    crest.TV2: 0.2,
    crest.TV_RECEIVER: 0.8,
    crest.HOB: 0.4,
    crest.OVEN: 0.1,
    crest.MICROWAVE: 0.5,
    crest.KETTLE: 0.8,
    crest.DISHWASHER: 0.02,
    crest.TUMBLE_DRYER: 0.0,
}
_FLAT_METER_OWNERSHIP = {
    **_ELDER_OWNERSHIP,
    crest.TV1: 0.4,
    crest.TV2: 0.0,
    crest.PC: 0.0,
    crest.HIFI: 0.0,
    crest.CD_PLAYER: 0.1,
    crest.MICROWAVE: 0.3,
    crest.HOB: 0.3,
    crest.KETTLE: 0.5,
    crest.VACUUM: 0.1,
}
_ROOM_OWNERSHIP = {  # a group rental's extra room (their own small appliances)
    crest.REFRIGERATOR: 0.3,
    crest.TV1: 0.4,
    crest.PC: 0.7,
    crest.KETTLE: 0.6,
    crest.SMALL_COOKING: 0.7,
    crest.MICROWAVE: 0.2,
    crest.HOB: 0.2,
    crest.IRON: 0.2,
    crest.HIFI: 0.1,
    crest.TV_RECEIVER: 0.1,
}
_GUEST_OWNERSHIP = {  # visitors use the host's kitchen and second TV (no standby, no cold appliances)
    crest.TV2: 0.5,
    crest.HOB: 0.5,
    crest.MICROWAVE: 0.5,
    crest.SMALL_COOKING: 1.0,
    crest.KETTLE: 1.0,
    crest.IRON: 0.2,
    crest.WASHING_MACHINE: 0.3,
}


def _ownership(
    rng: np.random.Generator, table: dict[int, float], with_cold: bool, with_washer: bool, fridge_freezer_p: float
) -> np.ndarray:
    owned = np.zeros(crest.N_APPLIANCES, dtype=bool)
    for a in sorted(table):
        owned[a] = rng.random() < table[a]
    if with_cold:  # every flat has one fridge: a fridge-freezer or a refrigerator (assumed)
        owned[crest.FRIDGE_FREEZER if rng.random() < fridge_freezer_p else crest.REFRIGERATOR] = True
    if with_washer:
        r = rng.random()
        if r < 0.85:
            owned[crest.WASHING_MACHINE] = True
        elif r < 0.95:
            owned[crest.WASHER_DRYER] = True
    return owned


def _bulbs(rng: np.random.Generator, params: Params, count: tuple[int, int]) -> np.ndarray:
    data = crest.load()
    chosen = data.bulb_sets[int(rng.integers(len(data.bulb_sets)))]
    k = min(len(chosen), _i(rng, count))
    pick = rng.choice(len(chosen), size=k, replace=False)
    factor = _u(rng, params.led_factor)
    watts = np.maximum(np.round(np.array(chosen)[np.sort(pick)] * factor * 2.0) / 2.0, 3.0)
    return watts


class _Builder:
    def __init__(self, rng: np.random.Generator, params: Params, days: int, first_day: dt.date) -> None:
        self.rng = rng
        self.p = params
        self.days = days
        self.first_day = first_day
        self.n_min = days * MIN_PER_DAY
        self.units: list[Unit] = []

    def unit(
        self,
        hh: int,
        size: int,
        role: str,
        *,
        table: dict[int, float],
        level: float,
        weekend_chain: bool = False,
        offset: int = 0,
        present: tuple[int, int] | None = None,
        bulbs: tuple[int, int] | None = None,
        daylight_lights: bool = True,
        elder: bool = False,
    ) -> int:
        rng, p = self.rng, self.p
        base = role == "base"
        owned = _ownership(rng, table, with_cold=base, with_washer=base, fridge_freezer_p=0.4 if elder else 0.7)
        target = crest.annual_target_kwh(size, p.kwh_per_person_day, p.crest_mfh_kwh, p.size_weights)
        annual = target * level * p.crest_appliance_share / p.crest_calibration_gain
        lamp_count = bulbs if bulbs is not None else p.bulbs_per_flat
        start, end = present if present is not None else (0, self.n_min)
        self.units.append(
            Unit(
                household=hh,
                size=size,
                role=role,
                weekend_chain=weekend_chain,
                offset=offset,
                present_from=start,
                present_to=end,
                owned=owned,
                annual_kwh=annual,
                bulbs=_bulbs(rng, p, lamp_count),
                daylight_lights=daylight_lights,
                elder=elder,
            )
        )
        return len(self.units) - 1


def _kinds(rng: np.random.Generator, n: int, p: Params) -> list[str]:
    counts = {
        "lone_elder": round(n * p.lone_elder_share),
        "group_rental": round(n * p.group_rental_share),
        "large_family": round(n * p.large_family_share),
        "shop": round(n * p.shop_share),
        "shift_worker": round(n * p.shift_worker_share),
    }
    kinds = [k for k, c in counts.items() for _ in range(c)]
    kinds += ["ordinary"] * (n - len(kinds))
    order = rng.permutation(n)
    return [kinds[i] for i in order]


def _split(rng: np.random.Generator, people: int, lo: int, hi: int) -> list[int]:
    """People split into CREST units of lo..hi (each at most 5)."""
    sizes: list[int] = []
    while people > 0:
        s = min(people, _i(rng, (lo, hi)))
        sizes.append(s)
        people -= s
    return sizes


def _windows_free(windows: list[tuple[int, int]], start: int, end: int) -> bool:
    return all(end <= a or start >= b for a, b in windows)


def _elder_calendar(
    rng: np.random.Generator, inc_rng: np.random.Generator, p: Params, days: int, plan: ElderPlan, incident_wanted: bool
) -> None:
    """Trips, at most one incident (drawn from `inc_rng`, so the rest does not depend on the rate) and daily habits."""
    n_min = days * MIN_PER_DAY
    # trips away: a Poisson process by day, 1-5 nights each
    blocked: list[tuple[int, int]] = []
    d = 0
    while d < days:
        if rng.random() < p.trip_rate_per_day:
            nights = _i(rng, p.trip_days)
            start = d * MIN_PER_DAY + _i(rng, p.trip_leave_min) // 10 * 10
            end = (d + nights) * MIN_PER_DAY + _i(rng, p.trip_return_min) // 10 * 10
            declared = bool(rng.random() < p.trip_declared_p)
            ds = start - int(_u(rng, p.declared_pad_before_h) * 60) // 60 * 60
            ds -= ds % 60
            de = end + int(_u(rng, p.declared_pad_after_h) * 60)
            de += (60 - de % 60) % 60
            plan.trips.append(Trip(start, end, declared, ds, de))
            blocked.append((start - MIN_PER_DAY, end + MIN_PER_DAY))
            d += nights + 2
        else:
            d += 1
    warm = min(p.incident_warmup_days, max(days - 2, 1))
    if incident_wanted and n_min - 60 > warm * MIN_PER_DAY:
        for _ in range(200):
            start = int(inc_rng.integers(warm * MIN_PER_DAY, n_min - 60))
            found = start + int(_u(inc_rng, p.incident_found_h) * 60)
            if _windows_free(blocked, start, found):
                lamp = _u(inc_rng, p.incident_lamp_w) if inc_rng.random() < p.incident_lamp_p else 0.0
                local = start % MIN_PER_DAY
                night = local < 360 or local >= 1380
                flush = int(inc_rng.integers(1, 6)) if night and inc_rng.random() < p.incident_night_flush_p else 0
                plan.incident = Incident(start, found, round(lamp, 1), flush)
                if inc_rng.random() < p.hospital_p and found < n_min:
                    h_end = found + int(_u(inc_rng, p.hospital_days) * MIN_PER_DAY)
                    ds = found - found % 60  # the family declares the stay from the hour it began
                    plan.trips.append(Trip(found, h_end, True, ds, h_end + (60 - h_end % 60) % 60, "hospital"))
                    hold = (start - MIN_PER_DAY, h_end + MIN_PER_DAY)
                else:
                    hold = (start - MIN_PER_DAY, found + 60)
                plan.trips = [t for t in plan.trips if t.reason == "hospital" or _windows_free([hold], t.start, t.end)]
                break
    # daily habits
    for d in range(days):
        day0 = d * MIN_PER_DAY
        if rng.random() < p.outing_p:
            s = day0 + _i(rng, p.outing_start_min) // 10 * 10
            plan.outings.append((s, s + int(_u(rng, p.outing_min)) // 10 * 10))
        if rng.random() < p.long_nap_p:
            s = day0 + _i(rng, p.nap_start_min) // 10 * 10
            plan.long_naps.append((s, s + int(_u(rng, p.long_nap_min)) // 10 * 10))
        elif rng.random() < p.nap_p:
            s = day0 + _i(rng, p.nap_start_min) // 10 * 10
            length = plan.nap_habit_min * float(np.exp(rng.normal(0.0, p.nap_day_sd)))
            plan.naps.append((s, s + max(20, int(length) // 10 * 10)))
        if plan.quiet_afternoons and rng.random() < p.quiet_afternoon_p:
            s = day0 + _i(rng, p.quiet_afternoon_start_min) // 10 * 10
            plan.quiet.append((s, s + int(_u(rng, p.quiet_afternoon_min)) // 10 * 10))
    # habits only happen at home and before a fall: drop those that overlap a trip or an incident
    gone = [(t.start, t.end) for t in plan.trips]
    if plan.incident is not None:
        gone.append((plan.incident.start - 60, plan.incident.end))
    plan.outings = [w for w in plan.outings if _windows_free(gone, *w)]
    plan.naps = [w for w in plan.naps if _windows_free(gone, *w)]
    plan.long_naps = [w for w in plan.long_naps if _windows_free(gone, *w)]
    plan.quiet = [w for w in plan.quiet if _windows_free(gone, *w)]


def build(
    seed_seq: np.random.SeedSequence,
    incident_seq: np.random.SeedSequence,
    params: Params,
    households: int,
    days: int,
    first_day: dt.date,
    incident_scale: float,
) -> District:
    """Draw the district's registry and plans."""
    rng = np.random.default_rng(seed_seq)
    inc_rng = np.random.default_rng(incident_seq)
    p = params
    b = _Builder(rng, p, days, first_day)
    n_min = days * MIN_PER_DAY
    kinds = _kinds(rng, households, p)

    # which elders get an incident: Poisson count over eligible elder-days, at most one per elder
    elders = [i for i, k in enumerate(kinds) if k == "lone_elder"]
    warm = min(p.incident_warmup_days, max(days - 2, 1))
    mean_inc = p.incident_rate_per_elder_day * incident_scale * len(elders) * max(days - warm, 1)
    n_inc = min(int(inc_rng.poisson(mean_inc)), len(elders))
    chosen = inc_rng.choice(len(elders), size=n_inc, replace=False) if n_inc else np.zeros(0, dtype=np.int64)
    incident_elders = {elders[int(i)] for i in chosen}

    # e-bike sensors on a share of non-elder households, weighted toward group rentals
    weights = np.array(
        [0.0 if k == "lone_elder" else (p.ebike_weight_group_rental if k == "group_rental" else 1.0) for k in kinds]
    )
    n_eb = min(round(households * p.ebike_share), int((weights > 0).sum()))
    eb_set = (
        set(rng.choice(households, size=n_eb, replace=False, p=weights / weights.sum()).tolist()) if n_eb else set()
    )

    hh_list: list[Household] = []
    size_w = np.array(p.size_weights) / sum(p.size_weights)
    for i, kind in enumerate(kinds):
        level = float(np.exp(rng.normal(0.0, p.household_power_sd)))
        hid = f"{PREFIX}-H{i + 1:06d}"
        tags: list[str] = []
        units: list[int] = []
        elder: ElderPlan | None = None
        shop: ShopPlan | None = None
        rental_from: int | None = None
        visit: tuple[int, int, int] | None = None
        unregistered = False
        if kind == "lone_elder":
            flat = bool(rng.random() < p.flat_meter_share)
            elder = ElderPlan(
                flat_meter=flat,
                quiet_afternoons=bool(rng.random() < p.quiet_afternoon_share),
                nocturia=p.night_toilet_elder * float(rng.uniform(0.3, 1.7)),
                nap_habit_min=_u(rng, p.nap_habit_min),
            )
            _elder_calendar(rng, inc_rng, p, days, elder, i in incident_elders)
            lvl = level * p.elder_power_factor * (p.flat_meter_power_factor if flat else 1.0)
            units.append(
                b.unit(
                    i,
                    1,
                    "base",
                    table=_FLAT_METER_OWNERSHIP if flat else _ELDER_OWNERSHIP,
                    level=lvl,
                    weekend_chain=p.elder_weekend_chain,
                    daylight_lights=not flat,
                    elder=True,
                )
            )
            registered, actual = 1, 1
            tags.append("lone_elder")
        elif kind == "group_rental":
            registered = _i(rng, p.group_rental_registered)
            actual = _i(rng, p.group_rental_people)
            if days >= 8 and rng.random() < p.group_rental_from_day_p:
                day = int(rng.integers(2, days - 4))
                rental_from = day * MIN_PER_DAY
            else:
                day = 0
            units.append(b.unit(i, registered, "base", table=_BASE_OWNERSHIP, level=level))
            move_in = 0 if rental_from is None else rental_from + int(rng.integers(600, 1200)) // 10 * 10
            for size in _split(rng, actual - registered, 1, 3):
                shifted = rng.random() < p.group_rental_shift_p
                off = _i(rng, p.group_rental_shift_slots) if shifted else int(rng.integers(0, 13))
                units.append(
                    b.unit(
                        i,
                        size,
                        "extra",
                        table=_ROOM_OWNERSHIP,
                        level=level,
                        offset=off,
                        present=(move_in, n_min),
                        bulbs=(1, 3),
                    )
                )
            if rng.random() < p.group_rental_rental_tag:
                tags.append("rental")
        elif kind == "large_family":
            registered = actual = 5 if rng.random() < 0.5 else 6
            if registered == 5 and rng.random() < 0.5:
                units.append(b.unit(i, 5, "base", table=_BASE_OWNERSHIP, level=level))
            else:
                first = 3 if registered == 5 else (4 if rng.random() < 0.6 else 3)
                units.append(b.unit(i, first, "base", table=_BASE_OWNERSHIP, level=level))
                units.append(
                    b.unit(
                        i,
                        registered - first,
                        "extra",
                        table=_ROOM_OWNERSHIP,
                        level=level,
                        weekend_chain=True,
                        bulbs=(2, 4),
                    )
                )
        elif kind == "shop":
            registered = actual = _i(rng, (1, 3))
            units.append(b.unit(i, registered, "base", table=_BASE_OWNERSHIP, level=level, weekend_chain=True))
            shop_kind = "salon" if rng.random() < 0.5 else "snack"
            shop = ShopPlan(
                kind=shop_kind,
                open_min=_i(rng, p.shop_open_min) // 10 * 10,
                close_min=_i(rng, p.shop_close_min) // 10 * 10,
                closed_weekday=int(rng.integers(0, 7)) if rng.random() < p.shop_closed_weekday_p else None,
                base_w=_u(rng, p.shop_base_w),
                burst_w=_u(rng, p.shop_burst_w),
                bursts_per_hour=_u(rng, p.shop_bursts_per_hour),
                burst_min=_u(rng, p.shop_burst_min),
                draws_per_hour=_u(rng, p.shop_draws_per_hour),
                draw_litres=p.shop_draw_litres,
            )
            if rng.random() < 0.5:
                tags.append("rental")
        elif kind == "shift_worker":
            registered = actual = 1
            units.append(b.unit(i, 1, "base", table=_BASE_OWNERSHIP, level=level, offset=_i(rng, p.shift_worker_slots)))
            if rng.random() < p.rental_tag_share:
                tags.append("rental")
        else:
            actual = int(rng.choice(5, p=size_w)) + 1
            registered = actual
            if actual >= 2 and rng.random() < p.unregistered_occupant_share:
                registered = actual - 1
                unregistered = True
            units.append(b.unit(i, actual, "base", table=_BASE_OWNERSHIP, level=level))
            if rng.random() < p.rental_tag_share:
                tags.append("rental")
            if days >= 3 and rng.random() < p.visitors_share:
                guests = _i(rng, p.visit_guests)
                d0 = int(rng.integers(0, days - 1))
                start = d0 * MIN_PER_DAY + int(rng.integers(600, 1140)) // 10 * 10
                end = min((d0 + _i(rng, p.visit_days)) * MIN_PER_DAY + int(rng.integers(540, 960)) // 10 * 10, n_min)
                visit = (start, end, guests)
                units.append(
                    b.unit(
                        i,
                        guests,
                        "guest",
                        table=_GUEST_OWNERSHIP,
                        level=level,
                        weekend_chain=True,
                        present=(start, end),
                        bulbs=(1, 2),
                    )
                )
        contacts: list[dict[str, str]] = []
        if kind == "lone_elder":
            for _ in range(1 if rng.random() < 0.5 else 2):
                contacts.append(
                    {
                        "name": _name(rng),
                        "phone": _phone(rng, "13"),
                        "relation": RELATIONS[int(rng.integers(len(RELATIONS)))],
                    }
                )
        elif rng.random() < p.contact_share_others:
            contacts.append({"name": _name(rng), "phone": _phone(rng, "13"), "relation": "self"})
        owned_base = b.units[units[0]].owned
        hh_list.append(
            Household(
                index=i,
                id=hid,
                building_id="",
                unit_label="",
                registered=registered,
                actual=actual,
                tags=tags,
                contacts=contacts,
                kind=kind,
                units=units,
                water_id=f"{PREFIX}-WM-{i + 1:06d}",
                power_id=f"{PREFIX}-PM-{i + 1:06d}",
                ebike_id=f"{PREFIX}-EB-{i + 1:06d}" if i in eb_set else None,
                water_step_dl=1 if rng.random() < p.water_fine_resolution_share else 10,
                power_step_wh=1 if rng.random() < p.power_fine_resolution_share else 10,
                power_first=bool(rng.random() < p.power_first_share),
                water_init_dl=int(_u(rng, p.water_initial_m3) * 10000),
                power_init_wh=int(_u(rng, p.power_initial_kwh) * 1000),
                water_factor=float(np.exp(rng.normal(0.0, p.household_water_sd))),
                cistern_l=_u(rng, p.toilet_litres),
                shower_lpm=_u(rng, p.shower_lpm),
                has_dishwasher=bool(owned_base[crest.DISHWASHER]),
                elder=elder,
                shop=shop,
                rental_from=rental_from,
                visit=visit,
                unregistered=unregistered,
            )
        )
    registry = _registry(rng, hh_list)
    return District(registry=registry, households=hh_list, units=b.units, days=days, first_day=first_day)


def _registry(rng: np.random.Generator, hhs: list[Household]) -> dict[str, Any]:
    """Street, grids, buildings, households, devices and workers (CONTRACT.md section 2)."""
    street_id = PREFIX
    root = f"{PREFIX}-G1"
    buildings: list[dict[str, Any]] = []
    # buildings: old six-storey estates (2-3 flats a floor) and some high-rises (4 a floor, partly covered)
    flats: list[tuple[int, str]] = []  # (building index, unit label)
    b_idx = 0
    while len(flats) < len(hhs):
        if rng.random() < 0.75:
            floors, per_floor = 6, _i(rng, (2, 3))
        else:
            floors, per_floor = _i(rng, (14, 24)), 4
        labels = [f"{f}{r:02d}" for f in range(1, floors + 1) for r in range(1, per_floor + 1)]
        take = min(len(labels), _i(rng, (12, 36)), len(hhs) - len(flats))
        chosen = sorted(rng.choice(len(labels), size=take, replace=False).tolist())
        buildings.append({"floors": floors, "n": take})
        flats += [(b_idx, labels[c]) for c in chosen]
        b_idx += 1
    order = rng.permutation(len(hhs))  # flats to households at random (kinds are spread over buildings)
    per_micro = 4
    n_micro = (len(buildings) + per_micro - 1) // per_micro
    cols = 4
    lon0, lat0, dlon, dlat = 121.455, 31.205, 0.0032, 0.0026
    grids: list[dict[str, Any]] = []
    micro_ids: list[str] = []
    for m in range(n_micro):
        r, c = divmod(m, cols)
        x0, y0 = lon0 + c * dlon, lat0 + r * dlat
        gid = f"{root}-M{m + 1:02d}"
        micro_ids.append(gid)
        grids.append(
            {
                "id": gid,
                "street_id": street_id,
                "parent_id": root,
                "name": f"第{m + 1}微网格",
                "polygon": [
                    [round(x0, 6), round(y0, 6)],
                    [round(x0 + dlon, 6), round(y0, 6)],
                    [round(x0 + dlon, 6), round(y0 + dlat, 6)],
                    [round(x0, 6), round(y0 + dlat, 6)],
                ],
            }
        )
    rows = (n_micro + cols - 1) // cols
    width = min(n_micro, cols)
    grids.insert(
        0,
        {
            "id": root,
            "street_id": street_id,
            "parent_id": None,
            "name": "第一综合网格",
            "polygon": [
                [round(lon0, 6), round(lat0, 6)],
                [round(lon0 + width * dlon, 6), round(lat0, 6)],
                [round(lon0 + width * dlon, 6), round(lat0 + rows * dlat, 6)],
                [round(lon0, 6), round(lat0 + rows * dlat, 6)],
            ],
        },
    )
    b_entries: list[dict[str, Any]] = []
    for k, bd in enumerate(buildings):
        m = k // per_micro
        r, c = divmod(m, cols)
        slot = k % per_micro
        x = lon0 + c * dlon + dlon * (0.25 + 0.5 * (slot % 2)) + float(rng.uniform(-0.0003, 0.0003))
        y = lat0 + r * dlat + dlat * (0.25 + 0.5 * (slot // 2)) + float(rng.uniform(-0.0003, 0.0003))
        lane = 100 + 20 * m + slot // 2 * 5
        b_entries.append(
            {
                "id": f"{PREFIX}-B{k + 1:04d}",
                "grid_id": micro_ids[m],
                "address": f"{ROAD} {lane} 弄 {slot % 2 * 2 + 1} 号",
                "location": [round(x, 6), round(y, 6)],
                "floors": bd["floors"],
            }
        )
    for pos, h in zip(order, hhs, strict=True):
        bi, label = flats[int(pos)]
        h.building_id = b_entries[bi]["id"]
        h.unit_label = label
    households = [
        {
            "id": h.id,
            "building_id": h.building_id,
            "unit": h.unit_label,
            "registered_occupants": h.registered,
            "tags": h.tags,
            "contacts": h.contacts,
        }
        for h in hhs
    ]
    devices: list[dict[str, Any]] = []
    for h in hhs:
        devices.append({"id": h.water_id, "type": "water", "household_id": h.id})
        devices.append({"id": h.power_id, "type": "power", "household_id": h.id})
        if h.ebike_id:
            devices.append({"id": h.ebike_id, "type": "ebike", "household_id": h.id, "location": "入户门旁插座回路"})
    workers: list[dict[str, Any]] = [
        {
            "id": f"{PREFIX}-W-{m + 1:03d}",
            "name": _name(rng),
            "phone": _phone(rng, "139"),
            "grid_id": g,
            "role": "grid_worker",
        }
        for m, g in enumerate(micro_ids)
    ]
    workers.append(
        {
            "id": f"{PREFIX}-W-L01",
            "name": _name(rng),
            "phone": _phone(rng, "139"),
            "grid_id": root,
            "role": "grid_leader",
        }
    )
    workers.append(
        {
            "id": f"{PREFIX}-W-C01",
            "name": _name(rng),
            "phone": _phone(rng, "139"),
            "grid_id": None,
            "role": "street_center",
        }
    )
    return {
        "streets": [{"id": street_id, "name": STREET_NAME}],
        "grids": grids,
        "buildings": b_entries,
        "households": households,
        "devices": devices,
        "workers": workers,
    }
