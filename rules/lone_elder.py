"""Lone-elder inactivity (`household.lone_elder_inactive`): no sign of life against this person's routine.

For households tagged `lone_elder`, the water and power meters (15-min cumulative registers) are
turned into *activity*: a water draw of at least `min_litres` in an interval; an interval's mean
power (`power_w`) at least `min_active_w` above what the flat draws at night (the median of the
last nights' highest 15-min power between 01:00 and 05:00, when a fridge cycles and nothing
else runs); or an hour that used `min_step_wh` more energy than the hour before (lights switched
on on a dark morning, a television: a fridge's cycling evens out over an hour, a switch does
not). Only rises count: a light left burning after a fall is not a sign of life. Before three
nights are known, or for meters without `power_w`, an interval's energy at least
`min_active_wh` above a slowly tracked standby level counts instead. Between two activities lies
a *quiet spell*.

The routine is learned per household from the last 14 days (local time, Asia/Shanghai), in two
parts:

- *Nights*: each quiet spell that held 03:00 is a night; the rule keeps when it began (the last
  sign of life of the evening) and when it ended (the first of the morning), 14 × 2 numbers.
- *Days*: every other spell is kept by the half hour it began in: per remembered day and half
  hour, the longest spell that began then (a 48 × 14 byte table, in quarter hours).

A quiet spell that began from `bed_slack_h` before this person's earliest bedtime of the window
on, or that has lasted into the small hours, is a night: it is abnormal once it outlasts the
latest first activity of a morning in the window by `morning_slack_h`. An elder who is always up
by 07:00 is checked on at 08:00, whenever they went to bed. Any other spell is abnormal after

    max(min_quiet_h, margin × usual + slack_h)

where *usual* is the longest spell begun within `day_reach_h` of the same time of day, taken on
each remembered day, and of those days the `day_rank`-th longest (one odd day does not set the
routine). A fall in the afternoon is found in hours instead of the fixed rule's twelve; the
numbers behind each alert (quiet since, threshold, usual bedtime and waking, usual longest quiet
from this time of day) are its evidence. Quiet before the first 03:00 of the morning's usual
waking (a night-time toilet visit, up early) waits for the later of the two thresholds.

Every threshold is capped at `fixed_quiet_h` (12 h): the alert never comes later than the fixed
rule in use today (< 10 L in 12 h, DOMAIN.md) counted from the last sign of life; with fewer than
`min_days` days learned, the fixed rule is the rule, and before `min_nights` nights a spell that
holds 03:00 may last `night_floor_h`. `backstop_fixed_rule` (off by default) additionally raises
whenever the fixed rule itself would (water under 10 L in the last 12 hours, nothing in the last
hour), whatever the power showed before — the fixed rule's false alarms with it.

A declared absence (`POST /api/v1/households/{id}/absences`) suppresses alerts inside it, and the
quiet spell counts from its end. The alarm clears at the next activity. More than
`max_daily_m3` (2 m³) in a day in such a household raises `water.continuous_flow` at major
severity (Jing'an's rule), once per day.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

from rules.config import LoneElderParams
from rules.detections import detect
from rules.processor import RuleContext
from rules.topology import Topology
from whistle.domain import AlarmKind, Detection, DetectionAction, DeviceType, Reading, Severity, SubjectType
from whistle.timeutil import DAY_MS, HOUR_MS, LOCAL_OFFSET_MS, MINUTE_MS, local_day, local_hour

QUARTER_MS = 900_000
SLOT_MIN = 30  # daytime spells are remembered by the half hour they began in
SLOTS = 1440 // SLOT_MIN
TAG = "lone_elder"
WINDOW_DAYS = 14
NIGHTS = 7


MAX_SKEW_MS = 2 * HOUR_MS
NIGHT_VISIT_MS = 30 * 60_000  # a night broken by at most this much activity is one night
# A threshold in hours, the part of the routine it came from, and the numbers behind it.
Verdict = tuple[float, str, dict[str, object]]


def _data_time(st: LoneElderState) -> int:
    """How far the household's data reaches: the older of the two meters' latest readings, so a meter
    whose messages trail the other's (another gateway, a slower link) is not read as silence — unless
    it trails by more than two hours (a daily batch, a dead meter): then two hours behind the newer."""
    if st.w_ts < 0 or st.p_ts < 0:
        return max(st.w_ts, st.p_ts)
    hi, lo = max(st.w_ts, st.p_ts), min(st.w_ts, st.p_ts)
    return lo if hi - lo <= MAX_SKEW_MS else hi - MAX_SKEW_MS


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
    # Daytime spells by where they started: per remembered day and half hour of the day, the longest
    # quiet spell that began then, in quarter hours plus one (0: no activity began then that day).
    starts: bytearray = field(default_factory=lambda: bytearray(SLOTS * WINDOW_DAYS))
    # Nights, per remembered day (the morning's): minutes after noon when the night's quiet began,
    # minutes after midnight when it ended, plus one (0: no night known that day).
    beds: array[int] = field(default_factory=lambda: array("H", bytes(2 * WINDOW_DAYS)))
    wakes: array[int] = field(default_factory=lambda: array("H", bytes(2 * WINDOW_DAYS)))
    # The power register at the last nine quarter hours (kWh), oldest first; `regs` of them are valid.
    regs_kwh: array[float] = field(default_factory=lambda: array("d", bytes(8 * 9)))
    regs: int = 0
    eve_start: int = -1  # the last long evening quiet (from 18:00), which a bathroom visit may have broken
    eve_end: int = -1
    wake_pending: bool = False
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


def _minute(ts: int) -> int:
    """Minutes after local midnight."""
    return (ts + LOCAL_OFFSET_MS) % DAY_MS // MINUTE_MS


def _since_noon(ts: int) -> int:
    """Minutes after the last local noon: an evening sorts before the small hours of the same night."""
    return (_minute(ts) - 720) % 1440


def _learn_spell(st: LoneElderState, start: int, end: int, deep_night_hour: int) -> None:
    """Remember a finished quiet spell. One that held the deep-night hour is a night: its start is the
    bedtime — or, when the night was broken by a short visit to the bathroom, the start of the long
    quiet before that — and the first sign of life from 05:00 on is the waking. Every other spell is
    kept as the longest daytime spell that began at its half hour of the day."""
    if end <= start:
        return
    if st.wake_pending and 300 <= _minute(end) < 720:
        st.wakes[local_day(end) % WINDOW_DAYS] = _minute(end) + 1
        st.wake_pending = False
    if _covers_deep_night(start, end, deep_night_hour):
        i = local_day(end) % WINDOW_DAYS
        broken = st.eve_end >= 0 and 0 <= start - st.eve_end <= NIGHT_VISIT_MS and _since_noon(start) >= 720
        st.beds[i] = _since_noon(st.eve_start if broken else start) + 1
        if _minute(end) >= 300:
            st.wakes[i] = _minute(end) + 1
        else:
            st.wake_pending = True  # up in the small hours: the morning is the next sign of life
        st.eve_end = -1
        return
    if end - start >= 2 * HOUR_MS and 360 <= _since_noon(start) < 900:  # a long quiet from 18:00 to 03:00
        st.eve_start, st.eve_end = start, end
    i = (local_day(start) % WINDOW_DAYS) * SLOTS + _minute(start) // SLOT_MIN
    st.starts[i] = max(st.starts[i], min((end - start) // QUARTER_MS, 254) + 1)


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
            i = d % WINDOW_DAYS
            st.starts[i * SLOTS : (i + 1) * SLOTS] = bytes(SLOTS)
            st.beds[i] = 0
            st.wakes[i] = 0
        st.days_learned += day - st.last_day
        st.last_day = day


def _covers_deep_night(since: int, now: int, hour: int) -> bool:
    """Whether the span contains the local `hour` o'clock (03:00): it includes a night's sleep."""
    day_start = (since + LOCAL_OFFSET_MS) // DAY_MS * DAY_MS - LOCAL_OFFSET_MS
    mark = day_start + hour * HOUR_MS
    if mark < since:
        mark += DAY_MS
    return mark <= now


@dataclass(frozen=True, slots=True)
class Nights:
    """What the remembered nights say: the earliest the quiet of a night began and the latest it ended."""

    known: int
    earliest_bed: int  # minutes after noon
    latest_wake: int  # minutes after midnight


def nights(st: LoneElderState) -> Nights:
    beds = [b - 1 for b in st.beds if b]
    wakes = [w - 1 for w in st.wakes if w]
    if not beds:
        return Nights(0, 0, 0)
    return Nights(len(wakes), min(beds), max(wakes))


def usual_quiet_from(st: LoneElderState, since: int, reach_h: float, rank: int = 2) -> tuple[float, int]:
    """How long this person's daytime quiet spells that began around this time of day (within `reach_h`)
    last: per remembered day the longest, and of those the `rank`-th longest (one odd day does not set
    the routine), in hours; with on how many days one began there."""
    slot = _minute(since) // SLOT_MIN
    near = max(1, round(reach_h * 60 / SLOT_MIN))
    longest: list[int] = []
    for d in range(WINDOW_DAYS):
        base = d * SLOTS
        row = 0
        for k in range(slot - near, slot + near + 1):
            row = max(row, st.starts[base + k % SLOTS])
        if row:
            longest.append(row - 1)
    if not longest:
        return 0.0, 0
    longest.sort(reverse=True)
    return longest[min(rank, len(longest)) - 1] / 4, len(longest)


def _clock(minutes: int) -> str:
    return f"{minutes // 60 % 24:02d}:{minutes % 60:02d}"


def routine_threshold(st: LoneElderState, since: int, now: int, p: LoneElderParams) -> Verdict:
    """How long this person may be quiet from `since`, by the routine: (hours, basis, evidence).

    A quiet spell that began in the evening at or after this person's earliest bedtime of the window
    (less `bed_slack_h`), or that holds the small hours, is a night: it may last until the latest
    first activity of the morning in the window, plus `morning_slack_h`. Any other spell may last
    `margin` x the longest spell that began around the same time of day, plus `slack_h`. Never less
    than `min_quiet_h`, never more than the fixed rule's `fixed_quiet_h`."""
    known = nights(st)
    after_noon = _since_noon(since)
    is_night = _covers_deep_night(since, now, p.deep_night_hour)
    if known.known >= p.min_nights:
        evening = known.earliest_bed - p.bed_slack_h * 60 <= after_noon < 900  # before 03:00
        morning = 900 <= after_noon < 720 + known.latest_wake  # up early, or up in the night
        if is_night or evening or morning:
            noon = since - after_noon * MINUTE_MS - since % MINUTE_MS
            deadline = noon + int((720 + known.latest_wake + p.morning_slack_h * 60) * MINUTE_MS)
            threshold = max(p.min_quiet_h, (deadline - since) / HOUR_MS)
            evidence: dict[str, object] = {
                "nights_known": known.known,
                "usual_earliest_bedtime": _clock(known.earliest_bed + 720),
                "usual_latest_first_activity": _clock(known.latest_wake),
            }
            if morning and not is_night:
                day_threshold, _, day_evidence = _day_threshold(st, since, p)
                if day_threshold > threshold:
                    return day_threshold, "routine_day", day_evidence
            return min(threshold, p.fixed_quiet_h), "routine_night", evidence
    elif is_night:
        return min(max(p.min_quiet_h, p.night_floor_h), p.fixed_quiet_h), "routine_night", {"nights_known": known.known}
    return _day_threshold(st, since, p)


