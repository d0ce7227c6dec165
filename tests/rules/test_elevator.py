from __future__ import annotations

from typing import Any

from rules.elevator import ElevatorState, elevator_events
from tests.rules.support import HOUR, T0, ctx, reading
from whistle.domain import AlarmKind, Channel, DetectionAction, DeviceType, Reading, Severity, SubjectType


def ev(event: str, ts: int, **extra: Any) -> Reading:
    return reading("EL-1", DeviceType.ELEVATOR, Channel.EVENT, ts, {"event": event, **extra})


def run(events: list[tuple[str, int]], st: ElevatorState | None = None, **over: Any) -> list[tuple[str, str, Any]]:
    st = st or ElevatorState()
    c = ctx(T0, **over)
    out = []
    for event, ts in events:
        for d in elevator_events(ev(event, ts, code=93, floor=3), st, c) or []:
            out.append((d.kind.value, d.action.value, d.evidence.get("repeated")))
    return out


def test_trapped_raises_critical_at_once_on_the_elevator_and_recovered_clears() -> None:
    st = ElevatorState()
    (d,) = elevator_events(ev("trapped", T0, code=93, floor=3), st, ctx()) or []
    assert (d.kind, d.severity, d.action) == (AlarmKind.ELEVATOR_TRAPPED, Severity.CRITICAL, DetectionAction.RAISE)
    assert (d.subject_type, d.subject_id, d.building_id) == (SubjectType.DEVICE, "EL-1", "RJ-B0001")
    assert d.evidence["code"] == 93 and d.evidence["floor"] == 3
    assert run([("trapped", T0 + 1000), ("recovered", T0 + 60_000)], st) == [("elevator.trapped", "clear", None)]


def test_each_fault_event_raises_and_a_single_fault_recovers() -> None:
    assert run([("door_open_while_moving", T0), ("recovered", T0 + 1000)]) == [
        ("elevator.fault", "raise", False),
        ("elevator.fault", "clear", None),
    ]


def test_three_faults_in_24h_are_repeated_and_not_cleared_by_recovery() -> None:
    events = [
        ("overspeed", T0),
        ("recovered", T0 + 1),
        ("power_loss", T0 + 5 * HOUR),
        ("recovered", T0 + 5 * HOUR + 1),
        ("fault", T0 + 20 * HOUR),
        ("recovered", T0 + 20 * HOUR + 1),
    ]
    assert run(events) == [
        ("elevator.fault", "raise", False),
        ("elevator.fault", "clear", None),
        ("elevator.fault", "raise", False),
        ("elevator.fault", "clear", None),
        ("elevator.fault", "raise", True),
    ]


def test_faults_spread_over_more_than_the_window_are_not_repeated() -> None:
    events = [("fault", T0), ("fault", T0 + 13 * HOUR), ("fault", T0 + 26 * HOUR)]
    assert [x[2] for x in run(events)] == [False, False, False]


def test_repeat_count_is_configurable() -> None:
    assert [x[2] for x in run([("fault", T0), ("fault", T0 + 1)], elevator={"repeat_count": 2})] == [False, True]


def test_ebike_in_elevator_is_a_warning_and_unknown_or_late_events_do_nothing() -> None:
    st = ElevatorState()
    (d,) = elevator_events(ev("ebike_detected", T0), st, ctx()) or []
    assert (d.kind, d.severity) == (AlarmKind.ELEVATOR_EBIKE, Severity.WARNING)
    assert elevator_events(ev("recovered", T0 + 10), st, ctx()) == []
    assert elevator_events(ev("trapped", T0 - 1000), st, ctx()) is None  # older than the last event
