"""DingTalk and WeCom group robots, and the generic signed webhook, against local fakes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from alerts.channels.robots import DingTalkChannel, WeComChannel, mainland_number
from alerts.channels.settings import DingTalkSettings, WebhookSettings, WeComSettings
from alerts.channels.webhook import WebhookChannel
from tests.alerts.channels.conftest import Serve
from tests.alerts.channels.http_server import Request, Response
from tests.alerts.channels.support import WORKER, notification
from tests.alerts.channels.verifiers import verify_dingtalk, verify_webhook
from whistle.domain import AlarmKind, Severity

DING_SECRET = "SEC5b7d3c0a1f2e4d6b8a9c0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2"
DING_TOKEN = "6f1c2b3a4d5e"
WECOM_KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
HOOK_SECRET = "hook-secret-0123456789abcdef"


def dingtalk_fake(answers: list[dict[str, Any]] | None = None) -> Any:
    queue = list(answers or [])

    async def handle(req: Request) -> Response:
        if req.query.get("access_token") != DING_TOKEN:
            return Response.json({"errcode": 300001, "errmsg": "token is not exist"})
        error = verify_dingtalk(req, DING_SECRET)
        if error:
            return Response.json({"errcode": 310000, "errmsg": f"sign not match, {error}"})
        doc = req.json()
        if doc.get("msgtype") != "markdown" or not doc["markdown"].get("title") or not doc["markdown"].get("text"):
            return Response.json({"errcode": 40035, "errmsg": "缺少参数 markdown"})
        return Response.json(queue.pop(0) if queue else {"errcode": 0, "errmsg": "ok"})

    return handle


def dingtalk(url: str, secret: str = DING_SECRET) -> DingTalkChannel:
    return DingTalkChannel(DingTalkSettings(webhook=f"{url}/robot/send?access_token={DING_TOKEN}", secret=secret))


async def test_dingtalk_posts_a_signed_markdown_message_mentioning_the_worker(serve: Serve) -> None:
    server = await serve(dingtalk_fake())
    async with dingtalk(server.url) as channel:
        attempt = await channel.send(
            notification(url="https://whistle.example/tickets/T-1001", ack_url="https://whistle.example/m/a/TOKEN")
        )
    assert attempt.ok and attempt.code == "0"
    assert attempt.address == "dingtalk robot @+86138****5678"
    [req] = server.requests
    assert req.path == "/robot/send"
    doc = req.json()
    assert doc["at"] == {"atMobiles": ["13812345678"], "isAtAll": False}
    assert doc["markdown"]["title"] == "【紧急】火警：瑞金二路 1 弄 3 号 烟感报警"
    text = doc["markdown"]["text"]
    assert text.startswith("### 【紧急】火警：") and "- 工单：T-1001" in text and "- 时间：11-24 10:15" in text
    assert "[查看工单](https://whistle.example/tickets/T-1001)" in text
    assert "[一键接单](https://whistle.example/m/a/TOKEN)" in text  # the assignee's one-tap link
    assert text.endswith("@13812345678")


async def test_dingtalk_fake_refuses_a_wrong_secret(serve: Serve) -> None:
    server = await serve(dingtalk_fake())
    async with dingtalk(server.url, secret="SECwrong") as channel:
        attempt = await channel.send(notification())
    assert not attempt.ok and not attempt.retryable and attempt.code == "310000"


async def test_dingtalk_too_fast_is_retried_after_a_minute(serve: Serve) -> None:
    server = await serve(dingtalk_fake([{"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}]))
    async with dingtalk(server.url) as channel:
        attempt = await channel.send(notification())
    assert not attempt.ok and attempt.retryable and attempt.retry_after_ms == 60_000


def test_mainland_number() -> None:
    assert mainland_number("+8613812345678") == "13812345678"
    assert mainland_number("008613812345678") == "13812345678"
    assert mainland_number("13812345678") == "13812345678"


def wecom_fake(answers: list[dict[str, Any]] | None = None) -> Any:
    queue = list(answers or [])

    async def handle(req: Request) -> Response:
        if req.path != "/cgi-bin/webhook/send" or req.query.get("key") != WECOM_KEY:
            return Response.json({"errcode": 93000, "errmsg": "invalid webhook url"})
        doc = req.json()
        content = doc.get("markdown", {}).get("content", "")
        if doc.get("msgtype") != "markdown" or not content or len(content.encode()) > 4096:
            return Response.json({"errcode": 40058, "errmsg": "markdown.content exceed max length 4096"})
        return Response.json(queue.pop(0) if queue else {"errcode": 0, "errmsg": "ok"})

    return handle


def wecom(url: str, key: str = WECOM_KEY) -> WeComChannel:
    return WeComChannel(WeComSettings(key=key, endpoint=f"{url}/cgi-bin/webhook/send"))


async def test_wecom_posts_markdown_with_the_key_and_mentions_by_userid(serve: Serve) -> None:
    server = await serve(wecom_fake())
    recipient = type(WORKER)(id="W-17", name="李小龙", phone="+8613812345678", addresses={"wecom": "lixiaolong"})
    async with wecom(server.url) as channel:
        attempt = await channel.send(notification(recipient=recipient, body="长" * 3000))
    assert attempt.ok
    content = server.requests[0].json()["markdown"]["content"]
    assert len(content.encode()) <= 4096 and "长…\n" in content and content.endswith("<@lixiaolong>")
    quiet = notification(severity=Severity.MINOR, kind=AlarmKind.GROUP_RENTAL_SUSPECTED, recipient=recipient)
    async with wecom(server.url) as channel:
        await channel.send(quiet)
    assert server.requests[1].json()["markdown"]["content"].endswith("<@lixiaolong>")


@pytest.mark.parametrize(("errcode", "retryable"), [(45009, True), (-1, True), (93000, False)])
async def test_wecom_errcodes(serve: Serve, errcode: int, retryable: bool) -> None:
    server = await serve(wecom_fake([{"errcode": errcode, "errmsg": "x"}]))
    async with wecom(server.url) as channel:
        attempt = await channel.send(notification())
    assert not attempt.ok and attempt.retryable is retryable and attempt.code == str(errcode)


async def test_wecom_fake_refuses_a_wrong_key(serve: Serve) -> None:
    server = await serve(wecom_fake())
    async with wecom(server.url, key="not-the-key") as channel:
        attempt = await channel.send(notification())
    assert not attempt.ok and attempt.code == "93000"


# --- generic webhook ------------------------------------------------------------------------------


def webhook_fake(statuses: list[int] | None = None) -> Any:
    queue = list(statuses or [])

    async def handle(req: Request) -> Response:
        error = verify_webhook(req, HOOK_SECRET)
        if error:
            return Response(401, error.encode())
        status = queue.pop(0) if queue else 202
        return Response(status, b"{}", {"Retry-After": "3"} if status == 429 else {})

    return handle


def webhook(url: str, secret: str = HOOK_SECRET, include_contact: bool = False) -> WebhookChannel:
    return WebhookChannel(WebhookSettings(url=f"{url}/hooks/whistle", secret=secret, include_contact=include_contact))


async def test_webhook_is_signed_with_idempotency_key_and_masked_contact(serve: Serve) -> None:
    server = await serve(webhook_fake())
    async with webhook(server.url) as channel:
        attempt = await channel.send(notification())
    assert attempt.ok and attempt.status == 202 and attempt.address == server.url
    [req] = server.requests
    assert req.headers["idempotency-key"] == "n-1" and req.headers["x-whistle-event"] == "notification"
    doc = req.json()
    assert doc["recipient"] == {"id": "W-17", "name": "李*龙", "phone": "+86138****5678"}
    assert (doc["id"], doc["kind"], doc["severity"], doc["ticket_id"]) == ("n-1", "smoke.fire", "critical", "T-1001")


async def test_webhook_can_carry_the_full_contact(serve: Serve) -> None:
    server = await serve(webhook_fake())
    async with webhook(server.url, include_contact=True) as channel:
        assert (await channel.send(notification())).ok
    assert server.requests[0].json()["recipient"] == {"id": "W-17", "name": "李小龙", "phone": "+8613812345678"}


async def test_webhook_receiver_refuses_a_wrong_secret(serve: Serve) -> None:
    server = await serve(webhook_fake())
    async with webhook(server.url, secret="other") as channel:
        attempt = await channel.send(notification())
    assert not attempt.ok and not attempt.retryable and attempt.status == 401


@pytest.mark.parametrize(
    ("status", "retryable", "retry_after"), [(429, True, 3000), (503, True, None), (400, False, None)]
)
async def test_webhook_status_classes(serve: Serve, status: int, retryable: bool, retry_after: int | None) -> None:
    server = await serve(webhook_fake([status]))
    async with webhook(server.url) as channel:
        attempt = await channel.send(notification())
    assert not attempt.ok and attempt.retryable is retryable and attempt.retry_after_ms == retry_after
    assert json.loads(server.requests[0].body)["id"] == "n-1"
