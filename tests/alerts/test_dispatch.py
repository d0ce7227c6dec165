"""Escalation, the outbox and its sender, silences, grouping and quiet-period clearing, on a real PostgreSQL."""

from __future__ import annotations

from datetime import time
from typing import Any

import pytest

from alerts import rosters, silences
from alerts.channels.base import Attempt, Notification
from alerts.channels.delivery import DeliveryPolicy, Dispatcher
from alerts.outbox import OutboxSender, PgSentLog
from alerts.routing import Duty, Shift
from alerts.service import AlertService, TicketError
from alerts.workers import EscalationWorker
from tests.helpers import small_registry
from whistle.domain import AlarmKind, Detection, DetectionAction, Outcome, Severity, SubjectType, TicketStatus
from whistle.registry import import_registry, parse_registry
from whistle.store.db import Database
from whistle.timeutil import to_datetime

T0 = 1_795_000_000_000  # 2026-11-18, a Wednesday, 19:06:40 Beijing time
MIN = 60_000


class Clock:
    def __init__(self, t: int) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


class Recorder:
    """A channel that reaches everyone and remembers what it was handed."""

    def __init__(self, name: str = "live", ok: bool = True) -> None:
        self._name = name
        self.ok = ok
        self.sent: list[Notification] = []

    @property
    def name(self) -> str:
        return self._name

    async def send(self, message: Notification) -> Attempt:
        self.sent.append(message)
        return Attempt(self._name, message.id, ok=self.ok, retryable=not self.ok, code="ok" if self.ok else "down")


def detection(
    kind: AlarmKind = AlarmKind.SMOKE_FIRE,
    *,
    ts: int = T0,
    action: DetectionAction = DetectionAction.RAISE,
    subject: tuple[SubjectType, str] = (SubjectType.BUILDING, "RJ-B0001"),
    household: str | None = None,
    building: str = "RJ-B0001",
    grid: str = "RJ-G1-M01",
    severity: Severity | None = None,
    source: str = "SM-0001:1",
) -> Detection:
    sev = severity or {AlarmKind.SMOKE_FIRE: Severity.CRITICAL}.get(kind, Severity.MAJOR)
    return Detection(
        kind, sev, subject[0], subject[1], ts, action, {"why": "test"}, household, building, grid, source_id=source
    )


@pytest.fixture
async def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
async def service(db: Database, clock: Clock) -> AlertService:
    await import_registry(db, parse_registry(small_registry()))
    return AlertService(db, clock=clock)


