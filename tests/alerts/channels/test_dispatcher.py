"""The dispatcher: retries with backoff, failover, quiet hours, rate limits and idempotency."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import time

import pytest

from alerts.channels.base import EXCEPTION, NO_ADDRESS, NOT_CONFIGURED, TIMEOUT, Attempt, Notification
from alerts.channels.delivery import (
    Backoff,
    DeliveryPolicy,
    DeliveryStatus,
    Dispatcher,
    MemorySentLog,
    QuietHours,
    RateLimit,
)
from alerts.channels.settings import AliyunSmsSettings, WebhookSettings
from alerts.channels.sms import AliyunSmsChannel
from alerts.channels.webhook import WebhookChannel
from tests.alerts.channels.conftest import Serve
from tests.alerts.channels.http_server import Request, Response
from tests.alerts.channels.support import T0, notification
from tests.alerts.channels.verifiers import verify_webhook
from whistle.domain import AlarmKind, Severity

NIGHT = T0 + 13 * 3_600_000  # 23:15 in Shanghai
Outcome = str | tuple[bool, str] | tuple[bool, str, int] | BaseException


class Scripted:
    """A channel that answers from a script: "ok", (retryable, code[, retry_after_ms]), an exception,
    or "hang" (never answers)."""

    def __init__(self, name: str, *script: Outcome | str) -> None:
        self.name = name
        self.script = list(script)
        self.sent: list[str] = []

    async def send(self, message: Notification) -> Attempt:
        self.sent.append(message.id)
        step = self.script.pop(0) if self.script else "ok"
        if isinstance(step, BaseException):
            raise step
        if step == "hang":
            await asyncio.sleep(3600)
        if step == "ok":
            return Attempt(self.name, message.id, ok=True, retryable=False, code="OK")
        assert isinstance(step, tuple)
        retryable, code, *wait = step
        return Attempt(
            self.name, message.id, ok=False, retryable=retryable, code=code, retry_after_ms=wait[0] if wait else None
        )


class Clock:
    def __init__(self, now: int = T0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> int:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += int(seconds * 1000)


def dispatcher(*channels: Scripted, clock: Clock | None = None, **policy: object) -> tuple[Dispatcher, Clock]:
    clock = clock or Clock()
    base = DeliveryPolicy(backoff=Backoff(base_s=1, cap_s=30), rate=None)
    d = Dispatcher(
        {c.name: c for c in channels},
        policy=replace(base, **policy),
        clock=clock,
        sleep=clock.sleep,
        rand=lambda: 1.0,
    )
    return d, clock


async def test_delivered_on_the_first_channel() -> None:
    sms, push = Scripted("sms"), Scripted("push")
    d, clock = dispatcher(sms, push)
    result = await d.deliver(notification(), ["sms", "push"])
    assert result.status is DeliveryStatus.DELIVERED and result.channel == "sms"
    assert [a.channel for a in result.attempts] == ["sms"] and push.sent == []
    assert clock.slept == []


async def test_retries_with_exponential_backoff_then_delivers() -> None:
    sms = Scripted("sms", (True, "500"), (True, "500"), "ok")
    d, clock = dispatcher(sms)
    result = await d.deliver(notification(severity=Severity.MAJOR, kind=AlarmKind.ELEVATOR_FAULT), ["sms"])
    assert result.status is DeliveryStatus.DELIVERED
    assert [a.ok for a in result.attempts] == [False, False, True]
    assert clock.slept == [1.0, 2.0]


async def test_critical_fails_over_to_the_next_channel() -> None:
    sms = Scripted("sms", (True, "500"), (True, "500"))
    push = Scripted("push", (False, "410"))
    robot = Scripted("robot")
    d, _ = dispatcher(sms, push, robot)
    result = await d.deliver(notification(), ["sms", "push", "robot"])
    assert result.status is DeliveryStatus.DELIVERED and result.channel == "robot"
    assert [(a.channel, a.code) for a in result.attempts] == [
        ("sms", "500"),
        ("sms", "500"),
        ("push", "410"),
        ("robot", "OK"),
    ]


async def test_lower_severities_do_not_fail_over() -> None:
    sms = Scripted("sms", (True, "500"), (True, "500"), (True, "500"))
    push = Scripted("push")
    d, _ = dispatcher(sms, push)
    result = await d.deliver(notification(severity=Severity.MAJOR), ["sms", "push"])
    assert result.status is DeliveryStatus.FAILED and result.reason == "all_failed"
    assert len(result.attempts) == 3 and push.sent == []


async def test_unreachable_and_unconfigured_channels_are_skipped_for_any_severity() -> None:
    live = Scripted("live", (False, NO_ADDRESS))
    sms = Scripted("sms")
    d, _ = dispatcher(live, sms)
    result = await d.deliver(notification(severity=Severity.WARNING, created_at=T0), ["live", "dingtalk", "sms"])
    assert result.status is DeliveryStatus.DELIVERED and result.channel == "sms"
    assert [a.code for a in result.attempts] == [NO_ADDRESS, NOT_CONFIGURED, "OK"]


async def test_quiet_hours_defer_minor_but_never_critical() -> None:
    sms = Scripted("sms")
    d, clock = dispatcher(sms, clock=Clock(NIGHT), quiet=QuietHours(time(22), time(7)))
    minor = await d.deliver(notification(id="m", severity=Severity.MINOR), ["sms"])
    assert minor.status is DeliveryStatus.DEFERRED and minor.reason == "quiet_hours"
    assert minor.deferred_until == T0 + 21 * 3_600_000 - 15 * 60_000  # 07:00 the next morning
    assert minor.attempts == () and sms.sent == []
    fire = await d.deliver(notification(id="f"), ["sms"])
    assert fire.status is DeliveryStatus.DELIVERED
    # The deferred one was not marked as sent: it goes out when called again in the morning.
    clock.now = minor.deferred_until
    assert (await d.deliver(notification(id="m", severity=Severity.MINOR), ["sms"])).status is DeliveryStatus.DELIVERED


async def test_recipient_rate_limit_defers_but_critical_bypasses_it() -> None:
    sms = Scripted("sms")
    d, clock = dispatcher(sms, rate=RateLimit(burst=2, per_hour=60))
    results = [await d.deliver(notification(id=f"w{i}", severity=Severity.MAJOR), ["sms"]) for i in range(3)]
    assert [r.status for r in results] == [DeliveryStatus.DELIVERED, DeliveryStatus.DELIVERED, DeliveryStatus.DEFERRED]
    assert results[2].reason == "rate_limited" and results[2].deferred_until == clock.now + 60_000
    fire = await d.deliver(notification(id="fire"), ["sms"])
    assert fire.status is DeliveryStatus.DELIVERED
    other = await d.deliver(
        notification(id="x", severity=Severity.MAJOR, recipient=replace(notification().recipient, id="W-2")), ["sms"]
    )
    assert other.status is DeliveryStatus.DELIVERED  # limits are per recipient


async def test_a_long_provider_rate_limit_defers_a_minor_notification() -> None:
    sms = Scripted("sms", (True, "isv.BUSINESS_LIMIT_CONTROL", 60_000))
    d, clock = dispatcher(sms)
    result = await d.deliver(notification(severity=Severity.MINOR, created_at=T0), ["sms"])
    assert result.status is DeliveryStatus.DEFERRED and result.reason == "provider_rate_limited"
    assert result.deferred_until == clock.now + 60_000 and len(result.attempts) == 1


async def test_a_notification_id_is_delivered_once() -> None:
    sms = Scripted("sms")
    log = MemorySentLog()
    d, _ = dispatcher(sms)
    d.sent_log = log
    first = await d.deliver(notification(), ["sms"])
    again = await d.deliver(notification(), ["sms"])
    assert first.status is DeliveryStatus.DELIVERED and again.status is DeliveryStatus.DUPLICATE
    assert sms.sent == ["n-1"] and log.channel_of("n-1") == "sms"


async def test_concurrent_deliveries_of_one_id_send_once() -> None:
    gate = asyncio.Event()

    entered = asyncio.Event()

    class Slow(Scripted):
        async def send(self, message: Notification) -> Attempt:
            entered.set()
            await gate.wait()
            return await super().send(message)

    sms = Slow("sms")
    d, _ = dispatcher(sms)
    first = asyncio.create_task(d.deliver(notification(), ["sms"]))
    async with asyncio.timeout(2):
        await entered.wait()
        second = await d.deliver(notification(), ["sms"])
        gate.set()
        assert (await first).status is DeliveryStatus.DELIVERED
    assert second.status is DeliveryStatus.DUPLICATE and sms.sent == ["n-1"]


async def test_a_failed_notification_can_be_tried_again_later() -> None:
    sms = Scripted("sms", (False, "isv.AMOUNT_NOT_ENOUGH"), "ok")
    d, _ = dispatcher(sms)
    assert (await d.deliver(notification(severity=Severity.MINOR), ["sms"])).status is DeliveryStatus.FAILED
    assert (await d.deliver(notification(severity=Severity.MINOR), ["sms"])).status is DeliveryStatus.DELIVERED


async def test_a_hanging_channel_times_out_and_a_raising_one_is_recorded() -> None:
    stuck = Scripted("stuck", "hang")
    broken = Scripted("broken", RuntimeError("boom for +8613812345678"))
    sms = Scripted("sms")
    d, _ = dispatcher(stuck, broken, sms, attempt_timeout_s=0.05, critical_max_attempts=1)
    async with asyncio.timeout(5):
        result = await d.deliver(notification(), ["stuck", "broken", "sms"])
    assert result.status is DeliveryStatus.DELIVERED and result.channel == "sms"
    timeout, raised, _ = result.attempts
    assert (timeout.code, timeout.retryable) == (TIMEOUT, True)
    assert (raised.code, raised.retryable) == (EXCEPTION, True)
    assert raised.error == "RuntimeError: boom for +86138****5678"


async def test_an_empty_route_fails() -> None:
    d, _ = dispatcher()
    result = await d.deliver(notification(), [])
    assert result.status is DeliveryStatus.FAILED and result.reason == "no_route"


# --- end to end, over real HTTP -------------------------------------------------------------------


async def test_a_fire_fails_over_from_a_broken_sms_gateway_to_the_webhook(serve: Serve) -> None:
    async def gateway_down(req: Request) -> Response:
        return Response.json({"Code": "ServiceUnavailable", "Message": "down"}, status=503)

    received: list[Request] = []

    async def receiver(req: Request) -> Response:
        if verify_webhook(req, "hook-secret-0123456789abcdef"):
            return Response(401)
        received.append(req)
        return Response(200)

    sms_server = await serve(gateway_down)
    hook_server = await serve(receiver)
    sms = AliyunSmsChannel(
        AliyunSmsSettings(
            access_key_id="id", access_key_secret="secret", sign_name="s", template_code="t", endpoint=sms_server.url
        )
    )
    hook = WebhookChannel(WebhookSettings(url=hook_server.url + "/hook", secret="hook-secret-0123456789abcdef"))
    slept: list[float] = []

    async def no_wait(seconds: float) -> None:
        slept.append(seconds)

    async with sms, hook:
        d = Dispatcher({"sms.aliyun": sms, "webhook": hook}, sleep=no_wait, rand=lambda: 0.0)
        result = await d.deliver(notification(), ["sms.aliyun", "webhook"])
        again = await d.deliver(notification(), ["sms.aliyun", "webhook"])
    assert result.status is DeliveryStatus.DELIVERED and result.channel == "webhook"
    assert [(a.channel, a.status, a.code) for a in result.attempts] == [
        ("sms.aliyun", 503, "ServiceUnavailable"),
        ("sms.aliyun", 503, "ServiceUnavailable"),
        ("webhook", 200, "200"),
    ]
    assert slept == [0.5] and len(sms_server.requests) == 2 and len(received) == 1
    assert again.status is DeliveryStatus.DUPLICATE and len(received) == 1


@pytest.mark.parametrize("severity", [Severity.MINOR, Severity.WARNING])
async def test_low_severities_wait_for_morning_end_to_end(severity: Severity) -> None:
    sms = Scripted("sms")
    d = Dispatcher({"sms": sms}, clock=lambda: NIGHT)
    result = await d.deliver(notification(severity=severity), ["sms"])
    assert result.status is DeliveryStatus.DEFERRED and sms.sent == []
