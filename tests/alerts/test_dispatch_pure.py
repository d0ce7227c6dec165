"""Rosters, routing and escalation: pure functions on hand-built values, no I/O."""

from __future__ import annotations

from datetime import datetime, time

import pytest

from alerts.escalation import (
    DEFAULT_POLICIES,
    EscalationPolicy,
    EscalationState,
    cancel_on,
    next_step,
    policy_for,
)
from alerts.routing import Candidate, Duty, Shift, Target, on_duty, route
from whistle.domain import AlarmKind, Severity, TicketStatus, WorkerRole
from whistle.timeutil import CHINA_TZ

W = WorkerRole


def local_ms(y: int, mo: int, d: int, h: int, mi: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, tzinfo=CHINA_TZ).timestamp() * 1000)


# 2026-11-23 is a Monday (ISO weekday 1).
MON_10 = local_ms(2026, 11, 23, 10)
MON_23 = local_ms(2026, 11, 23, 23)
TUE_03 = local_ms(2026, 11, 24, 3)
TUE_10 = local_ms(2026, 11, 24, 10)

DAY = Shift("W-DAY", "M1", 1, time(8), time(20))
NIGHT = Shift("W-NIGHT", "M1", 1, time(20), time(8))
BACKUP = Shift("W-B", "M1", 1, time(0), time(0), Duty.BACKUP)  # all day Monday (until Tuesday 00:00)


def test_shifts_cover_their_local_hours_and_overnight_ones_spill_into_the_next_day() -> None:
    shifts = [DAY, NIGHT, BACKUP]
    assert on_duty(shifts, "M1", MON_10) == ["W-DAY"]
    assert on_duty(shifts, "M1", MON_23) == ["W-NIGHT"]
    assert on_duty(shifts, "M1", TUE_03) == ["W-NIGHT"]  # Monday's night shift, Tuesday morning
    assert on_duty(shifts, "M1", TUE_10) == []
    assert on_duty(shifts, "M2", MON_10) == []
    assert on_duty(shifts, "M1", MON_10, Duty.BACKUP) == ["W-B"]
    sunday_night = Shift("W-S", "M1", 7, time(22), time(6))
    assert on_duty([sunday_night], "M1", local_ms(2026, 11, 23, 5)) == ["W-S"]  # Sunday -> Monday wraps


WORKERS = [
    Candidate("W-2", "M1", W.GRID_WORKER),
    Candidate("W-DAY", "M1", W.GRID_WORKER),
    Candidate("L", "G1", W.GRID_LEADER),
    Candidate("C", None, W.STREET_CENTER),
    Candidate("P", "G1", W.PROPERTY),
    Candidate("EM", None, W.ELEVATOR_MAINTAINER),
]


def test_route_prefers_the_worker_on_duty_then_falls_back_to_the_grid_then_the_leader() -> None:
    on = route(["M1", "G1"], WORKERS, [DAY], MON_10)
    assert on.assignee == "W-DAY"
    assert on.by_target[Target.BACKUP] == ("W-2",)  # no backup shift: another grid worker of the micro-grid
    off = route(["M1", "G1"], WORKERS, [DAY], TUE_10)
    assert off.assignee == "W-2"  # nobody on duty: the grid's workers, lowest id
    assert off.by_target[Target.BACKUP] == ("W-DAY",)
    empty = route(["M2", "G1"], WORKERS, [], MON_10)
    assert empty.assignee == "L" and empty.by_target[Target.GRID_LEADER] == ()  # the leader is the assignee
    with_backup = route(["M1", "G1"], WORKERS, [DAY, BACKUP], MON_10)
    assert with_backup.by_target[Target.BACKUP] == ("W-B",)


def test_route_names_the_extra_recipients_and_resolves_each_person_once() -> None:
    r = route(["M1", "G1"], WORKERS, [], MON_10, household_id="H1", contacts=2)
    assert r.by_target[Target.PROPERTY] == ("P",)
    assert r.by_target[Target.ELEVATOR_MAINTAINER] == ("EM",)  # bound to no grid: street-wide
    assert r.by_target[Target.STREET_CENTER] == ("C",)
    assert r.by_target[Target.CONTACT] == ("contact:H1:0", "contact:H1:1")
    assert r.resolve([Target.ASSIGNEE, Target.BACKUP, Target.ASSIGNEE, Target.GRID_LEADER]) == [
        (Target.ASSIGNEE, "W-2"),
        (Target.BACKUP, "W-DAY"),
        (Target.GRID_LEADER, "L"),
    ]
    kept = route(["M1", "G1"], WORKERS, [DAY], MON_10, assignee="W-2")
    assert kept.assignee == "W-2"


