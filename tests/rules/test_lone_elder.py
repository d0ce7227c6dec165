"""Lone-elder inactivity on 15-min water and power registers, with a learned daily routine."""

from __future__ import annotations

import pickle
import random
from collections.abc import Iterator

from rules.catalog import BULK_RULES
from rules.lone_elder import LoneElderState, lone_elder_inactive, nights_learned
from rules.processor import PartitionState, Processor
from rules.topology import HouseholdInfo
from tests.rules.support import HOUR, MIN, ctx, reading, topology
from whistle.domain import AlarmKind, Channel, Detection, DeviceType, Reading

HH = "RJ-H000001"
STEP = 15 * MIN
DAY = 24 * HOUR
# Local midnight (Asia/Shanghai, UTC+8) of 2026-11-01.
D0 = 1_793_462_400_000
TOPO = topology((HH,))


def day_profile(rng: random.Random, wake_h: float = 6.5, sleep_h: float = 21.5) -> list[tuple[float, float]]:
    """(litres, Wh above standby) per 15-min slot of a lone elder's ordinary day (~100 L, DOMAIN.md)."""
    out = [(0.0, 0.0)] * 96
    wake = int((wake_h + rng.uniform(-0.4, 0.4)) * 4)
    sleep = int((sleep_h + rng.uniform(-0.5, 0.5)) * 4)
    nap = rng.randrange(52, 58) if rng.random() < 0.6 else None  # an afternoon nap of about 1.5 h
    for s in range(wake, sleep):
        if nap is not None and nap <= s < nap + 6:
            continue
        litres = 6.0 if rng.random() < 0.14 else 0.0  # a toilet flush every couple of hours
        wh = 0.0
        if s in (wake, wake + 1):
            litres += rng.uniform(8, 15)  # washing
            wh = 90.0  # the kettle
        elif s in range(46, 49) or s in range(70, 73):  # lunch and dinner
            litres += rng.uniform(3, 8)
            wh = rng.choice([60.0, 120.0])
        elif s >= sleep - 2:
            litres += rng.uniform(8, 15)  # washing before bed
        elif rng.random() < 0.1:
            litres += 2.0
        out[s] = (litres, wh)
    if rng.random() < 0.6:  # a night-time toilet visit
        out[rng.randrange(4, 20)] = (6.0, 0.0)
    return out


def series(days: int, seed: int = 1, stop_at: int | None = None) -> Iterator[Reading]:
    """Water and power readings every 15 min; after `stop_at` (ms) nothing but standby."""
    rng = random.Random(seed)
    water, kwh = 12.0, 3000.0
    for d in range(days):
        for s, (drawn, used) in enumerate(day_profile(rng)):
            ts = D0 + d * DAY + (s + 1) * STEP
            stopped = stop_at is not None and ts > stop_at
            water += 0.0 if stopped else drawn / 1000
            kwh += (25 + (0.0 if stopped else used)) / 1000  # 25 Wh of standby per 15 min (a fridge, a router)
            yield reading("WM-1", DeviceType.WATER, Channel.DATA, ts, {"total_m3": round(water, 3)}, household=HH)
            yield reading("PM-1", DeviceType.POWER, Channel.DATA, ts, {"total_kwh": round(kwh, 3)}, household=HH)


def inactive(readings: Iterator[Reading], **over: object) -> list[Detection]:
    st = LoneElderState()
    c = ctx(topology=TOPO, **over)  # type: ignore[arg-type]
    out: list[Detection] = []
    for r in readings:
        c.clock = r.ts
        out += lone_elder_inactive(r, st, c) or []
    return [d for d in out if d.kind is AlarmKind.LONE_ELDER_INACTIVE]


def test_ordinary_weeks_raise_at_most_one_false_alert_per_100_elder_days() -> None:
    raised = [d for seed in range(1, 6) for d in inactive(series(28, seed=seed)) if d.action.value == "raise"]
    assert len(raised) <= 1, [(d.ts, d.evidence) for d in raised]


def test_a_fall_in_the_afternoon_is_found_in_hours_not_twelve() -> None:
    onset = D0 + 20 * DAY + 14 * HOUR + 10 * MIN
    (d,) = inactive(series(22, stop_at=onset))
    delay_h = (d.ts - onset) / HOUR
    assert d.evidence["basis"] == "routine_day"
    assert 1.0 <= delay_h <= 7.0, delay_h  # the nap and the gaps around it, not the fixed rule's twelve hours
    usual = d.evidence["usual_longest_quiet_from_this_time_hours"]
    assert isinstance(usual, float) and d.evidence["threshold_hours"] == round(1.2 * usual + 2.0, 2)
    assert d.subject_id == HH and d.evidence["quiet_since"] <= onset


