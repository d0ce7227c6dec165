"""Web Push from the outbox to a worker's phone, on a real PostgreSQL and a loopback push service that checks VAPID
and decrypts with the browser's key (as tests/alerts/channels/test_webpush.py): the subscription is stored through
the API, the fire is pushed with its one-tap link, a tap on the notification (the service worker's receipt) is
"seen", an untapped one goes on to SMS at the deadline, and a subscription the push service says is gone is
forgotten."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from alerts import links
from alerts.channels.delivery import DeliveryPolicy, Dispatcher, ReceiptPolicy
from alerts.channels.settings import AliyunSmsSettings, WebPushSettings
from alerts.channels.sms import AliyunSmsChannel
from alerts.channels.webpush import WebPushChannel, generate_vapid_keys
from alerts.links import Links
from alerts.outbox import OutboxSender, PgSentLog
from alerts.service import AlertService
from api.app import create_app
from api.deps import ApiContext
from tests.alerts.channels.fakes import ALI_ID, ALI_SECRET, aliyun_fake
from tests.alerts.channels.http_server import LocalHttpServer, Response
from tests.alerts.channels.test_webpush import PushService
from tests.alerts.test_dispatch import T0, Clock, detection, rows
from tests.helpers import small_registry
from whistle.domain import SubjectType
from whistle.store.db import Database

TOKEN = "push-admin-token-0123456789"
KEY = b"p" * 32
W09 = "+8613900000001"


@dataclass
class Rig:
    service: AlertService
    sender: OutboxSender
    api: httpx.AsyncClient
    push: PushService
    sms: LocalHttpServer
    clock: Clock

    def texts(self) -> list[str]:
        return [r.query["PhoneNumbers"] for r in self.sms.requests]


@pytest.fixture
async def rig(db: Database) -> AsyncIterator[Rig]:
    push = PushService()
    push_server = await LocalHttpServer(push.handle).start()
    push.origin = push_server.url
    sms = await LocalHttpServer(aliyun_fake()).start()
    clock = Clock(T0)
    service = AlertService(db, clock=clock)
    private, _ = generate_vapid_keys()
    webpush = WebPushChannel(
        WebPushSettings(vapid_private_key=private, vapid_subject="mailto:ops@example.org", allow_http=True)
    )
    sms_channel = AliyunSmsChannel(
        AliyunSmsSettings(
            access_key_id=ALI_ID,
            access_key_secret=ALI_SECRET,
            sign_name="数字吹哨",
            template_code="SMS_465900001",
            endpoint=sms.url + "/",
        )
    )
    sent_log = PgSentLog(db, clock=clock)
    dispatcher = Dispatcher(
        {"live": service.live, "webpush": webpush, "sms.aliyun": sms_channel},
        policy=DeliveryPolicy(quiet=None, receipt=ReceiptPolicy(timeout_s=60)),
        sent_log=sent_log,
        clock=clock,
    )
    sender = OutboxSender(
        db,
        dispatcher,
        sent_log=sent_log,
        clock=clock,
        routes={"worker": ("live", "webpush", "sms.aliyun"), "contact": ("sms.aliyun",)},
        links=Links("https://whistle.example.gov.cn", KEY),
    )
    ctx = ApiContext(db=db, alerts=service, admin_token=TOKEN, roles=["api"])
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with (
        webpush,
        sms_channel,
        httpx.AsyncClient(
            transport=transport, base_url="http://t", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as api,
    ):
        assert (await api.post("/api/v1/registry", json=small_registry())).status_code == 200
        token = (await api.post("/api/v1/users/W-09/tokens")).json()["token"]
        api.headers["Authorization"] = f"Bearer {token}"  # from here on, W-09's phone
        yield Rig(service, sender, api, push, sms, clock)
    await push_server.stop()
    await sms.stop()


async def subscribe(rig: Rig, path: str) -> str:
    device = rig.push.device(path)
    sub = device.subscription
    body = {"endpoint": sub.endpoint, "expirationTime": None, "keys": {"p256dh": sub.p256dh, "auth": sub.auth}}
    r = await rig.api.post("/api/v1/me/push-subscriptions", json=body)
    assert r.status_code == 201, r.text
    return sub.endpoint


async def test_the_fire_is_pushed_with_its_one_tap_link_and_a_tap_is_seen(rig: Rig, db: Database) -> None:
    await subscribe(rig, "/push/w09-phone")
    tid = (await rig.service.apply(detection())).ticket_id
    await rig.sender.run_once()
    [(path, doc, headers)] = rig.push.received
    assert path == "/push/w09-phone" and headers["urgency"] == "high"
    assert (doc["ticket_id"], doc["severity"], doc["url"]) == (
        tid,
        "critical",
        f"https://whistle.example.gov.cn/m/#/t/{tid}",
    )
    read = links.read(doc["ack_url"].removeprefix("https://whistle.example.gov.cn/m/a/"))
    assert read is not None and read.valid_for(KEY, worker_id="W-09", assignment=0)
    assert rig.texts() == []  # pushed: waiting for the tap
    # the worker taps the notification: the service worker confirms it
    r = await rig.api.post("/api/v1/me/notifications/receipts", json={"ids": [doc["id"]], "via": "push_click"})
    assert r.json() == {"confirmed": 1}
    rig.clock.t = T0 + 120_000
    await rig.sender.run_once()
    assert W09 not in rig.texts()
    assert await rows(db, "SELECT status, channel_used, seen_via FROM notifications WHERE recipient_id = 'W-09'") == [
        ("sent", "webpush", "push_click")
    ]


async def test_an_untapped_push_goes_on_to_sms_and_a_gone_subscription_is_forgotten(rig: Rig, db: Database) -> None:
    await subscribe(rig, "/push/w09-phone")
    await rig.service.apply(detection())
    await rig.sender.run_once()
    assert len(rig.push.received) == 1 and rig.texts() == []
    rig.clock.t = T0 + 61_000
    await rig.sender.run_once()
    assert rig.texts() == [W09]  # the push was never tapped: SMS
    old = await subscribe(rig, "/push/w09-old")
    rig.push.answers["/push/w09-old"] = [Response(410)]
    await rig.service.apply(
        detection(building="RJ-B0002", subject=(SubjectType.BUILDING, "RJ-B0002"), source="SM-0003:1")
    )
    rig.clock.t = T0 + 62_000
    await rig.sender.run_once()
    endpoints = {r[0] for r in await rows(db, "SELECT endpoint FROM push_subscriptions WHERE user_id = 'W-09'")}
    assert old not in endpoints and len(endpoints) == 1  # 410: forgotten; the other phone is kept
    assert json.dumps(rig.push.received[-1][1]).count("ack_url") == 1
