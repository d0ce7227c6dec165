"""Smoke alarm rules.

`smoke_fire` keeps one incident per building: the first detector in alarm raises `smoke.fire`
at once (life safety first: nothing waits for confirmation); each further detector of the
same building while the incident is open raises again, which the alerts side merges into the
same alarm with more evidence (two detectors = confirmed, NFPA 72 practice). When every
detector has cleared, the incident clears; a single detector clearing within
`nuisance_window_ms` (60 s, the panel confirmation window) is marked self-cleared.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from whistle.domain import AlarmKind, Detection, DetectionAction, Reading, Severity, SubjectType

NUISANCE_WINDOW_MS = 60_000


@dataclass(slots=True)
class SmokeIncident:
    """Per-building state: which detectors are in alarm, since when."""

    alarming: dict[str, int] = field(default_factory=dict)
    detectors: list[str] = field(default_factory=list)
    started: int | None = None


def _detection(r: Reading, state: SmokeIncident, action: DetectionAction, **extra: object) -> Detection:
    building = r.building_id or r.device_id
    return Detection(
        kind=AlarmKind.SMOKE_FIRE,
        severity=Severity.CRITICAL,
        subject_type=SubjectType.BUILDING if r.building_id else SubjectType.DEVICE,
        subject_id=building,
        ts=r.ts,
        action=action,
        evidence={
            "detectors": list(state.detectors),
            "detectors_in_alarm": sorted(state.alarming),
            "confirmed": len(state.detectors) >= 2,
            "first_alarm_ts": state.started,
            "trigger": {"device_id": r.device_id, "event": r.values.get("event"), "ts": r.ts},
            **extra,
        },
        household_id=r.household_id,
        building_id=r.building_id,
        grid_id=r.grid_id,
        source_id=f"{r.device_id}:{r.seq if r.seq is not None else r.ts}",
    )


def smoke_fire(r: Reading, state: SmokeIncident, *, nuisance_window_ms: int = NUISANCE_WINDOW_MS) -> list[Detection]:
    """Raise, reinforce or clear the building's fire alarm from one smoke `event` reading."""
    event = r.values.get("event")
    if event == "alarm":
        if r.device_id in state.alarming:
            return []  # the same detector repeating itself adds no evidence
        state.alarming[r.device_id] = r.ts
        if r.device_id not in state.detectors:
            state.detectors.append(r.device_id)
        if state.started is None:
            state.started = r.ts
        return [_detection(r, state, DetectionAction.RAISE)]
    if event == "alarm_clear" and r.device_id in state.alarming:
        del state.alarming[r.device_id]
        if state.alarming:
            return []
        started = state.started if state.started is not None else r.ts
        self_cleared = len(state.detectors) == 1 and r.ts - started <= nuisance_window_ms
        out = [_detection(r, state, DetectionAction.CLEAR, self_cleared=self_cleared, duration_ms=r.ts - started)]
        state.detectors.clear()
        state.started = None
        return out
    return []
