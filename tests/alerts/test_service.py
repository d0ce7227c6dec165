from __future__ import annotations

import asyncio
from typing import Any

import pytest

from alerts.lifecycle import Change
from alerts.service import AlertService, TicketError
from rules.processor import RuleContext
from rules.smoke import SmokeIncident, smoke_fire
from tests.helpers import small_registry
from whistle.domain import Channel, Detection, DeviceType, Outcome, Reading
from whistle.registry import import_registry, parse_registry
from whistle.store.db import Database

T0 = 1_795_000_000_000


def fire(r: Reading, st: SmokeIncident) -> list[Detection]:
    return smoke_fire(r, st, RuleContext(clock=r.ts)) or []


class Clock:
    def __init__(self, t: int) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


def smoke(device: str, event: str, ts: int, building: str = "RJ-B0001", grid: str = "RJ-G1-M01") -> Reading:
    return Reading(device, DeviceType.SMOKE, Channel.EVENT, ts, ts, {"event": event}, None, None, building, grid)


@pytest.fixture
async def service(db: Database) -> AlertService:
    await import_registry(db, parse_registry(small_registry()))
    return AlertService(db, clock=Clock(T0 + 500))


async def rows(db: Database, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    async with db.connection() as conn:
        return await (await conn.execute(sql, args)).fetchall()


async def test_fire_opens_an_alarm_and_a_ticket_for_the_grid_worker(service: AlertService, db: Database) -> None:
    events: list[Any] = []
    service.listeners.append(events.append)
    (d,) = fire(smoke("SM-0001", "alarm", T0), SmokeIncident())
    res = await service.apply(d)
    assert res.change is Change.OPEN and res.assignee_id == "W-09"  # lowest id among M01's grid workers
    alarms = await rows(db, "SELECT kind, severity, status, subject_id, grid_id, count FROM alarms")
    assert alarms == [("smoke.fire", "critical", "active", "RJ-B0001", "RJ-G1-M01", 1)]
    tickets = await rows(db, "SELECT kind, severity, status, assignee_id, grid_id FROM tickets")
    assert tickets == [("smoke.fire", "critical", "dispatched", "W-09", "RJ-G1-M01")]
    audit = await rows(db, "SELECT actor, action, to_status, data->>'assignee_id' FROM ticket_events ORDER BY id")
    assert audit == [("system", "dispatched", "dispatched", "W-09"), ("system", "notify", None, None)]
    # the first step: the assignee, and for a fire the property company (none here) and the street center
    queued = await rows(db, "SELECT recipient_id, channel, status, step FROM notifications ORDER BY id")
    assert queued == [("W-09", "worker", "pending", 0), ("W-CENTER", "worker", "pending", 0)]
    assert [e["type"] for e in events] == ["alarm.open", "ticket.created"]


async def test_second_detector_and_redelivery_never_make_a_second_ticket(service: AlertService, db: Database) -> None:
    st = SmokeIncident()
    (first,) = fire(smoke("SM-0001", "alarm", T0), st)
    (second,) = fire(smoke("SM-0002", "alarm", T0 + 8000), st)
    results = [await service.apply(d) for d in (first, second, first, second)]
    assert [r.change for r in results[:2]] == [Change.OPEN, Change.UPDATE]
    assert all(r.duplicate for r in results[2:])
    assert await rows(db, "SELECT count(*) FROM tickets") == [(1,)]
    (alarm,) = await rows(db, "SELECT count, evidence->'confirmed', evidence->'detectors' FROM alarms")
    assert alarm == (2, True, ["SM-0001", "SM-0002"])


async def test_concurrent_identical_detections_apply_once(service: AlertService, db: Database) -> None:
    (d,) = fire(smoke("SM-0003", "alarm", T0, "RJ-B0002", "RJ-G1-M02"), SmokeIncident())
    results = await asyncio.gather(*(service.apply(d) for _ in range(5)), return_exceptions=True)
    assert not [r for r in results if isinstance(r, BaseException)]
    assert await rows(db, "SELECT count(*) FROM alarms") == [(1,)]
    assert await rows(db, "SELECT count(*) FROM tickets") == [(1,)]
    # M02 has no worker of its own: the leader of the parent grid takes it
    assert await rows(db, "SELECT assignee_id FROM tickets") == [("W-LEAD",)]


async def test_rule_clear_clears_the_alarm_and_a_new_incident_opens_a_new_one(
    service: AlertService, db: Database
) -> None:
    st = SmokeIncident()
    (up,) = fire(smoke("SM-0001", "alarm", T0), st)
    (down,) = fire(smoke("SM-0001", "alarm_clear", T0 + 20_000), st)
    (again,) = fire(smoke("SM-0001", "alarm", T0 + 600_000), st)
    for d in (up, down, again):
        await service.apply(d)
    got = await rows(db, "SELECT status, evidence->>'self_cleared' FROM alarms ORDER BY first_seen")
    assert got == [("cleared", "true"), ("active", None)]
    assert await rows(db, "SELECT count(*) FROM tickets") == [(2,)]
    actions = await rows(db, "SELECT action FROM ticket_events WHERE action <> 'notify' ORDER BY id")
    assert actions == [("dispatched",), ("alarm_cleared",), ("dispatched",)]


async def test_ticket_walks_its_lifecycle_with_an_audit_trail(service: AlertService, db: Database) -> None:
    (d,) = fire(smoke("SM-0001", "alarm", T0), SmokeIncident())
    tid = (await service.apply(d)).ticket_id
    assert tid is not None
    with pytest.raises(TicketError, match="resolve needs an outcome"):
        await service.transition(tid, "resolve", actor="W-09")  # no outcome: refused before any change
    await service.transition(tid, "ack", actor="W-09")
    with pytest.raises(TicketError, match="cannot ack a ticket that is acknowledged"):
        await service.transition(tid, "ack", actor="W-09")
    await service.transition(tid, "arrive", actor="W-09", note="on the 3rd floor")
    await service.transition(tid, "resolve", actor="W-09", outcome=Outcome.FALSE_ALARM, note="burnt toast")
    (t,) = await rows(
        db,
        "SELECT status, outcome, note, acknowledged_at IS NOT NULL, arrived_at IS NOT NULL, "
        "resolved_at IS NOT NULL FROM tickets",
    )
    assert t == ("resolved", "false_alarm", "burnt toast", True, True, True)
    trail = await rows(
        db, "SELECT actor, action, from_status, to_status FROM ticket_events WHERE action <> 'notify' ORDER BY id"
    )
    assert trail == [
        ("system", "dispatched", None, "dispatched"),
        ("W-09", "ack", "dispatched", "acknowledged"),
        ("W-09", "arrive", "acknowledged", "on_site"),
        ("W-09", "resolve", "on_site", "resolved"),
    ]
    assert await rows(db, "SELECT status, evidence->>'cleared_by' FROM alarms") == [("cleared", "ticket")]
    with pytest.raises(TicketError) as err:
        await service.transition("00000000-0000-0000-0000-000000000000", "ack", actor="x")
    assert err.value.not_found
