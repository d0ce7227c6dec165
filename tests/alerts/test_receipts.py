"""Delivered means seen, on a real PostgreSQL: a critical notification handed to a worker's live connection that
never confirms display (a browser tab nobody looks at) goes on to SMS at the receipt deadline; a receipt in time
stops it; the messages carry the ticket's page, the assignee's one-tap link and the code to reply with.

Before delivered meant seen, the live handover counted as delivered and the first test failed: the fire never
reached the worker's phone.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from alerts import links, receipts
from alerts.channels.delivery import DeliveryPolicy, Dispatcher, ReceiptPolicy
from alerts.channels.live import Subscription
from alerts.channels.settings import AliyunSmsSettings
from alerts.channels.sms import AliyunSmsChannel
from alerts.links import Links
from alerts.outbox import OutboxSender, PgSentLog
from alerts.service import AlertService
from tests.alerts.channels.fakes import ALI_ID, ALI_SECRET, aliyun_fake
from tests.alerts.channels.http_server import LocalHttpServer
from tests.alerts.test_dispatch import T0, Clock, detection, rows
from tests.helpers import small_registry
from whistle.domain import AlarmKind, Severity, SubjectType
from whistle.registry import import_registry, parse_registry
from whistle.store.db import Database

SECOND = 1000
KEY = b"k" * 32


@pytest.fixture
async def sms() -> AsyncIterator[LocalHttpServer]:
    server = await LocalHttpServer(aliyun_fake()).start()
    yield server
    await server.stop()


@pytest.fixture
async def service(db: Database) -> AlertService:
    await import_registry(db, parse_registry(small_registry()))
    return AlertService(db, clock=Clock(T0))


@pytest.fixture
async def sender(db: Database, service: AlertService, sms: LocalHttpServer) -> AsyncIterator[OutboxSender]:
    """The live feed of the service, then SMS through a loopback Alibaba Cloud; receipts awaited 60 s."""
    channel = AliyunSmsChannel(
        AliyunSmsSettings(
            access_key_id=ALI_ID,
            access_key_secret=ALI_SECRET,
            sign_name="数字吹哨",
            template_code="SMS_465900001",
            endpoint=sms.url + "/",
        )
    )
    clock = service.clock
    sent_log = PgSentLog(db, clock=clock)
    policy = DeliveryPolicy(quiet=None, receipt=ReceiptPolicy(timeout_s=60))
    dispatcher = Dispatcher(
        {"live": service.live, "sms.aliyun": channel}, policy=policy, sent_log=sent_log, clock=clock
    )
    async with channel:
        yield OutboxSender(
            db,
            dispatcher,
            sent_log=sent_log,
            clock=clock,
            routes={"worker": ("live", "sms.aliyun"), "contact": ("sms.aliyun",)},
            links=Links("https://whistle.example.gov.cn", KEY),
        )


async def next_notification(sub: Subscription) -> dict[str, Any]:
    """The next notification on a live subscription (alarm and ticket broadcasts come along too)."""
    for _ in range(50):
        async with asyncio.timeout(5):
            doc: dict[str, Any] = json.loads(await sub.get())
        if doc["type"] == "notification":
            return doc
    raise AssertionError("no notification among 50 messages")


def texts_to(sms: LocalHttpServer, phone: str) -> list[dict[str, Any]]:
    return [json.loads(r.query["TemplateParam"]) for r in sms.requests if r.query.get("PhoneNumbers") == phone]


W09 = "+8613900000001"  # the worker on duty in RJ-G1-M01 (small_registry)


async def test_a_critical_notification_to_a_tab_nobody_looks_at_goes_on_to_sms(
    service: AlertService, sender: OutboxSender, sms: LocalHttpServer, db: Database
) -> None:
    clock = service.clock
    assert isinstance(clock, Clock)
    tab = service.live.subscribe("W-09")  # W-09's page is open in a tab, and nobody looks at it
    tid = (await service.apply(detection())).ticket_id
    assert tid is not None
    await sender.run_once()
    shown = await next_notification(tab)
    assert shown["type"] == "notification" and shown["ticket_id"] == tid
    assert shown["url"] == f"https://whistle.example.gov.cn/m/#/t/{tid}" and "ack_url" not in shown
    assert texts_to(sms, W09) == []  # handed to the page: not yet a reason to text
    [(status, awaiting)] = await rows(
        db, "SELECT status, awaiting_channel FROM notifications WHERE recipient_id = 'W-09'"
    )
    assert (status, awaiting) == ("pending", "live")

    clock.t = T0 + 59 * SECOND
    await sender.run_once()
    assert texts_to(sms, W09) == []  # still within the receipt timeout
    clock.t = T0 + 61 * SECOND
    await sender.run_once()
    [text] = texts_to(sms, W09)  # no receipt: the fire reaches the phone
    (code,) = (await rows(db, "SELECT short_code FROM tickets"))[0]
    assert text["kind"] == "火警" and text["code"] == str(code)
    token = text["link"].removeprefix("https://whistle.example.gov.cn/m/a/")
    read = links.read(token)
    assert read is not None and read.code == code and read.valid_for(KEY, worker_id="W-09", assignment=0)
    assert await rows(db, "SELECT status, channel_used FROM notifications WHERE recipient_id = 'W-09'") == [
        ("sent", "sms.aliyun")
    ]
    attempts = await rows(db, "SELECT channel, ok, code FROM notification_attempts ORDER BY id")
    assert ("live", True, "ok") in attempts and ("live", False, "not_seen") in attempts
    history = await rows(db, "SELECT actor, action, data->>'channel' FROM ticket_events ORDER BY id")
    assert ("system", "unseen", "live") in history
    tab.close()


async def test_a_receipt_in_time_means_no_sms(
    service: AlertService, sender: OutboxSender, sms: LocalHttpServer, db: Database
) -> None:
    clock = service.clock
    assert isinstance(clock, Clock)
    page = service.live.subscribe("W-09")
    tid = (await service.apply(detection())).ticket_id
    await sender.run_once()
    shown = await next_notification(page)
    clock.t = T0 + 5 * SECOND
    # somebody else cannot confirm W-09's notification; W-09's page can, once
    assert await receipts.confirm(db, user_id="W-17", ids=[shown["id"]], via="live", now=clock.t) == 0
    assert await receipts.confirm(db, user_id="W-09", ids=[shown["id"]], via="live", now=clock.t) == 1
    assert await receipts.confirm(db, user_id="W-09", ids=[shown["id"]], via="live", now=clock.t) == 0
    assert await rows(db, "SELECT status, seen_via FROM notifications WHERE recipient_id = 'W-09'") == [
        ("sent", "live")
    ]
    clock.t = T0 + 120 * SECOND
    await sender.run_once()
    assert texts_to(sms, W09) == []
    seen = await rows(db, "SELECT actor, action, data->>'via' FROM ticket_events WHERE ticket_id = %s", tid)
    assert ("W-09", "seen", "live") in seen
    page.close()


async def test_a_receipt_racing_the_handover_still_counts(
    service: AlertService, sender: OutboxSender, sms: LocalHttpServer, db: Database
) -> None:
    """The page confirms before the sender has recorded the handover (another process, a fast phone)."""
    clock = service.clock
    assert isinstance(clock, Clock)
    await service.apply(detection())
    (key,) = (await rows(db, "SELECT dedup_key FROM notifications WHERE recipient_id = 'W-09'"))[0]
    assert await receipts.confirm(db, user_id="W-09", ids=[key], via="page", now=clock.t) == 1
    page = service.live.subscribe("W-09")
    await sender.run_once()
    assert await rows(db, "SELECT status FROM notifications WHERE recipient_id = 'W-09'") == [("sent",)]
    clock.t = T0 + 120 * SECOND
    await sender.run_once()
    assert texts_to(sms, W09) == []
    page.close()


async def test_an_ack_before_the_deadline_stops_the_fallback(
    service: AlertService, sender: OutboxSender, sms: LocalHttpServer, db: Database
) -> None:
    clock = service.clock
    assert isinstance(clock, Clock)
    tab = service.live.subscribe("W-09")
    tid = (await service.apply(detection())).ticket_id
    assert tid is not None
    await sender.run_once()
    clock.t = T0 + 30 * SECOND
    await service.transition(tid, "ack", actor="W-09")  # acknowledged from elsewhere (a call to the center)
    clock.t = T0 + 61 * SECOND
    await sender.run_once()
    assert texts_to(sms, W09) == []
    assert await rows(db, "SELECT status FROM notifications WHERE recipient_id = 'W-09'") == [("suppressed",)]
    tab.close()


async def test_without_a_live_connection_sms_goes_at_once_and_a_minor_notification_never_waits(
    service: AlertService, sender: OutboxSender, sms: LocalHttpServer, db: Database
) -> None:
    await service.apply(detection())
    await sender.run_once()
    assert len(texts_to(sms, W09)) == 1  # nobody's page is open: SMS now, no waiting
    page = service.live.subscribe("W-09")
    await service.apply(
        detection(AlarmKind.SMOKE_FAULT, severity=Severity.MINOR, subject=(SubjectType.DEVICE, "SM-0002"), source="x")
    )
    await sender.run_once()
    assert (await next_notification(page))["severity"] == "minor"
    minor = await rows(
        db,
        "SELECT n.status, n.awaiting_channel FROM notifications n JOIN tickets t ON t.id = n.ticket_id "
        "WHERE t.kind = 'smoke.fault'",
    )
    assert minor == [("sent", None)]  # shown on the page is enough for a minor one
    assert len(texts_to(sms, W09)) == 1
    page.close()