def _day_threshold(st: LoneElderState, since: int, p: LoneElderParams) -> Verdict:
    usual, days = usual_quiet_from(st, since, p.day_reach_h, p.day_rank)
    threshold = max(p.min_quiet_h, p.margin * usual + p.slack_h)
    evidence: dict[str, object] = {
        "usual_longest_quiet_from_this_time_hours": round(usual, 2),
        "days_active_around_this_time": days,
    }
    return min(threshold, p.fixed_quiet_h), "routine_day", evidence


def _hour_step_wh(st: LoneElderState, ts: int, prev_ts: int, kwh: float) -> float:
    """Energy of the last hour less that of the hour before, in Wh, from the register at consecutive
    quarter hours; 0 until two whole hours are known (a gap in the readings starts over)."""
    if prev_ts < 0 or abs(ts - prev_ts - QUARTER_MS) > 2 * MINUTE_MS:
        st.regs = 0
    regs = st.regs_kwh
    regs.pop(0)
    regs.append(kwh)
    st.regs = min(st.regs + 1, 9)
    if st.regs < 9:
        return 0.0
    return ((regs[8] - regs[4]) - (regs[4] - regs[0])) * 1000.0


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


def lone_elder_inactive(r: Reading, st: LoneElderState, ctx: RuleContext) -> list[Detection] | None:
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
        if _hour_step_wh(st, r.ts, prev_ts, float(total)) >= p.min_step_wh:
            # The last hour used this much more than the hour before: something was switched on and
            # stayed on (lights on a dark morning, a television), which the fridge's cycling never does.
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
            _learn_spell(st, st.last_active, r.ts, p.deep_night_hour)
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
    routine: dict[str, object] = {}
    if learned:
        threshold, basis, routine = routine_threshold(st, since, now, p)
    else:
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
        **routine,
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
