"""Smoke alarm rules (DOMAIN.md, "Smoke alarms").

`smoke_fire` keeps one incident per building. Life safety first: the first detector in alarm
raises `smoke.fire` at once, nothing waits for confirmation. Each further detector of the
building while the incident is open raises again, which the alerts side merges into the same
alarm with more evidence; a second detector within `confirm_window_s` of the first marks it
confirmed (two detectors within a window confirm a fire, NFPA 72 practice). When every
detector has cleared the incident clears; a lone detector clearing within
`nuisance_window_s` (60 s, the panels' confirmation window) marks it self-cleared, the
signature of cooking fumes or shower steam. A detector with `nuisance_repeat_count`
self-cleared alarms within `nuisance_repeat_days` raises a maintenance alarm (`smoke.fault`
with reason `repeated_nuisance`): move it away from the kitchen or the bathroom door.

A detector's `alarm` that arrives after its own later `alarm_clear` — through two collectors of a
shared subscription, the one carrying the alarm a few seconds behind — is not history: the fire
happened. The clear is kept when it comes first, and the late alarm raises the fire and clears it
at the clear's time, the alarms one process in order raises (before, the split deployment dropped
such a fire as history: bench_scaleout, docs/BENCHMARKS.md).

`smoke_device` turns device reports into `smoke.fault`, `smoke.tamper` and
`smoke.low_battery`; `smoke_battery` watches the `battery_pct` of status heartbeats with
hysteresis. Events older than the detector's last event are history and change nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from rules.detections import detect
from rules.processor import RuleContext
from whistle.domain import AlarmKind, Detection, DetectionAction, Reading, Severity, SubjectType
from whistle.timeutil import DAY_MS


@dataclass(slots=True)
class SmokeIncident:
    """Per-building state: which detectors are in alarm, since when, and their nuisance history."""

    alarming: dict[str, int] = field(default_factory=dict)
    detectors: list[str] = field(default_factory=list)
    started: int | None = None
    confirmed: bool = False
    last_event: dict[str, int] = field(default_factory=dict)
    nuisance: dict[str, list[int]] = field(default_factory=dict)
    # a detector's `alarm_clear` that came while it was not in alarm: (its ts, its seq), for an alarm still on its way
    early_clear: dict[str, tuple[int, int | None]] = field(default_factory=dict)


def _fire(r: Reading, st: SmokeIncident, action: DetectionAction, **extra: object) -> Detection:
    evidence = {
        "detectors": list(st.detectors),
        "detectors_in_alarm": sorted(st.alarming),
        "confirmed": st.confirmed,
        "first_alarm_ts": st.started,
        "trigger": {"device_id": r.device_id, "event": r.values.get("event"), "ts": r.ts},
        **extra,
    }
    return detect(r, AlarmKind.SMOKE_FIRE, Severity.CRITICAL, action, evidence, subject=SubjectType.BUILDING)


def _device(r: Reading, kind: AlarmKind, action: DetectionAction, evidence: dict[str, object]) -> Detection:
    return detect(r, kind, _SEVERITY[kind], action, evidence)


_SEVERITY = {
    AlarmKind.SMOKE_FAULT: Severity.MINOR,
    AlarmKind.SMOKE_TAMPER: Severity.MAJOR,
    AlarmKind.SMOKE_LOW_BATTERY: Severity.WARNING,
}


def smoke_fire(r: Reading, st: SmokeIncident, ctx: RuleContext) -> list[Detection] | None:
    """Raise, reinforce or clear the building's fire alarm from one smoke `event` reading."""
    p = ctx.params.smoke_fire
    event = r.values.get("event")
    if event not in ("alarm", "alarm_clear") or not p.enabled:
        return None
    dev = r.device_id
    early = getattr(st, "early_clear", None)  # (a state snapshotted before the field has none)
    if early is None:
        early = st.early_clear = {}
    if st.last_event.get(dev, -1) > r.ts:
        cleared = early.get(dev)
        if event == "alarm" and cleared is not None and cleared[0] > r.ts and dev not in st.alarming:
            # its clear came first: the fire happened, and ended then
            del early[dev]
            st.last_event[dev] = r.ts
            out = smoke_fire(r, st, ctx) or []
            clear = dataclasses.replace(r, ts=cleared[0], seq=cleared[1], values={**r.values, "event": "alarm_clear"})
            return out + (smoke_fire(clear, st, ctx) or [])
        return None  # older than what this detector last said: history
    st.last_event[dev] = r.ts
    if event == "alarm":
        early.pop(dev, None)
        if dev in st.alarming:
            return None  # the same detector repeating itself adds no evidence
        st.alarming[dev] = r.ts
        if st.started is None:
            st.started = r.ts
            st.detectors.clear()
            st.confirmed = False
        if dev not in st.detectors:
            st.detectors.append(dev)
        if len(st.detectors) >= 2 and r.ts - st.started <= p.confirm_window_s * 1000:
            st.confirmed = True
        return [_fire(r, st, DetectionAction.RAISE)]
    if dev not in st.alarming:
        early[dev] = (r.ts, r.seq)  # perhaps ahead of its alarm
        return None
    del st.alarming[dev]
    if st.alarming:
        return None
    started = st.started if st.started is not None else r.ts
    self_cleared = len(st.detectors) == 1 and r.ts - started <= p.nuisance_window_s * 1000
    out = [_fire(r, st, DetectionAction.CLEAR, self_cleared=self_cleared, duration_ms=r.ts - started)]
    st.started = None
    st.confirmed = False
    if self_cleared:
        horizon = r.ts - int(p.nuisance_repeat_days * DAY_MS)
        times = [t for t in st.nuisance.get(dev, ()) if t > horizon]
        times.append(started)
        st.nuisance[dev] = times
        if len(times) >= p.nuisance_repeat_count:
            out.append(
                _device(
                    r,
                    AlarmKind.SMOKE_FAULT,
                    DetectionAction.RAISE,
                    {
                        "reason": "repeated_nuisance",
                        "self_cleared_alarms": len(times),
                        "days": p.nuisance_repeat_days,
                        "alarm_times": times,
                        "location_hint": "likely cooking fumes or steam: move or replace the detector",
                    },
                )
            )
    return out


