"""Lone-elder inactivity (`household.lone_elder_inactive`): no sign of life for longer than this person's days allow.

For households tagged `lone_elder`, the water and power meters (15-min cumulative registers) are
turned into *signs of life*, one quarter hour at a time:

- a water draw of at least `min_litres` in the interval;
- a *rise* in the interval's mean power (`power_w`, or the register's energy over the interval when
  the meter sends no power) of `min_active_w` above the lowest interval of the two hours before it,
  beyond what the flat's cold appliances make at night (the median over the last nights of the gap
  between the highest and the lowest interval 01:00-05:00, when only a fridge cycles). A kettle, a
  television or the lights switched on are life; a fridge's cycling is not, and neither is a lamp
  left burning after a fall (it raises the floor it is compared with). Until three nights are known
  the power is not read at all.

**Meters that report apart.** Each meter is read on its own (the decisions above need only its
own readings), and its signs of life wait, as bits per quarter hour, until the other meter's
readings reach the same time; only then is the household's quarter judged. So a day of water
uploaded at 03:00 and the same day's power at 08:00 (NB-IoT and a utility's feed, in either order)
give exactly what the readings interleaved in time give. A meter whose readings arrive late
(more than an hour after they were taken: a batch uploader) is waited for up to `max_meter_skew_h`
(30 h: a day's batch and its upload hour); one that streams live, for two hours
(`live_meter_skew_h`); after that the quarter is judged on the other meter alone, and the late
meter's older readings are history. A household whose second meter has never reported is judged
on the one it has once that meter has shown `max_meter_skew_h` of readings.

**The routine** is the merged signs of life of the last 14 days, kept as one bit per quarter hour
(15 × 96 bits, 180 bytes). When the household has been quiet since `s`, the rule asks each
remembered day *d* how long this person stayed quiet from the same time of day then: the quiet
from `day_reach_h` (1 h) later on that day, to its next sign of life, counted from `s`'s time of
day (so a routine that runs an hour late still counts). Of those days, the `day_rank`-th longest
(2: one odd day does not set the routine) is the *usual* quiet from this time of day. Days whose
quiet from here lasted more than `learn_max_h` (16 h: a trip, an incident) or fell in a declared
absence do not count. The quiet is abnormal once it lasts

    margin × usual + slack_h             (a quiet of the day)
    usual + morning_slack_h              (a quiet whose usual span holds `deep_night_hour`, 03:00: a night)

and never less than `min_quiet_h` nor more than `fixed_quiet_h` (12 h, the fixed rule's window:
the alert never comes later than the fixed rule counted from the last sign of life). A night is
judged by how late this person is usually up (an additive slack: waking varies by the hour, not in
proportion to the night); a day by how long their quiet from that hour usually lasts, with a margin
in proportion. So a person whose every afternoon holds five quiet hours is checked on after about
eight (1.2 × 5 + 2); one who is never quiet for more than two, after four and a half; an elder up by
07:00 every day, at 08:00 (the night's usual end + 1 h). With fewer than `min_days` days learned (or
compared), the fixed rule's twelve hours are the rule.

`backstop_fixed_rule` (off by default) additionally raises whenever the fixed rule itself would
(water under `fixed_litres` in the last 12 hours, nothing in the last hour), its false alarms with it.

**Why these numbers** (the tuning harness, scripts/tune_models.py — not the figures of record, which
come from the front door, docs/EVALUATION.md): the table in docs/RULES.md ("Lone elder: the trade-off")
has the measured curve on both behaviour sources. In short: on the project's simulator the shipped
point finds every incident with a median delay of about 5.5 h at about 1 false alert per 100
elder-days; on the CREST source the elders' quiet is far longer and more irregular (daytime spells of
over 5 h on a third of the days, and stretches of 15-24 h at home with nothing but the fridge that
the source does not label as incidents), so no setting reaches the targets there; the shipped point
beats the fixed rule (< 10 L in 12 h) on both delay and false alerts on every source and seed.

A declared absence (`POST /api/v1/households/{id}/absences`) suppresses alerts inside it, and the
quiet counts from its end. The alarm clears at the next sign of life. The evidence gives the quiet,
the threshold and the routine behind it in hours and local times. More than `max_daily_m3` (2 m³)
in a day in such a household raises `water.continuous_flow` at major severity (Jing'an's rule),
once per day.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

from rules.config import LoneElderParams
from rules.detections import detect
from rules.processor import RuleContext
from rules.topology import Topology
from whistle.domain import AlarmKind, Detection, DetectionAction, DeviceType, Reading, Severity, SubjectType
from whistle.timeutil import DAY_MS, HOUR_MS, LOCAL_OFFSET_MS, MINUTE_MS, local_day

QUARTER_MS = 900_000
QPD = 96  # quarter hours a day
QPH = 4
TAG = "lone_elder"
WINDOW_DAYS = 14
HIST = (WINDOW_DAYS + 1) * QPD  # quarter hours of merged signs of life remembered
HIST_MASK = (1 << HIST) - 1
NIGHTS = 7
NIGHT_END_HOUR = 6  # the cold appliances are learned from 00:00-06:00, when only they run
FLOOR_QUARTERS = 8  # a rise is measured against the lowest interval of the last two hours
LATE_MS = HOUR_MS  # a reading that arrives this much after it was taken comes from a batch uploader ...
BATCH_MEMORY_MS = 2 * DAY_MS  # ... and so do the readings of the next two days (a batch ends with fresh ones)
RING_HOURS = 48  # the water of the last hours, for the evidence (the fixed rule's 12 h) and the backstop
# A threshold in hours, the part of the routine it came from, and the numbers behind it.
Verdict = tuple[float, str, dict[str, object]]


def is_lone_elder(r: Reading, topology: Topology) -> bool:
    """Only households tagged `lone_elder` keep this rule's state."""
    return topology.has_tag(r.household_id, TAG)


