"""People on the alerts side, on a real PostgreSQL: scope in the service's actions, a retired device's alarms
cleared with the reason, an offboarded worker's tickets routed to someone else, a household's personal data
erased with its tickets kept, phone numbers dropped from notification rows after the retention, and the live
feed's scope filter."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from alerts import queries
from alerts.channels.live import WebSocketChannel
from alerts.privacy import RetentionWorker, erase_household
from alerts.retirement import offboard_worker, retire_device
from alerts.service import AlertService
from tests.alerts.test_dispatch import T0, Clock, detection
from tests.helpers import small_registry
from whistle import users
from whistle.access import Scope
from whistle.domain import AlarmKind, Severity, SubjectType
from whistle.errors import ServiceError
from whistle.registry import import_registry, parse_registry
from whistle.store.db import Database
from whistle.timeutil import to_datetime


@pytest.fixture
async def service(db: Database) -> AlertService:
    await import_registry(db, parse_registry(small_registry()))
    return AlertService(db, clock=Clock(T0))


M01 = Scope(False, ("RJ-G1-M01",), "W-17")
M02 = Scope(False, ("RJ-G1-M02",), "W-X")


async def test_actions_outside_the_callers_scope_are_not_found(service: AlertService) -> None:
    res = await service.apply(detection())
    assert res.ticket_id is not None
    with pytest.raises(ServiceError) as err:
        await service.transition(res.ticket_id, "ack", actor="W-X", scope=M02)
    assert err.value.not_found
    with pytest.raises(ServiceError) as err:
        await service.comment(res.ticket_id, actor="W-X", note="?", scope=M02)
    assert err.value.not_found
    with pytest.raises(ServiceError) as err:  # a transfer out of a leader's subtree is refused the same way
        await service.reassign(res.ticket_id, actor="W-LEAD", grid_id="RJ-G1-M02", scope=M01)
    assert err.value.not_found or err.value.invalid
    assert await queries.get_ticket(service.db, res.ticket_id, scope=M02) is None
    assert (await queries.list_tickets(service.db, filters={}, limit=10, cursor=None, scope=M02))[0] == []
    await service.transition(res.ticket_id, "ack", actor="W-17", scope=M01)
    view = await queries.get_ticket(service.db, res.ticket_id, scope=M01)
    assert view is not None and view.history[-1].actor == "W-17"


async def test_a_retired_devices_open_alarms_are_cleared_with_the_reason(service: AlertService) -> None:
    low = detection(
        AlarmKind.SMOKE_LOW_BATTERY,
        subject=(SubjectType.DEVICE, "SM-0001"),
        severity=Severity.WARNING,
        source="SM-0001:9",
    )
    res = await service.apply(low)
    assert res.alarm_id is not None
    done = await retire_device(service, "SM-0001", actor="INT-1", reason="replaced by SM-0101")
    assert done.alarms_cleared == 1
    alarms, _ = await queries.list_alarms(service.db, filters={}, since=None, limit=10, cursor=None)
    (alarm,) = [a for a in alarms if a.id == res.alarm_id]
    assert alarm.status.value == "cleared" and alarm.evidence["reason"] == "device retired: replaced by SM-0101"
    if res.ticket_id:
        view = await queries.get_ticket(service.db, res.ticket_id)
        assert view is not None
        assert any(e.action == "alarm_cleared" and e.actor == "INT-1" for e in view.history)
    with pytest.raises(ServiceError):
        await retire_device(service, "SM-0001", actor="INT-1", reason="again")


async def test_an_offboarded_workers_tickets_are_routed_to_someone_else(service: AlertService) -> None:
    res = await service.apply(detection())
    assert res.ticket_id is not None and res.assignee_id is not None
    leaving = res.assignee_id
    token = await users.issue_token(service.db, leaving, actor="admin", ttl_s=3600)
    await users.set_password(service.db, leaving, "a long and good password", actor="admin", min_length=12)
    done = await offboard_worker(service, leaving, actor="admin", reason="调岗")
    assert done.tokens_revoked == 1 and done.reassigned == [res.ticket_id] and done.unassigned == []
    view = await queries.get_ticket(service.db, res.ticket_id)
    assert view is not None and view.ticket.assignee_id not in (None, leaving)
    (moved,) = [e for e in view.history if e.action == "reassign"]
    assert moved.actor == "admin" and moved.note == f"{leaving} offboarded: 调岗"
    assert await users.authenticate_token(service.db, token.token) is None
    assert await users.authenticate_password(service.db, leaving, "a long and good password") is None
    # the routing rules no longer choose them
    again = await service.apply(detection(building="RJ-B0001", source="SM-0002:2", ts=T0 + 1))
    assert again.assignee_id != leaving


async def test_erasure_keeps_the_tickets_and_forgets_the_person(service: AlertService, db: Database) -> None:
    elder = detection(
        AlarmKind.LONE_ELDER_INACTIVE,
        subject=(SubjectType.HOUSEHOLD, "RJ-H000001"),
        household="RJ-H000001",
        source="WM-000001:1",
    )
    res = await service.apply(elder)
    assert res.ticket_id is not None and res.queued > 0
    async with db.connection() as conn:
        cur = await conn.execute("SELECT body FROM notifications WHERE recipient_id LIKE 'contact:%'")
        (body,) = [r[0] for r in await cur.fetchall()]
    assert body["recipient"]["phone"] == "+8613800000000"
    done = await erase_household(db, "RJ-H000001", actor="admin", reason="本人申请")
    assert (done.contacts_erased, done.notifications_scrubbed) == (1, 1)
    async with db.connection() as conn:
        cur = await conn.execute("SELECT status, body FROM notifications WHERE recipient_id LIKE 'contact:%'")
        ((status, body),) = await cur.fetchall()
        contacts = await (await conn.execute("SELECT contacts, erased_at IS NOT NULL FROM households")).fetchone()
        text = json.dumps([r async for r in await conn.execute("SELECT * FROM notifications")], default=str)
    assert status == "suppressed" and body["recipient"] == {
        "id": "contact:RJ-H000001:0",
        "name": "",
        "phone": None,
        "type": "contact",
    }
    assert contacts == ([], True) and "+8613800000000" not in text and "王某" not in text
    view = await queries.get_ticket(db, res.ticket_id)
    assert view is not None and view.ticket.household_id == "RJ-H000001"  # the history stays, by id only


async def test_notification_rows_forget_phones_after_the_retention(service: AlertService, db: Database) -> None:
    res = await service.apply(detection())
    assert res.ticket_id is not None
    await service.transition(res.ticket_id, "ack", actor="W-09")  # the unsent escalation rows are settled now
    worker = RetentionWorker(db, retention_s=30 * 86400.0, clock=lambda: T0 + 29 * 86400_000)
    assert await worker.run_once() == 0  # not yet
    async with db.connection() as conn:
        phones = await (
            await conn.execute("SELECT count(*) FROM notifications WHERE body->'recipient'->>'phone' IS NOT NULL")
        ).fetchone()
    assert phones is not None and phones[0] > 0
    later = RetentionWorker(db, retention_s=30 * 86400.0, clock=lambda: T0 + 31 * 86400_000)
    assert await later.run_once() == phones[0]
    async with db.connection() as conn:
        left = await (
            await conn.execute("SELECT count(*) FROM notifications WHERE body->'recipient'->>'phone' IS NOT NULL")
        ).fetchone()
        created = await (await conn.execute("SELECT min(created_at) FROM notifications")).fetchone()
    assert left == (0,)
    assert created is not None and created[0] < to_datetime(T0) + timedelta(days=1)


def test_the_live_feed_keeps_each_subscriber_to_its_scope() -> None:
    hub = WebSocketChannel()
    screen = hub.subscribe()
    worker = hub.subscribe("W-17", accepts=M01.sees_event)
    other = hub.subscribe(None, accepts=M02.sees_event)
    hub.announce({"type": "ticket.created", "ticket_id": "t1", "grid_id": "RJ-G1-M01", "assignee_id": "W-09"})
    hub.announce({"type": "ticket.reassign", "ticket_id": "t2", "grid_id": "RJ-G1-M02", "assignee_id": "W-17"})
    hub.announce({"type": "alarm.clear", "alarm_id": "a1"})  # no place: only the unscoped
    hub.publish({"type": "notification", "id": "n1", "recipient_id": "W-17"}, recipient_id="W-17")
    hub.publish({"type": "notification", "id": "n2", "recipient_id": "W-09"}, recipient_id="W-09")
    got = {
        name: [json.loads(sub._items[i]) for i in range(len(sub))]
        for name, sub in (("screen", screen), ("worker", worker), ("other", other))
    }
    assert [m.get("ticket_id") or m.get("id") or m.get("alarm_id") for m in got["screen"]] == [
        "t1",
        "t2",
        "a1",
        "n1",
        "n2",
    ]
    assert [m.get("ticket_id") or m.get("id") for m in got["worker"]] == ["t1", "t2", "n1"]
    assert [m.get("ticket_id") or m.get("id") for m in got["other"]] == ["t2"]
