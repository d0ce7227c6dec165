"""Notification caps on a real PostgreSQL: per recipient per hour, SMS per hour, the cap's own alarm to the
operations center, and life safety never held back."""

from __future__ import annotations

import os
from contextlib import AsyncExitStack
from typing import Any

import pytest

from alerts.caps import BudgetedSms, CapHit, Caps, NotificationCaps, cap_detection
from alerts.channels.base import Attempt, Notification
from alerts.channels.delivery import DeliveryPolicy, Dispatcher
from alerts.outbox import OutboxSender, PgSentLog
from alerts.service import AlertService
from app.dispatch import start_dispatch
from tests.helpers import small_registry
from whistle.domain import AlarmKind, Detection, Severity, SubjectType
from whistle.registry import import_registry, parse_registry
from whistle.store.db import Database

T0 = 1_795_000_000_000  # 2026-11-18, 19:06:40 Beijing time (outside quiet hours)
HOUR = 3_600_000


class Clock:
    def __init__(self, t: int) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


class Recorder:
    """A provider stand-in: reaches everyone, remembers what it was handed, answers ok (or not)."""

    def __init__(self, name: str, ok: bool = True) -> None:
        self._name = name
        self.ok = ok
        self.sent: list[Notification] = []

    @property
    def name(self) -> str:
        return self._name

    async def send(self, message: Notification) -> Attempt:
        self.sent.append(message)
        return Attempt(self._name, message.id, ok=self.ok, retryable=False, code="ok" if self.ok else "refused")


def charging(n: int, *, ts: int = T0) -> Detection:
    """An e-bike charging in flat n of RJ-B0001 (major, not life safety): a ticket for W-09."""
    return Detection(
        AlarmKind.EBIKE_INDOOR_CHARGING,
        Severity.MAJOR,
        SubjectType.HOUSEHOLD,
        f"RJ-H00000{n}",
        ts,
        evidence={"power_w": 900},
        building_id="RJ-B0001",
        grid_id="RJ-G1-M01",
        source_id=f"EB-{n}:{ts}",
    )


def life_safety(kind: AlarmKind, subject: str, ts: int = T0) -> Detection:
    return Detection(
        kind,
        Severity.CRITICAL,
        SubjectType.BUILDING if kind is AlarmKind.SMOKE_FIRE else SubjectType.DEVICE,
        subject,
        ts,
        evidence={"why": "test"},
        building_id="RJ-B0001",
        grid_id="RJ-G1-M01",
        source_id=f"{subject}:{ts}",
    )


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
async def service(db: Database, clock: Clock) -> AlertService:
    reg = small_registry()
    reg["households"] += [{"id": f"RJ-H00000{n}", "building_id": "RJ-B0001"} for n in range(2, 9)]
    await import_registry(db, parse_registry(reg))
    return AlertService(db, clock=clock)


def sender(
    db: Database, clock: Clock, channels: dict[str, Any], caps: NotificationCaps, route: tuple[str, ...]
) -> OutboxSender:
    return OutboxSender(
        db,
        Dispatcher(channels, policy=DeliveryPolicy(quiet=None, rate=None), sent_log=PgSentLog(db, clock=clock)),
        sent_log=PgSentLog(db, clock=clock),
        clock=clock,
        routes={"worker": route, "contact": route},
        caps=caps,
    )