def test_policies_freeze_the_kind_extras_and_contact_first() -> None:
    fire = policy_for(AlarmKind.SMOKE_FIRE, Severity.CRITICAL)
    assert fire.steps[0].notify == (Target.ASSIGNEE, Target.PROPERTY, Target.STREET_CENTER)
    assert [s.after_s for s in fire.steps] == [0, 180, 900]
    trapped = policy_for(AlarmKind.ELEVATOR_TRAPPED, Severity.CRITICAL)
    assert trapped.steps[0].notify == (Target.ASSIGNEE, Target.ELEVATOR_MAINTAINER)
    elder = policy_for(AlarmKind.LONE_ELDER_INACTIVE, Severity.MAJOR, has_contact=True)
    assert [(s.after_s, s.notify) for s in elder.steps[:2]] == [(0, (Target.CONTACT,)), (300, (Target.ASSIGNEE,))]
    assert elder.steps[1].unless is TicketStatus.ACKNOWLEDGED
    no_contact = policy_for(AlarmKind.LONE_ELDER_INACTIVE, Severity.MAJOR)
    assert no_contact.steps[0].notify == (Target.ASSIGNEE,)
    assert EscalationPolicy.from_json(elder.to_json()) == elder
    assert cancel_on(fire.steps[2]) is TicketStatus.ON_SITE and cancel_on(fire.steps[0]) is TicketStatus.ACKNOWLEDGED


CRIT = DEFAULT_POLICIES[Severity.CRITICAL]
T0 = 1_800_000_000_000


def state(status: TicketStatus = TicketStatus.DISPATCHED, index: int = 0, alarms_open: bool = True) -> EscalationState:
    return EscalationState(status, T0, index, alarms_open)


def test_first_step_fires_at_once_and_the_next_is_due_after_its_delay() -> None:
    r = next_step(CRIT, state(), T0)
    assert (r.index, r.next_index, r.due_at) == (0, 1, T0 + 180_000)
    wait = next_step(CRIT, state(index=1), T0 + 179_999)
    assert (wait.fire, wait.next_index, wait.due_at) == (None, 1, T0 + 180_000)
    r = next_step(CRIT, state(index=1), T0 + 180_000)
    assert r.fire is not None and r.fire.level == 1 and (r.next_index, r.due_at) == (2, T0 + 900_000)
    r = next_step(CRIT, state(index=2), T0 + 900_000)
    assert r.index == 2 and (r.next_index, r.due_at) == (3, None)
    assert next_step(CRIT, state(index=3), T0 + 10**9).due_at is None


def test_an_ack_skips_the_ack_step_but_not_the_on_site_one() -> None:
    acked = next_step(CRIT, state(TicketStatus.ACKNOWLEDGED, 1), T0 + 200_000)
    assert acked.fire is None and (acked.next_index, acked.due_at) == (2, T0 + 900_000)
    late = next_step(CRIT, state(TicketStatus.ACKNOWLEDGED, 1), T0 + 900_000)
    assert late.index == 2
    there = next_step(CRIT, state(TicketStatus.ON_SITE, 1), T0 + 10**9)
    assert there.fire is None and there.due_at is None


@pytest.mark.parametrize("status", [TicketStatus.RESOLVED, TicketStatus.CLOSED])
def test_resolved_closed_or_cleared_tickets_stop_escalating(status: TicketStatus) -> None:
    assert next_step(CRIT, state(status, 1), T0 + 10**9) == next_step(CRIT, state(status, 1), T0)
    assert next_step(CRIT, state(status, 1), T0).due_at is None
    assert next_step(CRIT, state(alarms_open=False, index=1), T0 + 10**9).due_at is None


def test_overdue_steps_fire_one_at_a_time_in_order() -> None:
    fired, s = [], state()
    while (r := next_step(CRIT, s, T0 + 10**9)).fire is not None:
        fired.append(r.index)
        s = EscalationState(s.status, s.base_at, r.next_index)
    assert fired == [0, 1, 2]
