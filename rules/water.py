"""`water.continuous_flow`: water drawn in every interval for longer than `min_span_s`.

A household's use pauses many times a day; a tap left running (0.5 L/min and more), a running
cistern or a burst pipe does not (Shenzhen Longgang: use in every half-hour of a day; Nagano: 2 h of continuous
use). Consumption is the difference of the cumulative register between readings, in event
time: a reading at or before the last one carries no new information and is ignored (an
out-of-order or repeated reading); a register that goes down is a reset or a replaced meter
and starts over; a gap longer than `max_gap_s` is a gap, not proof of flow. A running tap or a
leak is steady: the lowest interval of the span must stay above `steady_fraction` of the span's
mean rate, which a busy household's evening of showers and flushes — water in every interval,
but in bursts — does not. The alarm is
major for a `lone_elder` household (a running tap may mean a fall), minor otherwise, and it
clears at the first interval with no use.
"""

from __future__ import annotations

from dataclasses import dataclass

from rules.detections import detect
from rules.processor import Ctx
from whistle.domain import AlarmKind, Detection, DetectionAction, Reading, Severity, SubjectType


@dataclass(slots=True)
class FlowState:
    last_ts: int = -1
    last_total: float = 0.0
    since: int = -1
    litres: float = 0.0
    intervals: int = 0
    min_rate: float = 0.0  # litres per minute, the lowest of the span's intervals
    raised: bool = False


def _det(r: Reading, st: FlowState, action: DetectionAction, severity: Severity, ev: dict[str, object]) -> Detection:
    return detect(
        r, AlarmKind.WATER_CONTINUOUS_FLOW, severity, action, ev, subject=SubjectType.HOUSEHOLD, source_by_seq=False
    )


def continuous_flow(r: Reading, st: FlowState, ctx: Ctx) -> list[Detection] | None:
    """Follow the register; raise when use has not paused for `min_span_s`, clear when it does."""
    p = ctx.params.continuous_flow
    total = r.values.get("total_m3")
    if not p.enabled or not isinstance(total, int | float) or r.ts <= st.last_ts:
        return None
    prev_ts, prev_total = st.last_ts, st.last_total
    st.last_ts, st.last_total = r.ts, float(total)
    if prev_ts < 0:
        return None
    used_l = (total - prev_total) * 1000.0
    gap = r.ts - prev_ts > p.max_gap_s * 1000
    if used_l < 0 or gap or used_l * 60_000 / (r.ts - prev_ts) < p.min_lpm:
        was = st.raised
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
    if not st.raised and steady and r.ts - st.since >= p.min_span_s * 1000:
        st.raised = True
        lone = ctx.topology.has_tag(r.household_id, "lone_elder")
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
                },
            )
        ]
    return None
