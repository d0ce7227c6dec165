"""No flapping reaches a worker: a household or device-health alarm raised again soon after its rule cleared it
reopens that alarm and its ticket; life safety never waits (issue 14, item 5). On a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from alerts.lifecycle import ReopenPolicy
from alerts.service import AlertService
from alerts.workers import EscalationWorker
from stats.rollups import advance_alarms
from tests.alerts.test_dispatch import MIN, T0, Clock, detection, notified, rows
from tests.helpers import small_registry
from whistle.domain import AlarmKind, DetectionAction, Outcome, SubjectType
from whistle.registry import import_registry, parse_registry
from whistle.store.db import Database

HOUR = 60 * MIN
HOUSEHOLD = (SubjectType.HOUSEHOLD, "RJ-H000001")


@pytest.fixture
async def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
async def service(db: Database, clock: Clock) -> AlertService:
    await import_registry(db, parse_registry(small_registry()))
    return AlertService(db, clock=clock)


def elder(ts: int, action: DetectionAction = DetectionAction.RAISE, n: int = 1) -> Any:
    return detection(
        AlarmKind.LONE_ELDER_INACTIVE,
        ts=ts,
        action=action,
        subject=HOUSEHOLD,
        household="RJ-H000001",
        source=f"RJ-H000001:{ts}:{n}",
    )


async def tickets(db: Database) -> list[tuple[Any, ...]]:
    return await rows(db, "SELECT id::text, kind, status FROM tickets ORDER BY created_at")


async def test_a_lone_elder_raised_again_two_hours_after_its_clear_is_the_same_alarm_and_ticket(
    service: AlertService, db: Database, clock: Clock
) -> None:
    first = await service.apply(elder(T0))
    assert first.ticket_id is not None and first.queued == 1  # the emergency contact
    clock.t = T0 + 10 * MIN
    cleared = await service.apply(elder(T0 + 3 * HOUR, DetectionAction.CLEAR))  # the meters caught up: a draw
    clock.t = T0 + 20 * MIN
    again = await service.apply(elder(T0 + 5 * HOUR))  # and quiet again, two hours of event time later
    assert (cleared.alarm_id, again.alarm_id, again.ticket_id) == (first.alarm_id, first.alarm_id, first.ticket_id)
    assert again.change.value == "reopen" and again.queued == 0  # nobody is told twice
    assert await rows(db, "SELECT status, reopened, count, cleared_at, cleared_seen FROM alarms") == [
        ("active", 1, 2, None, None)
    ]
    assert len(await tickets(db)) == 1
    events = await rows(db, "SELECT action, data->>'after_clear_s' FROM ticket_events ORDER BY id")
    assert [e[0] for e in events][-2:] == ["alarm_cleared", "alarm_reopened"]
    assert events[-1][1] == str(2 * 3600)
    # the contact's message, unsent when the alarm cleared, was dropped then; the reopening sends nothing new
    assert await notified(db) == [(0, "contact:RJ-H000001:0", "suppressed")]


async def test_after_the_window_a_raise_is_a_new_alarm_and_ticket(service: AlertService, db: Database) -> None:
    first = await service.apply(elder(T0))
    await service.apply(elder(T0 + HOUR, DetectionAction.CLEAR))
    later = await service.apply(elder(T0 + HOUR + 6 * HOUR + MIN))  # 6 h 1 min after the clear
    assert later.change.value == "open" and later.alarm_id != first.alarm_id and later.ticket_id != first.ticket_id
    assert len(await tickets(db)) == 2


async def test_the_window_is_configurable_and_zero_turns_it_off(db: Database, clock: Clock) -> None:
    await import_registry(db, parse_registry(small_registry()))
    never = AlertService(db, clock=clock, reopen=ReopenPolicy(window_s=0))
    first = await never.apply(elder(T0))
    await never.apply(elder(T0 + HOUR, DetectionAction.CLEAR))
    again = await never.apply(elder(T0 + HOUR + MIN))
    assert again.change.value == "open" and again.alarm_id != first.alarm_id
    longer = AlertService(db, clock=clock, reopen=ReopenPolicy(window_s=24 * 3600))
    clock.t = T0 + MIN
    await longer.apply(elder(T0 + 2 * HOUR, DetectionAction.CLEAR))
    reopened = await longer.apply(elder(T0 + 20 * HOUR))
    assert reopened.change.value == "reopen" and reopened.alarm_id == again.alarm_id


async def test_fire_and_trapped_passengers_are_dispatched_at_once_every_time(
    service: AlertService, db: Database
) -> None:
    fire = await service.apply(detection())
    await service.apply(detection(action=DetectionAction.CLEAR, ts=T0 + MIN, source="SM-0001:2"))
    again = await service.apply(detection(ts=T0 + 2 * MIN, source="SM-0001:3"))
    assert again.change.value == "open" and again.alarm_id != fire.alarm_id and again.ticket_id != fire.ticket_id
    assert again.queued >= 1  # notified at once, like the first
    trapped = (SubjectType.DEVICE, "EL-0001")
    one = await service.apply(detection(AlarmKind.ELEVATOR_TRAPPED, subject=trapped, source="EL-0001:1"))
    await service.apply(
        detection(AlarmKind.ELEVATOR_TRAPPED, subject=trapped, action=DetectionAction.CLEAR, source="EL-0001:2")
    )
    two = await service.apply(detection(AlarmKind.ELEVATOR_TRAPPED, subject=trapped, ts=T0 + MIN, source="EL-0001:3"))
    assert two.change.value == "open" and two.ticket_id != one.ticket_id and two.queued >= 1


async def test_a_ticket_a_worker_resolved_is_not_reopened_by_the_rule(
    service: AlertService, db: Database, clock: Clock
) -> None:
    first = await service.apply(elder(T0))
    assert first.ticket_id is not None
    await service.apply(elder(T0 + HOUR, DetectionAction.CLEAR))
    await service.transition(first.ticket_id, "resolve", actor="W-09", outcome=Outcome.FALSE_ALARM, note="at home")
    again = await service.apply(elder(T0 + 2 * HOUR))
    assert again.change.value == "open" and again.ticket_id != first.ticket_id


async def test_the_other_reopening_kinds_reopen_too(service: AlertService, db: Database) -> None:
    for kind, subject in (
        (AlarmKind.WATER_CONTINUOUS_FLOW, HOUSEHOLD),
        (AlarmKind.GROUP_RENTAL_SUSPECTED, (SubjectType.HOUSEHOLD, "RJ-H000002")),
        (AlarmKind.EBIKE_INDOOR_CHARGING, (SubjectType.DEVICE, "EB-000001")),
        (AlarmKind.DEVICE_OFFLINE, (SubjectType.DEVICE, "WM-000001")),
    ):
        one = await service.apply(detection(kind, subject=subject, source=f"{kind}:1"))
        await service.apply(detection(kind, subject=subject, ts=T0 + HOUR, action=DetectionAction.CLEAR, source="c"))
        two = await service.apply(detection(kind, subject=subject, ts=T0 + 2 * HOUR, source=f"{kind}:2"))
        assert two.change.value == "reopen" and two.alarm_id == one.alarm_id, kind


async def test_an_unanswered_ticket_escalates_again_from_its_reopening_not_at_once(db: Database, clock: Clock) -> None:
    await import_registry(db, parse_registry(small_registry()))
    service = AlertService(db, clock=clock)
    household = (SubjectType.HOUSEHOLD, "RJ-H000002")  # no emergency contact: the grid worker first
    raise_ = detection(AlarmKind.WATER_CONTINUOUS_FLOW, subject=household, household="RJ-H000002", source="a")
    first = await service.apply(raise_)
    assert [n[0] for n in await notified(db)] == [0]
    clock.t = T0 + 5 * MIN
    await service.apply(
        detection(
            AlarmKind.WATER_CONTINUOUS_FLOW,
            subject=household,
            household="RJ-H000002",
            ts=T0 + 5 * MIN,
            action=DetectionAction.CLEAR,
            source="b",
        )
    )
    clock.t = T0 + 2 * HOUR  # nobody acknowledged; the alarm comes back two hours later
    again = await service.apply(
        detection(
            AlarmKind.WATER_CONTINUOUS_FLOW, subject=household, household="RJ-H000002", ts=T0 + 2 * HOUR, source="c"
        )
    )
    assert again.ticket_id == first.ticket_id and again.queued == 0  # the overdue step does not fire at once
    worker = EscalationWorker(service)
    clock.t = T0 + 2 * HOUR + 14 * MIN
    assert await worker.run_once() == 0
    clock.t = T0 + 2 * HOUR + 15 * MIN  # the major policy's next step: 15 min without an ack, from the reopening
    assert await worker.run_once() == 1
    assert [n[0] for n in await notified(db)] == [0, 1, 1]  # the backup and the grid leader


async def test_a_reopened_alarm_already_in_the_screens_rollup_is_counted_once(
    service: AlertService, db: Database, clock: Clock
) -> None:
    first = await service.apply(elder(T0))
    clock.t = T0 + 10 * MIN
    await service.apply(elder(T0 + HOUR, DetectionAction.CLEAR))
    async with db.connection() as conn:  # the screens roll the cleared alarm into its day
        assert await advance_alarms(conn, datetime.fromtimestamp((T0 + 30 * MIN) / 1000, UTC))
    assert await rows(db, "SELECT sum(alarms) FROM alarm_days") == [(1,)]
    clock.t = T0 + 40 * MIN
    again = await service.apply(elder(T0 + 3 * HOUR))
    assert again.alarm_id == first.alarm_id
    assert await rows(db, "SELECT sum(alarms) FROM alarm_days") == [(0,)]  # open again: counted live
    clock.t = T0 + 50 * MIN
    await service.apply(elder(T0 + 4 * HOUR, DetectionAction.CLEAR, n=2))
    async with db.connection() as conn:
        assert await advance_alarms(conn, datetime.fromtimestamp((T0 + 70 * MIN) / 1000, UTC))
    assert await rows(db, "SELECT sum(alarms) FROM alarm_days") == [(1,)]