async def rows(db: Database, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    async with db.connection() as conn:
        return await (await conn.execute(sql, args)).fetchall()


async def drain(out: OutboxSender) -> None:
    for _ in range(20):  # bounded
        if await out.run_once() == 0:
            return


def caps_for(service: AlertService, clock: Clock, caps: Caps) -> NotificationCaps:
    async def raise_alarm(hit: CapHit) -> None:
        await service.apply(cap_detection(hit))

    return NotificationCaps(service.db, caps, on_cap=raise_alarm, clock=clock)


async def test_a_recipient_over_the_cap_gets_no_more_and_the_operations_center_is_told(
    service: AlertService, db: Database, clock: Clock
) -> None:
    for n in range(2, 7):  # five tickets for W-09 in one hour
        await service.apply(charging(n))
    live = Recorder("live")
    caps = caps_for(service, clock, Caps(recipient_per_hour=3, sms_per_hour=0))
    await drain(sender(db, clock, {"live": live}, caps, ("live",)))
    to_worker = [m for m in live.sent if m.recipient.id == "W-09"]
    assert len(to_worker) == 3  # the claims ran concurrently; the cap held exactly
    got = await rows(
        db,
        "SELECT status, count(*) FROM notifications WHERE recipient_id = 'W-09' GROUP BY status ORDER BY status",
    )
    assert got == [("sent", 3), ("suppressed", 2)]
    assert await rows(
        db, "SELECT DISTINCT last_error FROM notifications WHERE status = 'suppressed' AND recipient_id = 'W-09'"
    ) == [("capped: 3 notifications per hour to this recipient",)]
    # the cap raised its own alarm, once, as a ticket for the street center, whose notification went out
    alarm = await rows(
        db,
        "SELECT a.severity, a.subject_type, a.subject_id, a.evidence->>'cap', t.assignee_id FROM alarms a "
        "JOIN ticket_alarms ta ON ta.alarm_id = a.id JOIN tickets t ON t.id = ta.ticket_id "
        "WHERE a.kind = 'system.notification_cap'",
    )
    assert alarm == [("major", "system", "recipient:W-09", "3", "W-CENTER")]
    center = [m for m in live.sent if m.recipient.id == "W-CENTER"]
    assert [m.kind for m in center] == [AlarmKind.SYSTEM_NOTIFICATION_CAP]
    assert "通知达到上限" in center[0].title
    # the next hour the recipient is reachable again
    clock.t = T0 + HOUR
    await service.apply(charging(7, ts=clock.t))
    await drain(sender(db, clock, {"live": live}, caps, ("live",)))
    assert len([m for m in live.sent if m.recipient.id == "W-09"]) == 4


async def test_life_safety_is_never_capped(service: AlertService, db: Database, clock: Clock) -> None:
    live = Recorder("live")
    caps = caps_for(service, clock, Caps(recipient_per_hour=1, sms_per_hour=0))
    out = sender(db, clock, {"live": live}, caps, ("live",))
    await service.apply(charging(2))  # uses up W-09's single notification of the hour
    await drain(out)
    await service.apply(life_safety(AlarmKind.SMOKE_FIRE, "RJ-B0001"))
    await service.apply(life_safety(AlarmKind.ELEVATOR_TRAPPED, "EL-0001"))
    await service.apply(charging(3))  # over the cap
    await drain(out)
    kinds = sorted(m.kind.value for m in live.sent if m.recipient.id == "W-09")
    assert kinds.count("smoke.fire") == 1 and kinds.count("elevator.trapped") == 1
    assert kinds.count("ebike.indoor_charging") == 1  # one of the two chargings, not both
    assert out.capped == 1
    assert await caps.used("recipient:W-09") == 3  # the life-safety ones were counted, not stopped


async def test_the_sms_budget_goes_on_to_the_next_channel_and_raises_its_alarm(
    service: AlertService, db: Database, clock: Clock
) -> None:
    for n in range(2, 6):
        await service.apply(charging(n))
    sms, webhook = Recorder("sms.aliyun"), Recorder("webhook")
    caps = caps_for(service, clock, Caps(recipient_per_hour=0, sms_per_hour=2))
    channels = {"sms.aliyun": BudgetedSms(sms, caps), "webhook": webhook}
    out = sender(db, clock, channels, caps, ("sms.aliyun", "webhook"))
    await drain(out)
    # the budget, exactly, though the claims ran concurrently; the rest went on to the next channel;
    # the cap's own alarm to the street center is exempt and went by SMS
    assert [m.kind for m in sms.sent].count(AlarmKind.EBIKE_INDOOR_CHARGING) == 2
    assert [m.kind for m in webhook.sent] == [AlarmKind.EBIKE_INDOOR_CHARGING] * 2
    assert [(m.kind, m.recipient.id) for m in sms.sent[2:]] == [(AlarmKind.SYSTEM_NOTIFICATION_CAP, "W-CENTER")]
    assert await rows(db, "SELECT count(*) FROM notifications WHERE status <> 'sent'") == [(0,)]
    assert await rows(db, "SELECT subject_id FROM alarms WHERE kind = 'system.notification_cap'") == [("sms",)]
    # a fire still goes by SMS with the budget spent, and is counted
    await service.apply(life_safety(AlarmKind.SMOKE_FIRE, "RJ-B0001"))
    await drain(out)
    assert sorted(m.recipient.id for m in sms.sent[3:] if m.kind is AlarmKind.SMOKE_FIRE) == ["W-09", "W-CENTER"]
    assert await caps.used("sms") == 5


async def test_a_failed_sms_is_not_counted(service: AlertService, db: Database, clock: Clock) -> None:
    await service.apply(charging(2))
    down = Recorder("sms.aliyun", ok=False)
    caps = caps_for(service, clock, Caps(recipient_per_hour=5, sms_per_hour=5))
    out = sender(db, clock, {"sms.aliyun": BudgetedSms(down, caps)}, caps, ("sms.aliyun",))
    assert await out.run_once() == 1
    assert len(down.sent) == 1
    assert await caps.used("sms") == 0
    assert await caps.used("recipient:W-09") == 0  # not delivered: not counted against the recipient either


async def test_the_alerts_role_wires_the_caps_from_the_environment(
    service: AlertService, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    secret = tmp_path / "aliyun_secret"
    secret.write_text("a-secret-from-a-file\n")
    env = {
        "WHISTLE_NOTIFY_RECIPIENT_MAX_PER_HOUR": "7",
        "WHISTLE_NOTIFY_SMS_MAX_PER_HOUR": "11",
        "WHISTLE_SMS_ALIYUN_ACCESS_KEY_ID": "LTAI-test",
        "WHISTLE_SMS_ALIYUN_ACCESS_KEY_SECRET_FILE": str(secret),
        "WHISTLE_SMS_ALIYUN_SIGN_NAME": "数字吹哨",
        "WHISTLE_SMS_ALIYUN_TEMPLATE_CODE": "SMS_1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert "WHISTLE_SMS_ALIYUN_ACCESS_KEY_SECRET" not in os.environ
    async with AsyncExitStack() as stack:
        out, _ = await start_dispatch(stack, service)
        assert out.caps is not None
        assert out.caps.caps == Caps(recipient_per_hour=7, sms_per_hour=11)
        sms = out.dispatcher.channels["sms.aliyun"]
        assert isinstance(sms, BudgetedSms) and sms.caps is out.caps
        assert "sms.aliyun" in out.routes["contact"]