async def rows(db: Database, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    async with db.connection() as conn:
        return await (await conn.execute(sql, args)).fetchall()


async def notified(db: Database) -> list[tuple[Any, ...]]:
    return await rows(db, "SELECT step, recipient_id, status FROM notifications ORDER BY step, recipient_id")


async def test_critical_escalates_to_backup_and_leader_then_street_center_once_each(
    service: AlertService, db: Database, clock: Clock
) -> None:
    tid = (await service.apply(detection())).ticket_id
    worker = EscalationWorker(service)
    assert await worker.run_once() == 0  # nothing due yet
    clock.t = T0 + 3 * MIN
    assert await worker.run_once() == 1
    assert await notified(db) == [
        (0, "W-09", "pending"),
        (0, "W-CENTER", "pending"),
        (1, "W-17", "pending"),  # the backup: M01's other grid worker
        (1, "W-LEAD", "pending"),
    ]
    (level,) = await rows(db, "SELECT escalation_level, escalation_step FROM tickets")
    assert level == (1, 2)
    # a restarted process (new service, new worker) at the same moment fires nothing again
    again = EscalationWorker(AlertService(db, clock=clock))
    assert await again.run_once() == 0
    clock.t = T0 + 15 * MIN
    assert await again.run_once() == 1
    assert await again.run_once() == 0
    steps = await rows(
        db,
        "SELECT data->>'step', data->>'level' FROM ticket_events WHERE action IN ('notify', 'escalated') ORDER BY id",
    )
    assert steps == [("0", "0"), ("1", "1"), ("2", "2")]
    assert (2, "W-CENTER", "pending") in await notified(db)
    assert await rows(db, "SELECT escalation_due_at FROM tickets WHERE id = %s", tid) == [(None,)]


async def test_an_ack_stops_ack_steps_and_drops_their_unsent_notifications(
    service: AlertService, db: Database, clock: Clock
) -> None:
    tid = (await service.apply(detection())).ticket_id
    assert tid is not None
    clock.t = T0 + 1 * MIN
    await service.transition(tid, "ack", actor="W-09")
    assert {r[2] for r in await notified(db)} == {"suppressed"}  # not sent yet, and moot now
    assert await rows(db, "SELECT status FROM alarms") == [("acknowledged",)]
    worker = EscalationWorker(service)
    clock.t = T0 + 10 * MIN
    assert await worker.run_once() == 0  # the 3-minute step is skipped after the ack
    clock.t = T0 + 15 * MIN
    assert await worker.run_once() == 1  # but nobody is on site after 15 minutes: the street center
    assert [r for r in await notified(db) if r[0] == 2] == [(2, "W-CENTER", "pending")]
    await service.transition(tid, "arrive", actor="W-09")
    assert [r[2] for r in await notified(db) if r[0] == 2] == ["suppressed"]


async def test_the_sender_delivers_each_notification_once_across_restarts(
    service: AlertService, db: Database, clock: Clock
) -> None:
    await service.apply(detection())
    channel = Recorder()
    policy = DeliveryPolicy(quiet=None, rate=None)
    sender = OutboxSender(
        db,
        Dispatcher({"live": channel}, policy=policy, sent_log=PgSentLog(db, clock=clock), clock=clock),
        sent_log=PgSentLog(db, clock=clock),
        clock=clock,
    )
    assert await sender.run_once() == 2
    assert sorted(n.recipient.id for n in channel.sent) == ["W-09", "W-CENTER"]
    assert {n.id for n in channel.sent} == {r[0] for r in await rows(db, "SELECT dedup_key FROM notifications")}
    assert await rows(db, "SELECT status, channel_used FROM notifications") == [("sent", "live")] * 2
    attempts = await rows(db, "SELECT channel, ok FROM notification_attempts")
    assert attempts == [("live", True)] * 2
    assert await sender.run_once() == 0
    # a crash after sending but before the row was marked: the row is pending again
    async with db.connection() as conn:
        await conn.execute("UPDATE notifications SET status = 'pending', sent_at = NULL")
    restarted = OutboxSender(
        db,
        Dispatcher({"live": channel}, policy=policy, sent_log=PgSentLog(db, clock=clock), clock=clock),
        sent_log=PgSentLog(db, clock=clock),
        clock=clock,
    )
    assert await restarted.run_once() == 2
    assert len(channel.sent) == 2  # recognised by the sent log, not sent again
    assert await rows(db, "SELECT status FROM notifications") == [("sent",)] * 2


async def test_a_failing_channel_is_retried_in_later_rounds_then_given_up(
    service: AlertService, db: Database, clock: Clock
) -> None:
    await service.apply(
        detection(
            AlarmKind.ELEVATOR_FAULT,
            subject=(SubjectType.DEVICE, "EL-0002"),
            building="RJ-B0002",
            grid="RJ-G1-M02",
            source="EL-0002:1",
        )
    )
    channel = Recorder(ok=False)

    async def no_sleep(_: float) -> None:
        return None

    dispatcher = Dispatcher(
        {"live": channel}, policy=DeliveryPolicy(quiet=None, rate=None), clock=clock, sleep=no_sleep
    )
    sender = OutboxSender(db, dispatcher, clock=clock, max_rounds=2, retry_s=60)
    assert await sender.run_once() == 1
    assert await rows(db, "SELECT status, attempts FROM notifications") == [("pending", 1)]
    assert await sender.run_once() == 0  # not due again yet
    clock.t += 61_000
    assert await sender.run_once() == 1
    assert await rows(db, "SELECT status, attempts FROM notifications") == [("failed", 2)]
    assert len(await rows(db, "SELECT 1 FROM notification_attempts")) == 6  # 3 tries per round, 2 rounds


async def test_silenced_alarms_are_recorded_not_dispatched_until_the_window_ends(
    service: AlertService, db: Database, clock: Clock
) -> None:
    async with db.connection() as conn:
        await silences.insert_silence(
            conn,
            scope_type="device",
            scope_id="EL-0002",
            kinds=None,
            starts_at=to_datetime(T0 - MIN),
            ends_at=to_datetime(T0 + 30 * MIN),
            reason="elevator servicing",
            actor="W-LEAD",
        )
    d = detection(
        AlarmKind.ELEVATOR_FAULT,
        subject=(SubjectType.DEVICE, "EL-0002"),
        building="RJ-B0002",
        grid="RJ-G1-M02",
        source="EL-0002:1",
    )
    res = await service.apply(d)
    assert res.silenced and res.ticket_id is None
    assert await rows(db, "SELECT count(*) FROM tickets") == [(0,)]
    assert await rows(db, "SELECT status, silence_id IS NOT NULL FROM alarms") == [("active", True)]
    clock.t = T0 + 31 * MIN
    later = await service.apply(
        detection(
            AlarmKind.ELEVATOR_FAULT,
            ts=T0 + 31 * MIN,
            subject=(SubjectType.DEVICE, "EL-0002"),
            building="RJ-B0002",
            grid="RJ-G1-M02",
            source="EL-0002:2",
        )
    )
    assert later.ticket_id is not None and not later.silenced
    assert await rows(db, "SELECT count(*) FROM tickets") == [(1,)]
    # a grid-wide window covers the smoke detectors of every building below it
    async with db.connection() as conn:
        await silences.insert_silence(
            conn,
            scope_type="grid",
            scope_id="RJ-G1",
            kinds=["smoke.fault"],
            starts_at=to_datetime(T0),
            ends_at=to_datetime(T0 + 60 * MIN),
            reason="detector replacement",
            actor="W-LEAD",
        )
    fault = await service.apply(
        detection(AlarmKind.SMOKE_FAULT, subject=(SubjectType.DEVICE, "SM-0001"), severity=Severity.MINOR)
    )
    assert fault.silenced
    fire = await service.apply(detection())
    assert not fire.silenced and fire.ticket_id is not None  # only the kinds named


async def test_lone_elder_goes_to_the_emergency_contact_first_and_groups_with_continuous_flow(
    service: AlertService, db: Database, clock: Clock
) -> None:
    household = (SubjectType.HOUSEHOLD, "RJ-H000001")
    elder = await service.apply(
        detection(AlarmKind.LONE_ELDER_INACTIVE, subject=household, household="RJ-H000001", source="WM-000001:1")
    )
    assert elder.ticket_id is not None
    assert await notified(db) == [(0, "contact:RJ-H000001:0", "pending")]
    (body,) = await rows(db, "SELECT channel, body->'recipient'->>'phone' FROM notifications")
    assert body == ("contact", "+8613800000000")
    flow = await service.apply(
        detection(
            AlarmKind.WATER_CONTINUOUS_FLOW,
            subject=household,
            household="RJ-H000001",
            severity=Severity.MAJOR,
            source="WM-000001:2",
        )
    )
    assert flow.grouped and flow.ticket_id == elder.ticket_id
    assert await rows(db, "SELECT count(*) FROM ticket_alarms WHERE ticket_id = %s", elder.ticket_id) == [(2,)]
    clock.t = T0 + 5 * MIN
    assert await EscalationWorker(service).run_once() == 1
    assert (1, "W-09", "pending") in await notified(db)  # nobody answered: the grid worker


async def test_rosters_pick_the_worker_on_duty(service: AlertService, db: Database) -> None:
    async with db.connection() as conn:
        await rosters.replace_roster(
            conn,
            "RJ-G1-M01",
            [
                Shift("W-17", "RJ-G1-M01", 3, time(8), time(20)),  # Wednesday's day shift: on at 19:06
                Shift("W-09", "RJ-G1-M01", 3, time(20), time(8)),
                Shift("W-LEAD", "RJ-G1-M01", 3, time(0), time(0), Duty.BACKUP),
            ],
            actor="admin",
        )
    res = await service.apply(detection())
    assert res.assignee_id == "W-17"
    clock = service.clock
    assert isinstance(clock, Clock)
    clock.t = T0 + 3 * MIN
    await EscalationWorker(service).run_once()
    assert [r[1] for r in await notified(db) if r[0] == 1] == ["W-LEAD"]  # the backup on duty (and the leader)


async def test_reassign_transfer_comment_and_close_are_audited(
    service: AlertService, db: Database, clock: Clock
) -> None:
    tid = (await service.apply(detection())).ticket_id
    assert tid is not None
    await service.transition(tid, "ack", actor="W-09")
    clock.t += MIN
    await service.reassign(tid, actor="W-LEAD", assignee_id="W-17", note="W-09 is off sick")
    (t,) = await rows(db, "SELECT status, assignee_id, assignment FROM tickets")
    assert t == ("dispatched", "W-17", 1)
    assert (0, "W-17", "pending") in await notified(db)  # the new assignee is notified
    with pytest.raises(TicketError, match="not found"):
        await service.reassign(tid, actor="x", assignee_id="W-NOBODY")
    await service.reassign(tid, actor="W-LEAD", grid_id="RJ-G1-M02", note="wrong grid")
    assert await rows(db, "SELECT grid_id, assignee_id FROM tickets") == [("RJ-G1-M02", "W-LEAD")]
    await service.comment(tid, actor="W-LEAD", note="on my way")
    with pytest.raises(TicketError, match="cannot close"):
        await service.transition(tid, "close", actor="W-LEAD")
    await service.transition(tid, "resolve", actor="W-LEAD", outcome=Outcome.CONFIRMED)
    await service.transition(tid, "close", actor="W-LEAD", note="done")
    trail = await rows(
        db,
        "SELECT actor, action, from_status, to_status FROM ticket_events "
        "WHERE action NOT IN ('notify', 'dispatched') ORDER BY id",
    )
    assert trail == [
        ("W-09", "ack", "dispatched", "acknowledged"),
        ("W-LEAD", "reassign", "acknowledged", "dispatched"),
        ("W-LEAD", "transfer", "dispatched", "dispatched"),
        ("W-LEAD", "comment", None, None),
        ("W-LEAD", "resolve", "dispatched", "resolved"),
        ("W-LEAD", "close", "resolved", "closed"),
    ]
    assert await rows(db, "SELECT count(*) FROM notifications WHERE status = 'pending'") == [(0,)]
    with pytest.raises(TicketError, match="cannot reassign"):
        await service.reassign(tid, actor="x", assignee_id="W-09")
    assert TicketStatus.CLOSED.value == (await rows(db, "SELECT status FROM tickets"))[0][0]


async def test_quiet_period_clears_alarms_the_rule_never_clears(
    service: AlertService, db: Database, clock: Clock
) -> None:
    res = await service.apply(
        detection(
            AlarmKind.ELEVATOR_EBIKE,
            subject=(SubjectType.DEVICE, "EL-0002"),
            building="RJ-B0002",
            grid="RJ-G1-M02",
            severity=Severity.WARNING,
            source="EL-0002:9",
        )
    )
    await service.apply(detection())  # a fire is never cleared by silence
    worker = EscalationWorker(service)
    clock.t = T0 + 59 * MIN
    assert await worker.clear_quiet() == 0
    clock.t = T0 + 61 * MIN
    assert await worker.clear_quiet() == 1
    got = await rows(db, "SELECT kind, status, evidence->>'cleared_by' FROM alarms ORDER BY kind")
    assert got == [("elevator.ebike", "cleared", "quiet_period"), ("smoke.fire", "active", None)]
    events = await rows(db, "SELECT action FROM ticket_events WHERE ticket_id = %s ORDER BY id", res.ticket_id)
    assert events[-1] == ("alarm_cleared",)
    assert await rows(db, "SELECT escalation_due_at FROM tickets WHERE id = %s", res.ticket_id) == [(None,)]