@dataclass(slots=True)
class SmokeDevice:
    """Per-detector state for the device reports: which conditions are open, and the last event time."""

    open: set[str] = field(default_factory=set)
    last_ts: int = -1


_EVENTS = {
    "fault": (AlarmKind.SMOKE_FAULT, DetectionAction.RAISE),
    "fault_clear": (AlarmKind.SMOKE_FAULT, DetectionAction.CLEAR),
    "tamper": (AlarmKind.SMOKE_TAMPER, DetectionAction.RAISE),
    "tamper_clear": (AlarmKind.SMOKE_TAMPER, DetectionAction.CLEAR),
    "low_battery": (AlarmKind.SMOKE_LOW_BATTERY, DetectionAction.RAISE),
}


def smoke_device(r: Reading, st: SmokeDevice, ctx: RuleContext) -> list[Detection] | None:
    """`smoke.fault`, `smoke.tamper` and `smoke.low_battery` from the detector's own events."""
    if not ctx.params.smoke_device.enabled:
        return None
    event = r.values.get("event")
    hit = _EVENTS.get(event) if isinstance(event, str) else None
    if hit is None or r.ts < st.last_ts:
        return None
    st.last_ts = r.ts
    kind, action = hit
    if action is DetectionAction.RAISE:
        if kind in st.open:
            return None
        st.open.add(kind)
    else:
        if kind not in st.open:
            return None
        st.open.discard(kind)
    return [_device(r, kind, action, {"event": event, "ts": r.ts})]


@dataclass(slots=True)
class SmokeBattery:
    """Per-detector battery as reported in status heartbeats."""

    pct: float | None = None
    low: bool = False
    last_ts: int = -1


def smoke_battery(r: Reading, st: SmokeBattery, ctx: RuleContext) -> list[Detection] | None:
    """Raise `smoke.low_battery` below `low_battery_pct`; clear it at or above `battery_ok_pct`."""
    p = ctx.params.smoke_device
    pct = r.values.get("battery_pct")
    if not p.enabled or not isinstance(pct, int | float) or r.ts <= st.last_ts:
        return None
    st.last_ts = r.ts
    previous, st.pct = st.pct, float(pct)
    if pct < p.low_battery_pct and not st.low:
        st.low = True
        return [_device(r, AlarmKind.SMOKE_LOW_BATTERY, DetectionAction.RAISE, {"battery_pct": pct})]
    if pct >= p.battery_ok_pct and (st.low or (previous is not None and previous < p.battery_ok_pct)):
        # Climbing back over the threshold (a new battery) clears the alarm, including one its event raised.
        st.low = False
        return [_device(r, AlarmKind.SMOKE_LOW_BATTERY, DetectionAction.CLEAR, {"battery_pct": pct})]
    return None
