from __future__ import annotations

from dataclasses import replace

from alerts.lifecycle import Change, Cleared, ReopenPolicy, decide
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


HOUR = 3_600_000


def raised(kind: AlarmKind, ts: int) -> Detection:
    return Detection(kind, Severity.MAJOR, SubjectType.HOUSEHOLD, "H1", ts, DetectionAction.RAISE)


def cleared(kind: AlarmKind, seen: int | None, ticket_open: bool | None = True) -> Cleared:
    return Cleared(replace(alarm(), kind=kind, status=AlarmStatus.CLEARED), seen, ticket_open)


def test_a_household_alarm_raised_again_within_the_window_of_its_rules_clear_reopens() -> None:
    kind = AlarmKind.LONE_ELDER_INACTIVE
    assert decide(raised(kind, 7 * HOUR), None, cleared(kind, 2 * HOUR)).change is Change.REOPEN
    assert decide(raised(kind, 8 * HOUR), None, cleared(kind, 2 * HOUR)).change is Change.REOPEN  # 6 h: still
    assert decide(raised(kind, 8 * HOUR + 1), None, cleared(kind, 2 * HOUR)).change is Change.OPEN
    assert decide(raised(kind, 7 * HOUR), None, cleared(kind, 2 * HOUR), ReopenPolicy(window_s=3600)).change is (
        Change.OPEN
    )
    assert decide(raised(kind, 7 * HOUR), None, cleared(kind, 2 * HOUR, ticket_open=None)).change is Change.REOPEN


def test_no_reopening_after_a_person_cleared_it_or_resolved_its_ticket_nor_for_life_safety() -> None:
    kind = AlarmKind.LONE_ELDER_INACTIVE
    assert decide(raised(kind, 3 * HOUR), None, cleared(kind, None)).change is Change.OPEN  # by hand, by a ticket
    assert decide(raised(kind, 3 * HOUR), None, cleared(kind, 2 * HOUR, ticket_open=False)).change is Change.OPEN
    for urgent in (AlarmKind.SMOKE_FIRE, AlarmKind.ELEVATOR_TRAPPED):
        policy = ReopenPolicy(kinds=frozenset({urgent}))  # even if a deployment listed them
        assert decide(raised(urgent, 3 * HOUR), None, cleared(urgent, 2 * HOUR), policy).change is Change.OPEN
