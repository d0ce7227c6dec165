"""Lone-elder inactivity (`household.lone_elder_inactive`): no sign of life against this person's routine.

For households tagged `lone_elder`, the water and power meters (15-min cumulative registers) are
turned into *activity*: a water draw of at least `min_litres` in an interval, or an interval's
mean power (`power_w`) at least `min_active_w` above what the flat draws at night — the median
of the last nights' highest 15-min power between 01:00 and 05:00, when a fridge cycles and
nothing else runs. Lights, a television, a kettle count; a fridge does not. Before three nights
are known, or for meters without `power_w`, an interval's energy at least `min_active_wh`
above a slowly tracked standby level counts instead. Between two activities lies a *quiet
spell*.

The routine is learned per household and per hour of the day (local time, Asia/Shanghai): for
each of the last `window_days` days and each hour, the longest quiet spell that was going on at
that hour (a 24 × 14 byte table, in quarter hours). The usual longest quiet at an hour is the
largest of those over the window and the neighbouring hours (routines shift by half an hour).
Sleeping makes the night hours' spells long (8–9 h), the morning hours' short once the person is
usually up, and an afternoon nap shows at its own hours. The current quiet spell is abnormal
when it exceeds, at the current hour,

    min(max(min_quiet_h, margin × usual longest quiet at this hour + slack_h), fixed_quiet_h)

so an elder who is always up and about by 07:00 is checked on by mid-morning, while a fall in
the afternoon is found after a few hours instead of the fixed rule's twelve. A spell that
contains 03:00 is someone's night: it is never cut shorter than `night_floor_h` (9.5 h), which
keeps the first long night of a new household (no night-time toilet visit for once) quiet. The cap
(`fixed_quiet_h`, 12 h) means the alert never comes later than the fixed rule in use today
(< 10 L in 12 h, DOMAIN.md); with fewer than `min_days` days learned, the fixed rule is the rule.
`backstop_fixed_rule` (off by default) additionally raises whenever the fixed rule itself would
(water under 10 L in the last 12 hours, nothing in the last hour), whatever the power showed
before — the fixed rule's false alarms with it.

A declared absence (`POST /api/v1/households/{id}/absences`) suppresses alerts inside it, and the
quiet spell counts from its end. The alarm clears at the next activity. More than
`max_daily_m3` (2 m³) in a day in such a household raises `water.continuous_flow` at major
severity (Jing'an's rule), once per day.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

from rules.detections import detect
from rules.processor import Ctx
from rules.topology import Topology
from whistle.domain import AlarmKind, Detection, DetectionAction, DeviceType, Reading, Severity, SubjectType

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
LOCAL_OFFSET_MS = 8 * HOUR_MS  # Asia/Shanghai, no daylight saving
TAG = "lone_elder"
WINDOW_DAYS = 14
NIGHTS = 7


MAX_SKEW_MS = 2 * HOUR_MS


def _data_time(st: LoneElderState) -> int:
    """How far the household's data reaches: the older of the two meters' latest readings, so a meter
    whose messages trail the other's (another gateway, a slower link) is not read as silence — unless
    it trails by more than two hours (a daily batch, a dead meter): then two hours behind the newer."""
    if st.w_ts < 0 or st.p_ts < 0:
        return max(st.w_ts, st.p_ts)
    hi, lo = max(st.w_ts, st.p_ts), min(st.w_ts, st.p_ts)
    return lo if hi - lo <= MAX_SKEW_MS else hi - MAX_SKEW_MS


def local_hour(ts: int) -> int:
    return ((ts + LOCAL_OFFSET_MS) // HOUR_MS) % 24


def local_day(ts: int) -> int:
    return (ts + LOCAL_OFFSET_MS) // DAY_MS


def is_lone_elder(r: Reading, topology: Topology) -> bool:
    """Only households tagged `lone_elder` keep this rule's state."""
    return topology.has_tag(r.household_id, TAG)


def _zeros(n: int) -> array[float]:
    return array("f", bytes(4 * n))


@dataclass(slots=True)
class LoneElderState:
    w_ts: int = -1
    w_total: float = 0.0
    p_ts: int = -1
    p_total: float = 0.0
    standby_wh: float = -1.0
    last_active: int = -1
    last_water: int = -1
    last_power: int = -1
    first_ts: int = -1
    spells: bytearray = field(default_factory=lambda: bytearray(24 * WINDOW_DAYS))  # quarter hours
    last_day: int = -1
    days_learned: int = 0
    water_hours: array[float] = field(default_factory=lambda: _zeros(12))  # litres per hour, ring
    nights: array[int] = field(default_factory=lambda: array("H", bytes(2 * NIGHTS)))  # peak W 01-05h per night
    night_day: int = -1
    water_hour: int = -1  # absolute hour index of the ring's newest slot
    day: int = -1
    day_litres: float = 0.0
    day_raised: bool = False
    raised: bool = False
    raised_at: int = -1


