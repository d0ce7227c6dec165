"""Elevator rules (GB/T 24476-style events, DOMAIN.md "Elevators").

Per elevator: `trapped` raises `elevator.trapped` (critical) at once; the fault events raise
`elevator.fault` (major) with the event, its code and floor; `repeat_count` faults within
`repeat_window_h` mark the fault as repeated — an elevator that keeps faulting needs its
maintainer even when each fault recovers, so a repeated fault is not cleared by `recovered`.
`recovered` clears a trapping and a non-repeated fault. `ebike_detected` raises
`elevator.ebike` (warning). Events older than the elevator's last event change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rules.detections import detect
from rules.processor import RuleContext
from whistle.domain import AlarmKind, Detection, DetectionAction, Reading, Severity
from whistle.protocol import ELEVATOR_FAULT_EVENTS


@dataclass(slots=True)
class ElevatorState:
    trapped: bool = False
    fault_open: bool = False
    faults: list[int] = field(default_factory=list)
    last_ts: int = -1


def _det(r: Reading, kind: AlarmKind, severity: Severity, action: DetectionAction, ev: dict[str, object]) -> Detection:
    return detect(r, kind, severity, action, ev)


def elevator_events(r: Reading, st: ElevatorState, ctx: RuleContext) -> list[Detection] | None:
    """`elevator.trapped`, `elevator.fault` and `elevator.ebike` from one elevator event."""
    p = ctx.params.elevator
    event = r.values.get("event")
    if not p.enabled or not isinstance(event, str) or r.ts < st.last_ts:
        return None
    st.last_ts = r.ts
    where = {"event": event, "code": r.values.get("code"), "floor": r.values.get("floor"), "ts": r.ts}
    if event == "trapped":
        if st.trapped:
            return None
        st.trapped = True
        return [_det(r, AlarmKind.ELEVATOR_TRAPPED, Severity.CRITICAL, DetectionAction.RAISE, where)]
    if event in ELEVATOR_FAULT_EVENTS:
        horizon = r.ts - int(p.repeat_window_h * 3_600_000)
        st.faults = [t for t in st.faults if t > horizon]
        st.faults.append(r.ts)
        st.fault_open = True
        n = len(st.faults)
        ev = {**where, "faults_in_window": n, "window_h": p.repeat_window_h, "repeated": n >= p.repeat_count}
        return [_det(r, AlarmKind.ELEVATOR_FAULT, Severity.MAJOR, DetectionAction.RAISE, ev)]
    if event == "recovered":
        out: list[Detection] = []
        if st.trapped:
            st.trapped = False
            out.append(_det(r, AlarmKind.ELEVATOR_TRAPPED, Severity.CRITICAL, DetectionAction.CLEAR, where))
        horizon = r.ts - int(p.repeat_window_h * 3_600_000)
        repeated = sum(1 for t in st.faults if t > horizon) >= p.repeat_count
        if st.fault_open and not repeated:
            st.fault_open = False
            out.append(_det(r, AlarmKind.ELEVATOR_FAULT, Severity.MAJOR, DetectionAction.CLEAR, where))
        return out
    if event == "ebike_detected":
        return [_det(r, AlarmKind.ELEVATOR_EBIKE, Severity.WARNING, DetectionAction.RAISE, where)]
    return None