@dataclass(slots=True)
class LoneElderState:
    # --- each meter on its own -------------------------------------------------------------------------
    w_ts: int = -1
    w_total: float = 0.0
    w_q: int = -1  # the quarter hour the water meter's readings reach
    w_late_at: int = -1  # the last of its readings that arrived more than an hour after it was taken
    w_bits: int = 0  # its signs of life after `frontier`: bit k is quarter frontier + 1 + k
    p_ts: int = -1
    p_total: float = 0.0
    p_q: int = -1
    p_late_at: int = -1
    p_bits: int = 0
    first_q: int = -1  # the first quarter hour either meter reported
    # power: the interval power of the last readings (W, for the floor) and each night's highest and lowest
    p_recent: array[int] = field(default_factory=lambda: array("H", bytes(2 * FLOOR_QUARTERS)))
    p_recent_n: int = 0
    p_hour_up: bool = False  # the last hour was already above the one before
    night_hi: array[int] = field(default_factory=lambda: array("H", bytes(2 * NIGHTS)))
    night_lo: array[int] = field(default_factory=lambda: array("H", bytes(2 * NIGHTS)))
    night_hhi: array[int] = field(default_factory=lambda: array("H", bytes(2 * NIGHTS)))  # and of hourly means
    night_hlo: array[int] = field(default_factory=lambda: array("H", bytes(2 * NIGHTS)))
    night_day: int = -1
    # water: litres per hour of the last RING_HOURS hours (decilitres), and today's volume
    water_dl: array[int] = field(default_factory=lambda: array("H", bytes(2 * RING_HOURS)))
    water_hour: int = -1
    day: int = -1
    day_litres: float = 0.0
    day_raised: bool = False
    # --- the household, judged up to `frontier` ------------------------------------------------------
    frontier: int = -1  # the last quarter hour judged
    hist: int = 0  # merged signs of life: bit k is quarter frontier - k
    last_active: int = -1  # quarter hours
    last_water: int = -1
    last_power: int = -1
    raised: bool = False
    raised_at: int = -1  # ms
    routine: Routine | None = None  # what the routine allows the current quiet (worked out once per quiet)