def _det(
    r: Reading, kind: AlarmKind, action: DetectionAction, severity: Severity, ts: int, ev: dict[str, object]
) -> Detection:
    return detect(r, kind, severity, action, ev, subject=SubjectType.HOUSEHOLD, ts=ts, source_by_seq=False)


def _learn_spell(st: LoneElderState, start: int, end: int) -> None:
    """Remember a finished quiet spell at every local hour (of its day) it covered."""
    quarters = (end - start) // 900_000
    if quarters < 2:
        return
    q = min(quarters, 255)
    h = start - start % HOUR_MS
    n = 0
    while h < end and n < 25:
        i = (local_day(h) % WINDOW_DAYS) * 24 + local_hour(h)
        st.spells[i] = max(st.spells[i], q)
        h += HOUR_MS
        n += 1


def _note_night(st: LoneElderState, ts: int, watts: float) -> None:
    """Remember the highest 15-min power of each night between 01:00 and 05:00."""
    day = local_day(ts)
    slot = day % NIGHTS
    if st.night_day != day:
        st.night_day = day
        st.nights[slot] = 0
    w = min(int(watts) + 1, 65535)
    st.nights[slot] = max(st.nights[slot], w)


def _night_peak(st: LoneElderState) -> float | None:
    """The median of the recent nights' peaks: what the flat draws when everyone sleeps; None before 3 nights."""
    seen = sorted(v for v in st.nights if v > 0)
    if len(seen) < 3:
        return None
    return float(seen[len(seen) // 2] - 1)


def _roll(st: LoneElderState, day: int) -> None:
    """Forget the days that leave the window as the local day advances."""
    if st.last_day < 0:
        st.last_day = day
        return
    if day > st.last_day:
        for d in range(st.last_day + 1, min(day, st.last_day + WINDOW_DAYS) + 1):
            base = (d % WINDOW_DAYS) * 24
            st.spells[base : base + 24] = bytes(24)
        st.days_learned += day - st.last_day
        st.last_day = day


def _covers_deep_night(since: int, now: int, hour: int) -> bool:
    """Whether the span contains the local `hour` o'clock (03:00): it includes a night's sleep."""
    day_start = (since + LOCAL_OFFSET_MS) // DAY_MS * DAY_MS - LOCAL_OFFSET_MS
    mark = day_start + hour * HOUR_MS
    if mark < since:
        mark += DAY_MS
    return mark <= now


def usual_quiet_hours(st: LoneElderState, hour: int) -> float:
    """The longest quiet spell of the window going on at this hour or the ones next to it."""
    best = 0
    spells = st.spells
    for d in range(WINDOW_DAYS):
        base = d * 24
        for h in (hour - 1, hour, hour + 1):
            v = spells[base + h % 24]
            best = max(best, v)
    return best / 4


def _water_12h(st: LoneElderState, ts: int, litres: float) -> None:
    """Add a draw to the hourly ring of the last 12 hours."""
    hour = ts // HOUR_MS
    if st.water_hour < 0:
        st.water_hour = hour
    if hour > st.water_hour:
        for k in range(1, min(hour - st.water_hour, 12) + 1):
            st.water_hours[(st.water_hour + k) % 12] = 0.0
        st.water_hour = hour
    if hour > st.water_hour - 12:
        st.water_hours[hour % 12] += litres


def lone_elder_inactive(r: Reading, st: LoneElderState, ctx: Ctx) -> list[Detection] | None:
    """Follow a lone elder's household meters; raise when the quiet outlasts the routine, clear on activity."""
    p = ctx.params.lone_elder
    if not p.enabled:
        return None
    out: list[Detection] | None = None
    active = False
    if r.device_type is DeviceType.WATER:
        total = r.values.get("total_m3")
        if not isinstance(total, int | float) or r.ts <= st.w_ts:
            return None
        prev_ts, prev = st.w_ts, st.w_total
        st.w_ts, st.w_total = r.ts, float(total)
        if prev_ts >= 0 and total >= prev:
            litres = (total - prev) * 1000.0
            _water_12h(st, r.ts, litres)
            if litres >= p.min_litres:
                active = True
                st.last_water = r.ts
            day = local_day(r.ts)
            if day != st.day:
                st.day, st.day_litres, st.day_raised = day, 0.0, False
            st.day_litres += litres
            if st.day_litres > p.max_daily_m3 * 1000 and not st.day_raised:
                st.day_raised = True
                out = [
                    _det(
                        r,
                        AlarmKind.WATER_CONTINUOUS_FLOW,
                        DetectionAction.RAISE,
                        Severity.MAJOR,
                        r.ts,
                        {
                            "reason": "daily_volume",
                            "m3_today": round(st.day_litres / 1000, 2),
                            "limit_m3": p.max_daily_m3,
                        },
                    )
                ]
    elif r.device_type is DeviceType.POWER:
        total = r.values.get("total_kwh")
        if not isinstance(total, int | float) or r.ts <= st.p_ts:
            return None
        prev_ts, prev = st.p_ts, st.p_total
        st.p_ts, st.p_total = r.ts, float(total)
        watts = r.values.get("power_w")
        peak = _night_peak(st)
        if isinstance(watts, int | float) and peak is not None:
            # The interval's mean power above what the flat draws at night (fridge cycles, standby):
            # lights, a television, cooking.
            if watts >= peak + p.min_active_w:
                active = True
                st.last_power = r.ts
        elif prev_ts >= 0 and total >= prev and r.ts - prev_ts <= 2 * HOUR_MS:
            wh15 = (total - prev) * 1000.0 * 900_000 / (r.ts - prev_ts)
            if st.standby_wh < 0 or wh15 < st.standby_wh:
                st.standby_wh = wh15
            else:
                st.standby_wh += 0.002 * (wh15 - st.standby_wh)  # creeps up only slowly
            if wh15 - st.standby_wh >= p.min_active_wh:
                active = True
                st.last_power = r.ts
        if isinstance(watts, int | float) and 1 <= local_hour(r.ts) < 5:
            _note_night(st, r.ts, float(watts))
    else:
        return None
    now = _data_time(st)
    if st.first_ts < 0:
        st.first_ts = now
    _roll(st, local_day(now))
    if active:
        if st.last_active >= 0 and r.ts - st.last_active <= p.fixed_quiet_h * HOUR_MS:
            # A spell that ended by itself within the fixed rule's window is part of this person's life,
            # even one that raised (a late morning): not learning it would raise again every such day.
            # Longer ones (trips, real incidents) are never learned.
            _learn_spell(st, st.last_active, r.ts)
        st.last_active = max(st.last_active, r.ts)
        if st.raised:
            st.raised = False
            clear = _det(
                r,
                AlarmKind.LONE_ELDER_INACTIVE,
                DetectionAction.CLEAR,
                Severity.MAJOR,
                r.ts,
                {"reason": "activity", "quiet_hours": round((r.ts - st.raised_at) / HOUR_MS, 2)},
            )
            out = [*(out or []), clear]
        return out
    if st.raised or st.w_ts < 0:
        return out
    since = st.last_active if st.last_active >= 0 else st.first_ts
    shortest_h = min(p.min_quiet_h, 1.0) if p.backstop_fixed_rule else p.min_quiet_h
    if (now - since) / HOUR_MS < shortest_h:
        return out  # shorter than any threshold can be: most readings end here
    hid = r.household_id or ""
    if ctx.topology.absent(hid, now) is not None:
        return out
    back = ctx.topology.returned_since(hid, since, now)
    if back is not None:
        since = back
    quiet_h = (now - since) / HOUR_MS
    learned = st.days_learned >= p.min_days
    hour = local_hour(now)
    if learned:
        usual = usual_quiet_hours(st, hour)
        threshold = max(p.min_quiet_h, p.margin * usual + p.slack_h)
        if _covers_deep_night(since, now, p.deep_night_hour):
            threshold = max(threshold, p.night_floor_h)  # a night's sleep is never cause for alarm
        threshold = min(threshold, p.fixed_quiet_h)
        basis = "routine"
    else:
        usual = float("nan")
        threshold = p.fixed_quiet_h
        basis = "fixed_rule"
    water12 = sum(st.water_hours) if now - st.first_ts >= 12 * HOUR_MS else None
    # The backstop fires when the fixed rule would, provided nothing at all happened in the last hour.
    fixed = p.backstop_fixed_rule and water12 is not None and water12 < p.fixed_litres and quiet_h >= 1.0
    if quiet_h < threshold and not fixed:
        return out
    if quiet_h < threshold:
        basis = "fixed_rule_backstop"
    st.raised, st.raised_at = True, since
    evidence: dict[str, object] = {
        "quiet_since": since,
        "quiet_hours": round(quiet_h, 2),
        "threshold_hours": round(threshold, 2),
        "basis": basis,
        "local_hour": hour,
        "usual_longest_quiet_hours_at_this_hour": None if not learned else round(usual, 2),
        "days_of_routine": st.days_learned,
        "last_water_draw": st.last_water if st.last_water >= 0 else None,
        "last_power_activity": st.last_power if st.last_power >= 0 else None,
        "water_last_12h_litres": None if water12 is None else round(water12, 1),
        "standby_wh_per_15min": round(st.standby_wh, 1) if st.standby_wh >= 0 else None,
    }
    if back is not None:
        evidence["returned_from_declared_absence"] = back
    raise_ = _det(r, AlarmKind.LONE_ELDER_INACTIVE, DetectionAction.RAISE, Severity.MAJOR, now, evidence)
    return [*(out or []), raise_]
