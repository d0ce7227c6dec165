"""`water.continuous_flow`: water drawn in every interval for longer than `min_span_s` (3 h; 2 h for a lone elder).

A household's use pauses many times a day; a tap left running (0.5 L/min and more), a running
cistern or a burst pipe does not (Shenzhen Longgang: use in every half-hour of a day; Nagano: 2 h of continuous
use). Consumption is the difference of the cumulative register between readings, in event
time: a reading at or before the last one carries no new information and is ignored (an
out-of-order or repeated reading); a register that goes down is a reset or a replaced meter
and starts over; a gap longer than `max_gap_s` is a gap, not proof of flow. A running tap or a
leak is steady: the lowest interval of the span must stay above `steady_fraction` of the span's
mean rate, which a household's evening of showers and flushes — water in every interval, but in
bursts — seldom does; a small leak under the day's use still passes. A cleaning morning (one to
two and a half hours of mopping and rinsing) is shorter than the three hours; a lone elder's tap
raises after two (`lone_elder_min_span_s`), at major severity, since it may mean a fall. The
alarm is minor otherwise, and it clears at the first interval with no use.

Some households use water without a pause for hours every day — a hair salon or an eatery run
from the flat, a large family's evening — and a fixed two hours would raise there daily, until
nobody reads the alarm. So each meter remembers, for each of the last `window_days` days, the
longest unbroken span of use that ended by itself, and once `learn_days` days are known a span
is abnormal only past `margin` × the usual longest (the `rank`-th longest day's) + `slack_s`:
a salon's working day is its routine, the tap left running after closing is not. Whatever a
household's routine, a span of `max_span_s` (12 h) always raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rules.detections import detect
from rules.processor import RuleContext
from whistle.domain import AlarmKind, Detection, DetectionAction, Reading, Severity, SubjectType
from whistle.timeutil import local_day


@dataclass(slots=True)
class FlowState:
    last_ts: int = -1
    last_total: float = 0.0
    since: int = -1
    litres: float = 0.0
    intervals: int = 0
    min_rate: float = 0.0  # litres per minute, the lowest of the span's intervals
    raised: bool = False
    # per remembered day (local), the longest span of use that ended by itself, in quarter hours + 1
    days: bytearray = field(default_factory=lambda: bytearray(WINDOW_DAYS))
    last_day: int = -1
    days_seen: int = 0


WINDOW_DAYS = 14
QUARTER_MS = 900_000


def _roll(st: FlowState, ts: int) -> None:
    day = local_day(ts)
    if st.last_day < 0:
        st.last_day = day
    elif day > st.last_day:
        for d in range(st.last_day + 1, min(day, st.last_day + WINDOW_DAYS) + 1):
            st.days[d % WINDOW_DAYS] = 1  # a day seen, with no span yet
        st.days_seen += day - st.last_day
        st.last_day = day


def _remember(st: FlowState, end: int) -> None:
    """A span of use ended by itself: keep it as this day's longest if it is."""
    if st.since < 0:
        return
    i = local_day(end) % WINDOW_DAYS
    st.days[i] = max(st.days[i], min((end - st.since) // QUARTER_MS, 254) + 1)


def usual_span_s(st: FlowState, rank: int) -> float:
    """The `rank`-th longest of the remembered days' longest spans of use, in seconds."""
    longest = sorted((v - 1 for v in st.days if v), reverse=True)
    if not longest:
        return 0.0
    return longest[min(rank, len(longest)) - 1] * 900.0


def _det(r: Reading, st: FlowState, action: DetectionAction, severity: Severity, ev: dict[str, object]) -> Detection:
    return detect(
        r, AlarmKind.WATER_CONTINUOUS_FLOW, severity, action, ev, subject=SubjectType.HOUSEHOLD, source_by_seq=False
    )


def continuous_flow(r: Reading, st: FlowState, ctx: RuleContext) -> list[Detection] | None:
    """Follow the register; raise when use has not paused for `min_span_s`, clear when it does."""
    p = ctx.params.continuous_flow
    total = r.values.get("total_m3")
    if not p.enabled or not isinstance(total, int | float) or r.ts <= st.last_ts:
        return None
    prev_ts, prev_total = st.last_ts, st.last_total
    st.last_ts, st.last_total = r.ts, float(total)
    if prev_ts < 0:
        return None
    _roll(st, r.ts)
    used_l = (total - prev_total) * 1000.0
    gap = r.ts - prev_ts > p.max_gap_s * 1000
    if used_l < 0 or gap or used_l * 60_000 / (r.ts - prev_ts) < p.min_lpm:
        was = st.raised
        if not gap and used_l >= 0:
            # A pause ended it: part of this household's days, even one that raised (with `rank` 2 one
            # leak does not make a routine; a salon's every working day does).
            _remember(st, prev_ts)
        st.since, st.litres, st.raised = -1, 0.0, False
        if was:
            reason = "reset" if used_l < 0 else "gap" if gap else "paused"
            lone = ctx.topology.has_tag(r.household_id, "lone_elder")
            sev = Severity.MAJOR if lone else Severity.MINOR
            return [_det(r, st, DetectionAction.CLEAR, sev, {"reason": reason, "device_id": r.device_id})]
        return None
    rate = used_l * 60_000 / (r.ts - prev_ts)
    if st.since < 0:
        st.since, st.litres, st.intervals, st.min_rate = prev_ts, 0.0, 0, rate
    st.litres += used_l
    st.intervals += 1
    st.min_rate = min(st.min_rate, rate)
    hours_so_far = (r.ts - st.since) / 3_600_000
    mean_rate = st.litres / (hours_so_far * 60) if hours_so_far > 0 else 0.0
    # A tap or a leak flows steadily: its lowest interval stays near the mean. A busy household's
    # evening (showers, flushes, dishes) uses water in every interval too, but in bursts.
    steady = st.min_rate >= p.steady_fraction * mean_rate
    span_s = (r.ts - st.since) / 1000
    lone = ctx.topology.has_tag(r.household_id, "lone_elder")
    least_s = p.lone_elder_min_span_s if lone else p.min_span_s
    threshold_s = least_s
    if st.days_seen >= p.learn_days:
        threshold_s = min(max(least_s, p.margin * usual_span_s(st, p.rank) + p.slack_s), p.max_span_s)
    if not st.raised and (steady or span_s >= p.max_span_s) and span_s >= threshold_s:
        st.raised = True
        hours = (r.ts - st.since) / 3_600_000
        return [
            _det(
                r,
                st,
                DetectionAction.RAISE,
                Severity.MAJOR if lone else Severity.MINOR,
                {
                    "device_id": r.device_id,
                    "since": st.since,
                    "hours": round(hours, 2),
                    "litres": round(st.litres, 1),
                    "litres_per_hour": round(st.litres / hours, 1) if hours > 0 else None,
                    "lone_elder": lone,
                    "lowest_l_per_min": round(st.min_rate, 2),
                    "threshold_hours": round(threshold_s / 3600, 2),
                    "usual_longest_span_hours": round(usual_span_s(st, p.rank) / 3600, 2)
                    if st.days_seen >= p.learn_days
                    else None,
                },
            )
        ]
    return None