def test_a_fall_after_bedtime_is_found_the_next_morning_and_never_after_the_fixed_rule() -> None:
    onset = D0 + 20 * DAY + 22 * HOUR + 30 * MIN  # after the evening's last wash: asleep, as far as the meters know
    (d,) = inactive(series(22, stop_at=onset))
    since = int(d.evidence["quiet_since"])
    assert d.evidence["basis"] == "routine_night"
    assert d.ts - since <= 12 * HOUR
    local = (d.ts + 8 * HOUR) % DAY / HOUR
    assert 6.5 <= local <= 10.5, local  # after the usual waking time, well before noon
    wake = d.evidence["usual_latest_first_activity"]
    assert isinstance(wake, str) and "06:00" <= wake <= "08:00", wake


def test_a_fall_in_the_early_evening_is_found_before_midnight() -> None:
    """The washing before bed that every evening has is missing: no need to wait for the morning."""
    onset = D0 + 20 * DAY + 19 * HOUR + 5 * MIN
    (d,) = inactive(series(22, stop_at=onset))
    assert d.evidence["basis"] == "routine_day"
    local = (d.ts + 8 * HOUR) % DAY / HOUR
    assert 20.0 <= local < 24.0, local
    assert d.ts - onset <= 5 * HOUR


def test_nights_broken_by_a_bathroom_visit_are_learned_as_one_night() -> None:
    st = LoneElderState()
    c = ctx(topology=TOPO)
    for r in series(15):  # 60 % of nights have a toilet flush between 01:00 and 05:00
        c.clock = r.ts
        lone_elder_inactive(r, st, c)
    known = nights_learned(st)
    assert len(known) >= 12
    assert all(-4 * 60 <= bed <= -90 for bed, _ in known), known  # in the evening, not at the flush in the night
    wakes = sorted(wake for _, wake in known)
    assert wakes[0] >= 5 * 60 and 6 * 60 <= wakes[len(wakes) // 2] <= 8 * 60, known  # not the flush at 04:00


def test_cold_start_uses_the_fixed_rule() -> None:
    onset = D0 + 2 * DAY + 9 * HOUR
    (d,) = inactive(series(4, stop_at=onset))
    assert d.evidence["basis"] in ("fixed_rule", "fixed_rule_backstop")
    assert d.evidence["days_of_routine"] < 7
    assert (d.ts - int(d.evidence["quiet_since"])) / HOUR <= 12


def test_activity_clears_the_alarm() -> None:
    onset = D0 + 20 * DAY + 14 * HOUR
    st = LoneElderState()
    c = ctx(topology=TOPO)
    got = []
    for r in series(22, stop_at=onset):
        got += lone_elder_inactive(r, st, c) or []
    at = D0 + 22 * DAY + STEP
    water = reading("WM-1", DeviceType.WATER, Channel.DATA, at, {"total_m3": 99.0}, household=HH)
    power = reading("PM-1", DeviceType.POWER, Channel.DATA, at, {"total_kwh": 9999.0}, household=HH)
    got += lone_elder_inactive(water, st, c) or []
    got += lone_elder_inactive(power, st, c) or []  # the household is judged as far as both meters reach
    assert [d.action.value for d in got if d.kind is AlarmKind.LONE_ELDER_INACTIVE] == ["raise", "clear"]


def test_a_declared_absence_suppresses_and_the_quiet_counts_from_the_return() -> None:
    leave = D0 + 20 * DAY + 9 * HOUR
    back = D0 + 21 * DAY + 18 * HOUR
    topo = topology((HH,))
    topo.absences[HH] = [(leave, back)]
    st = LoneElderState()
    c = ctx(topology=topo)
    got: list[Detection] = []
    for r in series(23, stop_at=leave):  # gone, and nobody comes back to use water
        got += lone_elder_inactive(r, st, c) or []
    (d,) = [x for x in got if x.kind is AlarmKind.LONE_ELDER_INACTIVE]
    assert d.ts > back and d.evidence["returned_from_declared_absence"] == back
    assert d.evidence["quiet_since"] == back


def test_more_than_two_cubic_metres_in_a_day_is_major_continuous_flow_once() -> None:
    st = LoneElderState()
    c = ctx(topology=TOPO)
    got: list[Detection] = []
    for i in range(40):
        r = reading("WM-1", DeviceType.WATER, Channel.DATA, D0 + i * STEP, {"total_m3": 1.0 + i * 0.1}, household=HH)
        got += lone_elder_inactive(r, st, c) or []
    (d,) = [x for x in got if x.kind is AlarmKind.WATER_CONTINUOUS_FLOW]
    assert d.severity.value == "major" and d.evidence["reason"] == "daily_volume"


def test_only_lone_elder_households_keep_state_and_it_stays_small() -> None:
    topo = topology((HH,))
    topo.households["RJ-H000002"] = HouseholdInfo(3, frozenset())
    proc = Processor(BULK_RULES, topology=topo)
    part = PartitionState()
    out: list[Detection] = []
    for r in series(10):
        proc.process(part, r, out)
        proc.process(
            part,
            reading(r.device_id + "b", r.device_type, r.channel, r.ts, dict(r.values), household="RJ-H000002"),
            out,
        )
    names = {k[0] for k in part.states}
    keys = [k for k in part.states if k[0] == "household.lone_elder_inactive"]
    assert "household.lone_elder_inactive" in names and keys == [("household.lone_elder_inactive", HH)]
    size = len(pickle.dumps(part.states[keys[0]]))
    assert size < 1400, size  # mostly the 15 days of signs of life, a bit per quarter hour (180 bytes)


def test_a_light_left_burning_after_a_fall_is_not_a_sign_of_life() -> None:
    """Switching something on is life; a load that stays on (the lamp she had lit) is not, after its first hour."""
    onset = D0 + 20 * DAY + 14 * HOUR + 10 * MIN
    lamp_wh = 15.0  # 60 W, from the fall on

    def lit(readings: Iterator[Reading]) -> Iterator[Reading]:
        for r in readings:
            if r.device_type is DeviceType.POWER and r.ts > onset:
                steps = (r.ts - onset) // STEP
                values = {"total_kwh": round(float(r.values["total_kwh"]) + steps * lamp_wh / 1000, 3)}
                yield reading(r.device_id, r.device_type, r.channel, r.ts, values, household=HH)
            else:
                yield r

    (d,) = inactive(lit(series(22, stop_at=onset)))
    assert d.action.value == "raise"
    since = d.evidence["quiet_since"]
    assert isinstance(since, int) and since <= onset + 75 * MIN  # the switch-on counted within its hour; then nothing
    assert d.ts - onset <= 9 * HOUR


def test_lights_on_on_a_dark_morning_end_the_night_before_any_water() -> None:
    st = LoneElderState()
    c = ctx(topology=TOPO)
    kwh = 3000.0
    water = 12.0
    out: list[Detection] = []
    for d in range(6):  # power is read once three nights have shown what the fridge does
        for s in range(96):
            ts = D0 + d * DAY + (s + 1) * STEP
            lights = 28 <= s < 36 or 72 <= s < 86  # 07:00-09:00 and 18:00-21:30: a 200 W lamp and television
            kwh += (25 + (50 if lights else 0)) / 1000
            if s in (40, 60, 80):
                water += 0.006
            c.clock = ts
            for r in (
                reading("WM-1", DeviceType.WATER, Channel.DATA, ts, {"total_m3": round(water, 3)}, household=HH),
                reading("PM-1", DeviceType.POWER, Channel.DATA, ts, {"total_kwh": round(kwh, 3)}, household=HH),
            ):
                out += lone_elder_inactive(r, st, c) or []
    known = nights_learned(st)
    assert len(known) == 5
    assert all(7 * 60 <= wake <= 8 * 60 for _, wake in known[:2]), known  # the lamp at 07:00, not the flush at 10:00


def quiet_afternoons(days: int, seed: int = 3, stop_at: int | None = None) -> Iterator[Reading]:
    """An elder whose every afternoon is five hours without a draw or a switch (13:00-18:00: a long nap and a
    quiet sit), otherwise the ordinary day of `day_profile`."""
    for r in series(days, seed=seed, stop_at=stop_at):
        minute = (r.ts + 8 * HOUR) % DAY // MIN
        if r.device_type is DeviceType.WATER and 13 * 60 < minute <= 18 * 60:
            continue  # the meter reads, nothing is drawn: left out here and its volume lands at 18:15
        yield r


def test_an_ordinary_afternoon_gap_of_five_hours_is_learned_not_alerted() -> None:
    raised = [d for d in inactive(quiet_afternoons(28)) if d.action.value == "raise"]
    assert raised == [], [(d.ts, d.evidence) for d in raised]


def test_with_five_quiet_afternoon_hours_a_morning_fall_is_still_found_in_hours() -> None:
    onset = D0 + 20 * DAY + 9 * HOUR + 10 * MIN
    (d,) = inactive(quiet_afternoons(22, stop_at=onset))
    assert d.evidence["basis"] == "routine_day" and d.ts - onset <= 6 * HOUR