def _quarter(ts: int) -> int:
    """The quarter hour a reading belongs to (meters read on the quarter, give or take a few minutes)."""
    return (ts + QUARTER_MS // 2) // QUARTER_MS


def _ms(q: int) -> int:
    return q * QUARTER_MS


def _minute(ts: int) -> int:
    """Minutes after local midnight."""
    return (ts + LOCAL_OFFSET_MS) % DAY_MS // MINUTE_MS


def _clock(ts: int) -> str:
    m = _minute(ts)
    return f"{m // 60:02d}:{m % 60:02d}"


# --- each meter ------------------------------------------------------------------------------------------


def _water(r: Reading, st: LoneElderState, p: LoneElderParams, out: list[Detection]) -> int | None:
    """Take a water reading; returns its quarter hour, or None if it carries nothing new."""
    total = r.values.get("total_m3")
    if not isinstance(total, int | float) or r.ts <= st.w_ts:
        return None
    prev_ts, prev = st.w_ts, st.w_total
    st.w_ts, st.w_total = r.ts, float(total)
    if r.received_at - r.ts > LATE_MS:
        st.w_late_at = r.ts
    q = _quarter(r.ts)
    if prev_ts < 0 or total < prev:
        return q  # the first reading, or a reset meter: no volume yet
    litres = (total - prev) * 1000.0
    _ring(st, r.ts, litres)
    if litres >= p.min_litres:
        _mark(st, q, water=True)
    day = local_day(r.ts)
    if day != st.day:
        st.day, st.day_litres, st.day_raised = day, 0.0, False
    st.day_litres += litres
    if st.day_litres > p.max_daily_m3 * 1000 and not st.day_raised:
        st.day_raised = True
        ev: dict[str, object] = {
            "reason": "daily_volume",
            "m3_today": round(st.day_litres / 1000, 2),
            "limit_m3": p.max_daily_m3,
        }
        out.append(
            detect(
                r,
                AlarmKind.WATER_CONTINUOUS_FLOW,
                Severity.MAJOR,
                DetectionAction.RAISE,
                ev,
                subject=SubjectType.HOUSEHOLD,
                source_by_seq=False,
            )
        )
    return q


def _ring(st: LoneElderState, ts: int, litres: float) -> None:
    hour = ts // HOUR_MS
    if st.water_hour < 0:
        st.water_hour = hour
    if hour > st.water_hour:
        for k in range(st.water_hour + 1, min(hour, st.water_hour + RING_HOURS) + 1):
            st.water_dl[k % RING_HOURS] = 0
        st.water_hour = hour
    if hour > st.water_hour - RING_HOURS:
        i = hour % RING_HOURS
        st.water_dl[i] = min(65535, st.water_dl[i] + round(litres * 10))


def water_between(st: LoneElderState, lo_ms: int, hi_ms: int) -> float | None:
    """Litres drawn in the whole hours of (lo, hi], if the ring still holds them."""
    first, last = lo_ms // HOUR_MS + 1, (hi_ms - 1) // HOUR_MS
    if st.water_hour < 0 or last - first >= RING_HOURS or first <= st.water_hour - RING_HOURS:
        return None
    return sum(st.water_dl[h % RING_HOURS] for h in range(first, min(last, st.water_hour) + 1)) / 10


def _power(r: Reading, st: LoneElderState, p: LoneElderParams) -> int | None:
    """Take a power reading; returns its quarter hour, or None if it carries nothing new."""
    total = r.values.get("total_kwh")
    if not isinstance(total, int | float) or r.ts <= st.p_ts:
        return None
    prev_ts, prev = st.p_ts, st.p_total
    st.p_ts, st.p_total = r.ts, float(total)
    if r.received_at - r.ts > LATE_MS:
        st.p_late_at = r.ts
    q = _quarter(r.ts)
    watts: float | None = None
    w = r.values.get("power_w")
    if isinstance(w, int | float):
        watts = float(w)
    elif prev_ts >= 0 and total >= prev and r.ts - prev_ts <= 2 * QUARTER_MS:
        watts = (total - prev) * 1000.0 * HOUR_MS / (r.ts - prev_ts)
    if watts is None:
        st.p_recent_n = 0  # a gap: the floor starts over
        return q
    quiet = _night_quiet(st)
    recent = st.p_recent
    if quiet is not None and st.p_recent_n >= FLOOR_QUARTERS // 2:
        step = quiet + p.min_active_w
        if watts - min(recent[: st.p_recent_n]) >= step and watts - recent[st.p_recent_n - 1] >= step / 2:
            # switched on: above the last two hours' lowest beyond the fridge's cycling, and up from the last
            # interval (a load that stays on is a sign once, not for two hours)
            _mark(st, q, water=False)
    if st.p_recent_n == FLOOR_QUARTERS:
        recent.pop(0)
        recent.append(0)
        st.p_recent_n -= 1
    recent[st.p_recent_n] = min(65535, max(0, round(watts)))
    st.p_recent_n += 1
    hour_mean = -1.0
    if st.p_recent_n == FLOOR_QUARTERS:
        hour_mean = sum(recent[4:]) / 4
        hour_quiet = _night_hour_quiet(st)
        up = hour_quiet is not None and hour_mean - sum(recent[:4]) / 4 >= max(p.min_step_w, 1.5 * hour_quiet)
        if up and not st.p_hour_up:
            _mark(st, q, water=False)  # this hour drew more than the one before: lights on, a television (once)
        st.p_hour_up = up
    hour = _minute(r.ts - 1) // 60  # the interval ending at 01:15 lies in the hour from 01:00
    if hour < NIGHT_END_HOUR:
        day = local_day(r.ts)
        i = day % NIGHTS
        v = min(65534, max(0, round(watts))) + 1
        h = min(65534, max(0, round(hour_mean))) + 1 if hour_mean >= 0 else 0
        if st.night_day != day:
            st.night_day = day
            st.night_hi[i], st.night_lo[i] = v, v
            st.night_hhi[i], st.night_hlo[i] = h, h
        else:
            st.night_hi[i], st.night_lo[i] = max(st.night_hi[i], v), min(st.night_lo[i], v)
            if h:
                st.night_hhi[i] = max(st.night_hhi[i], h)
                st.night_hlo[i] = min(st.night_hlo[i], h) if st.night_hlo[i] else h
    return q


def _night_quiet(st: LoneElderState) -> float | None:
    """How much the flat's power moves when everyone sleeps (the fridge and freezer cycling): the widest span
    between the highest and the lowest interval of the last nights 00:00-06:00; None before three nights."""
    spans = [hi - lo for hi, lo in zip(st.night_hi, st.night_lo, strict=True) if hi and lo]
    return float(max(spans)) if len(spans) >= 3 else None


def _night_hour_quiet(st: LoneElderState) -> float | None:
    """How much the hourly mean moves when everyone sleeps: the second widest span of the last nights'
    hourly means 00:00-06:00 (a night's bathroom light does not set it); None before three nights."""
    spans = sorted((hi - lo for hi, lo in zip(st.night_hhi, st.night_hlo, strict=True) if hi and lo), reverse=True)
    return float(spans[0]) if len(spans) >= 3 else None


def _mark(st: LoneElderState, q: int, *, water: bool) -> None:
    """A sign of life in quarter `q`, waiting for the frontier (history if the frontier has passed it).

    Before the first quarter is judged the bits count from `first_q`."""
    k = q - st.frontier - 1 if st.frontier >= 0 else q - st.first_q
    if k < 0:
        return  # judged already (on the other meter alone): history
    if water:
        st.w_bits |= 1 << k
    else:
        st.p_bits |= 1 << k


# --- the household -----------------------------------------------------------------------------------------


def _first(st: LoneElderState, q: int) -> None:
    """Before anything is judged, the first quarter hour either meter reported (bits waiting count from it)."""
    if st.frontier >= 0:
        return
    if st.first_q < 0:
        st.first_q = q
    elif q < st.first_q:
        shift = st.first_q - q
        st.w_bits <<= shift
        st.p_bits <<= shift
        st.first_q = q


def _target(st: LoneElderState, p: LoneElderParams) -> int:
    """How far the household can be judged: as far as both meters reach, or the one when the other is too
    far behind (see the module notes); -1: not yet."""
    batch = round(p.max_meter_skew_h * QPH)
    if st.w_q < 0 or st.p_q < 0:
        ahead = max(st.w_q, st.p_q)
        if ahead < 0:
            return -1
        return ahead if ahead - st.first_q >= batch else -1  # the other meter has never reported
    hi, lo = max(st.w_q, st.p_q), min(st.w_q, st.p_q)
    late_at, ts = (st.w_late_at, st.w_ts) if st.w_q < st.p_q else (st.p_late_at, st.p_ts)
    late = late_at >= 0 and ts - late_at <= BATCH_MEMORY_MS
    allowed = batch if late else round(p.live_meter_skew_h * QPH)
    return max(lo, hi - allowed)


def lone_elder_inactive(r: Reading, st: LoneElderState, ctx: RuleContext) -> list[Detection] | None:
    """Follow a lone elder's household meters; raise when the quiet outlasts the routine, clear on activity."""
    p = ctx.params.lone_elder
    if not p.enabled:
        return None
    out: list[Detection] = []
    if r.device_type is DeviceType.WATER:
        if isinstance(r.values.get("total_m3"), int | float):
            _first(st, _quarter(r.ts))
        q = _water(r, st, p, out)
        if q is None:
            return out or None
        st.w_q = max(st.w_q, q)
    elif r.device_type is DeviceType.POWER:
        if isinstance(r.values.get("total_kwh"), int | float):
            _first(st, _quarter(r.ts))
        q = _power(r, st, p)
        if q is None:
            return None
        st.p_q = max(st.p_q, q)
    else:
        return None
    target = _target(st, p)
    if st.frontier < 0 and target >= 0:
        st.frontier = st.first_q - 1  # pending bits were kept from first_q: bit 0 is quarter first_q
    if target > st.frontier:
        _advance(r, st, ctx, p, target, out)
    return out or None


def _advance(
    r: Reading, st: LoneElderState, ctx: RuleContext, p: LoneElderParams, target: int, out: list[Detection]
) -> None:
    """Judge the quarter hours after the frontier up to `target`, in time order."""
    steps = target - st.frontier
    if steps > HIST:  # a long gap in both meters: nothing to judge in it, start the walk near its end
        skip = steps - HIST
        st.w_bits >>= skip
        st.p_bits >>= skip
        st.hist = (st.hist << skip) & HIST_MASK
        st.frontier += skip
    hid = r.household_id or ""
    while st.frontier < target:
        q = st.frontier + 1
        water, power = st.w_bits & 1, st.p_bits & 1
        st.w_bits >>= 1
        st.p_bits >>= 1
        active = water | power
        st.hist = ((st.hist << 1) | active) & HIST_MASK
        st.frontier = q
        if active:
            st.last_active = q
            st.routine = None
            if water:
                st.last_water = q
            if power:
                st.last_power = q
            if st.raised:
                st.raised = False
                ev: dict[str, object] = {
                    "reason": "water" if water else "power",
                    "quiet_hours": round((_ms(q) - st.raised_at) / HOUR_MS, 2),
                }
                out.append(_detection(r, hid, DetectionAction.CLEAR, _ms(q), ev))
            continue
        if not st.raised:
            got = _judge(r, st, ctx, p, q, hid)
            if got is not None:
                out.append(got)


def _detection(r: Reading, hid: str, action: DetectionAction, ts: int, ev: dict[str, object]) -> Detection:
    """The household's detection; its id depends on the household and the quarter, not on which meter's
    reading let the quarter be judged (the two meters may arrive in either order)."""
    return Detection(
        kind=AlarmKind.LONE_ELDER_INACTIVE,
        severity=Severity.MAJOR,
        subject_type=SubjectType.HOUSEHOLD,
        subject_id=hid or r.device_id,
        ts=ts,
        action=action,
        evidence=ev,
        household_id=r.household_id,
        building_id=r.building_id,
        grid_id=r.grid_id,
        source_id=f"{hid or r.device_id}:{ts}",
    )


def _judge(r: Reading, st: LoneElderState, ctx: RuleContext, p: LoneElderParams, q: int, hid: str) -> Detection | None:
    """Whether the quiet at quarter `q` is past this person's routine: a raise, or None."""
    since_q = st.last_active if st.last_active >= 0 else st.first_q
    quiet_q = q - since_q
    shortest = min(p.min_quiet_h, 1.0) if p.backstop_fixed_rule else p.min_quiet_h
    if quiet_q < shortest * QPH:
        return None  # shorter than any threshold can be: most quarters end here
    now = _ms(q)
    since = _ms(since_q)
    if ctx.topology.absent(hid, now) is not None:
        return None
    back = ctx.topology.returned_since(hid, since, now)
    if back is not None:
        since = back
    quiet_h = (now - since) / HOUR_MS
    days = (q - st.first_q) // QPD
    evidence_of_routine: dict[str, object] = {}
    if days >= p.min_days:
        if st.routine is None or st.routine.since != since:
            st.routine = routine(st, ctx.topology, hid, since, q, p)
        threshold, basis, evidence_of_routine = st.routine.verdict(now)
    else:
        threshold, basis = p.fixed_quiet_h, "fixed_rule"
    water12 = water_between(st, now - 12 * HOUR_MS, now) if now - _ms(st.first_q) >= 12 * HOUR_MS else None
    fixed = p.backstop_fixed_rule and water12 is not None and water12 < p.fixed_litres and quiet_h >= 1.0
    if quiet_h < threshold and not fixed:
        return None
    if quiet_h < threshold:
        basis = "fixed_rule_backstop"
    st.raised, st.raised_at, st.routine = True, since, None
    evidence: dict[str, object] = {
        "quiet_since": since,
        "quiet_since_local": _clock(since),
        "quiet_hours": round(quiet_h, 2),
        "threshold_hours": round(threshold, 2),
        "basis": basis,
        "local_time": _clock(now),
        **evidence_of_routine,
        "days_of_routine": min(days, WINDOW_DAYS),
        "last_water_draw": _ms(st.last_water) if st.last_water >= 0 else None,
        "last_power_activity": _ms(st.last_power) if st.last_power >= 0 else None,
        "water_last_12h_litres": None if water12 is None else round(water12, 1),
    }
    if back is not None:
        evidence["returned_from_declared_absence"] = back
    evidence["why"] = _why(since, now, quiet_h, threshold, basis, evidence_of_routine, water12)
    return _detection(r, hid, DetectionAction.RAISE, now, evidence)


def _why(
    since: int,
    now: int,
    quiet_h: float,
    threshold: float,
    basis: str,
    routine: dict[str, object],
    water12: float | None,
) -> str:
    """The alert in words a grid worker can read: the quiet, and what this person's days say about it."""
    out = f"no water drawn and nothing switched on since {_clock(since)} ({quiet_h:.1f} h, now {_clock(now)})"
    if basis == "routine_night":
        out += (
            f"; on the last {routine.get('nights_known')} nights this person was up by"
            f" {routine.get('usual_latest_first_activity')} at the latest"
        )
    elif basis == "routine_day":
        out += (
            f"; on the last {routine.get('days_compared')} days the longest quiet begun around this time was"
            f" usually {routine.get('usual_longest_quiet_from_this_time_hours')} h"
        )
    else:
        out += "; the routine is not learned yet: the fixed 12-hour rule"
    out += f"; alert after {threshold:.1f} h"
    if water12 is not None:
        out += f"; {water12:.0f} L of water in the last 12 h"
    return out


def _next_active(st: LoneElderState, q: int, after: int) -> int | None:
    """The first quarter after `after` with a sign of life, up to the frontier `q`; None if none."""
    n = q - after
    if n <= 0:
        return None
    bits = st.hist & ((1 << n) - 1)  # quarters after+1 .. q
    return None if bits == 0 else q - (bits.bit_length() - 1)


def quiet_from_this_time(
    st: LoneElderState, topology: Topology, hid: str, since: int, q: int, p: LoneElderParams
) -> list[float]:
    """For each remembered day that counts, the longest quiet (hours) this person began within `day_reach_h`
    of `since`'s time of day, longest first."""
    s = since // QUARTER_MS
    reach = round(p.day_reach_h * QPH)
    limit = p.learn_max_h * QPH
    absences = topology.absences.get(hid, ())
    deep = (p.deep_night_hour * QPH - LOCAL_OFFSET_MS // QUARTER_MS) % QPD  # quarter of the day (UTC) of the deep night
    out: list[float] = []
    for d in range(1, WINDOW_DAYS + 1):
        u = s - d * QPD
        lo, hi = u - reach, min(u + reach, s - 1)
        if lo <= q - HIST or lo < st.first_q:
            continue
        # the quiet going on at this time of day, and those begun near it
        first = _next_active(st, q, u)
        if first is None or first >= s:
            continue  # quiet ever since: today's spell, not a remembered one
        longest, known = 0, False
        if _counts(u, first, limit, absences, deep):
            longest, known = first - u, True
        a = _next_active(st, q, lo - 1)
        while a is not None and a <= hi:
            nxt = _next_active(st, q, a)
            if nxt is None or nxt >= s:
                break  # quiet ever since: today's spell, not a remembered one
            if _counts(a, nxt, limit, absences, deep):
                longest, known = max(longest, nxt - a), True
            a = nxt
        if known:
            out.append(longest / QPH)
    out.sort(reverse=True)
    return out


def _counts(start: int, end: int, limit: float, absences: Sequence[tuple[int, int]], deep: int) -> bool:
    """Whether a remembered quiet (start, end] is a day's: not a night (holding the deep-night hour), not longer
    than any routine, not in a declared absence."""
    if end - start > limit:
        return False
    first_deep = start + 1 + (deep - (start + 1)) % QPD
    if first_deep <= end:
        return False  # a night: the night's part of the routine
    return not any(x < _ms(end) and y > _ms(start) for x, y in absences)


def _prev_active(st: LoneElderState, q: int, at: int) -> int | None:
    """The last quarter at or before `at` with a sign of life, within the history; None if none."""
    n = q - at
    if n < 0 or n >= HIST:
        return None
    bits = st.hist >> n
    return None if bits == 0 else at - ((bits & -bits).bit_length() - 1)


def _active(st: LoneElderState, q: int, at: int) -> bool:
    n = q - at
    return 0 <= n < HIST and bool((st.hist >> n) & 1)


def night_of(st: LoneElderState, q: int, mid: int) -> tuple[int, int] | None:
    """The night that ended on the morning whose local midnight is quarter `mid`: (bedtime, waking) in quarter
    hours after that midnight (bedtime negative: the evening before), or None if the history does not show one.

    Waking is the first sign of life from 05:00; bedtime the start of the quiet that held 03:00, where a
    visit to the bathroom in the night (at most half an hour of activity after an hour's quiet, from 22:00)
    does not end the night."""
    m3, m5, noon, evening = mid + 12, mid + 20, mid + 48, mid - 24
    if noon > q or evening <= q - HIST or evening < st.first_q:
        return None
    wake = _next_active(st, q, m5 - 1)
    if wake is None or wake >= noon:
        return None
    at = m3
    for _ in range(8):
        last = _prev_active(st, q, at)
        if last is None or last < evening:
            return None  # quiet since before 18:00: no bedtime to learn
        first = last
        while first > last - 2 and _active(st, q, first - 1):
            first -= 1
        before = _prev_active(st, q, first - 1)
        visit = last - first < 2 and first >= mid - 8 and (before is None or first - before > QPH)
        if not visit:
            return last + 1 - mid, wake - mid
        at = first - 1
    return None


def nights_learned(st: LoneElderState) -> list[tuple[int, int]]:
    """The remembered nights as (bedtime, waking) in minutes from their midnight (bedtime negative: the evening
    before), most recent first: what the night part of the routine is read from."""
    if st.frontier < 0:
        return []
    return [(b * 15, w * 15) for b, w in _nights(st, st.frontier, st.frontier)]


def _nights(st: LoneElderState, q: int, before: int) -> list[tuple[int, int]]:
    """The remembered nights whose morning's noon is at or before quarter `before`."""
    noon_day = (_ms(before) + LOCAL_OFFSET_MS) // DAY_MS
    mid = noon_day * QPD - LOCAL_OFFSET_MS // QUARTER_MS
    if mid + 48 > before:
        mid -= QPD
    out = []
    for j in range(WINDOW_DAYS):
        got = night_of(st, q, mid - j * QPD)
        if got is not None:
            out.append(got)
    return out


@dataclass(frozen=True, slots=True)
class Routine:
    """What the routine allows a quiet begun at `since`: by day, and (when this person's nights say the quiet
    may be one) by night, with the numbers behind each."""

    since: int
    day_h: float
    night_h: float | None  # None: no night is known that this quiet could be
    night_now: bool  # the quiet began in the evening or the small hours: a night from the start
    up_early: bool  # it began in the small hours: the later of the two thresholds
    deep_night: int  # ms: the deep-night hour after `since` (a quiet holding it is a night)
    basis: str
    evidence: dict[str, object]

    def verdict(self, now: int) -> Verdict:
        if self.night_h is not None and (self.night_now or now >= self.deep_night):
            if self.up_early and self.day_h > self.night_h:
                return self.day_h, "routine_day", self.evidence
            return self.night_h, "routine_night", self.evidence
        return self.day_h, self.basis, self.evidence


def routine(st: LoneElderState, topology: Topology, hid: str, since: int, q: int, p: LoneElderParams) -> Routine:
    """How long this person may be quiet from `since`, by the routine of the remembered days."""
    spans = quiet_from_this_time(st, topology, hid, since, q, p)
    deep = _next_hour(since, p.deep_night_hour)
    evidence: dict[str, object] = {"days_compared": len(spans)}
    day: float | None = None
    if len(spans) >= p.min_days:
        usual = spans[min(p.day_rank, len(spans)) - 1]
        day = min(max(p.min_quiet_h, p.margin * usual + p.slack_h), p.fixed_quiet_h)
        evidence["usual_longest_quiet_from_this_time_hours"] = round(usual, 2)
        evidence["longest_quiet_from_this_time_hours"] = round(spans[0], 2)
    nights = _nights(st, q, since // QUARTER_MS)
    fixed = p.fixed_quiet_h
    if len(nights) < p.min_nights:
        if day is None:
            return Routine(since, fixed, None, False, False, deep, "fixed_rule", evidence)
        return Routine(since, day, None, False, False, deep, "routine_day", evidence)
    beds = sorted(b for b, _ in nights)
    wakes = sorted((w for _, w in nights), reverse=True)
    bed = beds[min(p.night_rank, len(beds)) - 1]
    wake = wakes[min(p.night_rank, len(wakes)) - 1]
    s_min = _minute(since)
    rel = s_min - 1440 if s_min >= 720 else s_min  # minutes from the night's midnight
    evening = bed * 15 - p.bed_slack_h * 60 <= rel < p.deep_night_hour * 60
    up_early = 0 <= rel < wake * 15 and not evening
    midnight = since - rel * MINUTE_MS
    deadline = midnight + int((wake * 15 + p.morning_slack_h * 60) * MINUTE_MS)
    if deadline <= since:
        deadline += DAY_MS
    night = min(max(p.min_quiet_h, (deadline - since) / HOUR_MS), fixed)
    evidence.update(
        {
            "nights_known": len(nights),
            "usual_earliest_bedtime": _clock(midnight + bed * QUARTER_MS),
            "usual_latest_first_activity": _clock(midnight + wake * QUARTER_MS),
        }
    )
    if day is None:  # no day's quiet begins around here: only nights do (the small hours)
        return Routine(since, fixed, night, True, False, deep, "fixed_rule", evidence)
    return Routine(since, day, night, evening or up_early, up_early, deep, "routine_day", evidence)


def _next_hour(ts: int, hour: int) -> int:
    """The first local `hour` o'clock after `ts`."""
    day_start = (ts + LOCAL_OFFSET_MS) // DAY_MS * DAY_MS - LOCAL_OFFSET_MS
    mark = day_start + hour * HOUR_MS
    return mark + DAY_MS if mark <= ts else mark
