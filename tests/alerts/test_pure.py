from __future__ import annotations

from alerts.lifecycle import Change, decide
from alerts.routing import Candidate, choose_assignee
from whistle.domain import (
    Alarm,
    AlarmKind,
    AlarmStatus,
    Detection,
    DetectionAction,
    Severity,
    SubjectType,
    WorkerRole,
)


def det(action: DetectionAction = DetectionAction.RAISE, severity: Severity = Severity.MAJOR) -> Detection:
    return Detection(AlarmKind.ELEVATOR_FAULT, severity, SubjectType.DEVICE, "EL-1", 1000, action)


def alarm(severity: Severity = Severity.MAJOR) -> Alarm:
    return Alarm(
        "a1",
        AlarmKind.ELEVATOR_FAULT,
        severity,
        AlarmStatus.ACTIVE,
        SubjectType.DEVICE,
        "EL-1",
        None,
        "B1",
        "G1",
        1000,
        1000,
        1000,
        1,
        {},
    )


def test_raise_without_open_alarm_opens_one() -> None:
    assert decide(det(), None).change is Change.OPEN


def test_raise_on_open_alarm_updates_and_only_ever_raises_severity() -> None:
    up = decide(det(severity=Severity.CRITICAL), alarm(Severity.MAJOR))
    assert (up.change, up.severity, up.escalated) == (Change.UPDATE, Severity.CRITICAL, True)
    same = decide(det(severity=Severity.WARNING), alarm(Severity.MAJOR))
    assert (same.change, same.severity, same.escalated) == (Change.UPDATE, Severity.MAJOR, False)


def test_clear_clears_an_open_alarm_and_ignores_otherwise() -> None:
    assert decide(det(DetectionAction.CLEAR), alarm()).change is Change.CLEAR
    assert decide(det(DetectionAction.CLEAR), None).change is Change.IGNORE


W = WorkerRole


def test_grid_worker_of_the_micro_grid_first_lowest_id() -> None:
    workers = [
        Candidate("W-9", "M1", W.GRID_WORKER),
        Candidate("W-2", "M1", W.GRID_WORKER),
        Candidate("L", "G1", W.GRID_LEADER),
        Candidate("C", None, W.STREET_CENTER),
    ]
    assert choose_assignee(["M1", "G1"], workers) == "W-2"


def test_falls_back_to_leader_of_the_micro_grid_then_parents_then_center() -> None:
    assert (
        choose_assignee(["M1", "G1"], [Candidate("L1", "M1", W.GRID_LEADER), Candidate("W", "G1", W.GRID_WORKER)])
        == "L1"
    )
    assert (
        choose_assignee(["M1", "G1"], [Candidate("L", "G1", W.GRID_LEADER), Candidate("C", None, W.STREET_CENTER)])
        == "L"
    )
    assert (
        choose_assignee(["M1", "G1"], [Candidate("P", "M1", W.PROPERTY), Candidate("C", None, W.STREET_CENTER)]) == "C"
    )
    assert choose_assignee([], []) is None
