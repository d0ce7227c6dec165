"""SMS channels against local fakes of Alibaba Cloud and Tencent Cloud that verify every signature."""

from __future__ import annotations

import json

import httpx
import pytest

from alerts.channels.base import NO_ADDRESS, TIMEOUT, Recipient
from alerts.channels.settings import AliyunSmsSettings, TencentSmsSettings
from alerts.channels.sms import AliyunSmsChannel, TencentSmsChannel
from tests.alerts.channels.conftest import Serve
from tests.alerts.channels.fakes import ALI_ID, ALI_SECRET, TC_ID, TC_KEY, aliyun_fake, tencent_fake
from tests.alerts.channels.http_server import Request, Response
from tests.alerts.channels.support import notification

# --- Alibaba Cloud ------------------------------------------------------------------------------


def aliyun(url: str, secret: str = ALI_SECRET, timeout_s: float = 5.0) -> AliyunSmsChannel:
    return AliyunSmsChannel(
        AliyunSmsSettings(
            access_key_id=ALI_ID,
            access_key_secret=secret,
            sign_name="数字吹哨",
            template_code="SMS_465900001",
            endpoint=url + "/",
            timeout_s=timeout_s,
        )
    )


ONE_TAP = "https://whistle.example.gov.cn/m/a/AQAAAAAEEmN4rYUf0Wg8mQ2bTz1k"


async def test_aliyun_sends_a_signed_sendsms(serve: Serve) -> None:
    server = await serve(aliyun_fake())
    async with aliyun(server.url) as channel:
        attempt = await channel.send(notification(ack_url=ONE_TAP, reply_code="1042"))
    assert attempt.ok and not attempt.retryable
    assert (attempt.status, attempt.code, attempt.provider_message_id) == (200, "OK", "900619^0")
    assert attempt.channel == "sms.aliyun" and attempt.notification_id == "n-1"
    assert attempt.address == "+86138****5678"
    assert attempt.latency_ms > 0
    [req] = server.requests
    assert req.method == "POST" and req.body == b""
    q = req.query
    assert q["PhoneNumbers"] == "+8613812345678"
    assert (q["SignName"], q["TemplateCode"], q["OutId"]) == ("数字吹哨", "SMS_465900001", "n-1")
    assert json.loads(q["TemplateParam"]) == {  # the defaults: kind, title, the code to reply, the one-tap link
        "kind": "火警",
        "title": "瑞金二路 1 弄 3 号 烟感报警",
        "code": "1042",
        "link": ONE_TAP,  # longer than the 35 characters other variables are cut to: a cut link is a broken link
    }


async def test_a_message_to_someone_else_than_the_assignee_links_the_page_and_names_no_code(serve: Serve) -> None:
    server = await serve(aliyun_fake())
    async with aliyun(server.url) as channel:
        attempt = await channel.send(notification(url="https://whistle.example.gov.cn/m/#/t/T-1001"))
    assert attempt.ok
    params = json.loads(server.requests[0].query["TemplateParam"])
    assert (params["code"], params["link"]) == ("-", "https://whistle.example.gov.cn/m/#/t/T-1001")


async def test_aliyun_business_limit_control_is_retryable_after_a_minute(serve: Serve) -> None:
    server = await serve(
        aliyun_fake([{"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发分钟级流控Permits:1", "RequestId": "R"}])
    )
    async with aliyun(server.url) as channel:
        limited = await channel.send(notification())
        then = await channel.send(notification(id="n-2"))
    assert not limited.ok and limited.retryable
    assert limited.code == "isv.BUSINESS_LIMIT_CONTROL" and limited.retry_after_ms == 60_000
    assert then.ok


async def test_aliyun_permanent_error_is_not_retried_and_its_message_is_masked(serve: Serve) -> None:
    answer = {"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "非法手机号 +8613812345678", "RequestId": "R"}
    server = await serve(aliyun_fake([answer]))
    async with aliyun(server.url) as channel:
        attempt = await channel.send(notification())
    assert not attempt.ok and not attempt.retryable
    assert attempt.code == "isv.MOBILE_NUMBER_ILLEGAL"
    assert attempt.error == "isv.MOBILE_NUMBER_ILLEGAL: 非法手机号 +86138****5678"


async def test_aliyun_fake_refuses_a_wrong_secret(serve: Serve) -> None:
    server = await serve(aliyun_fake())
    async with aliyun(server.url, secret="not-the-secret") as channel:
        attempt = await channel.send(notification())
    assert not attempt.ok and not attempt.retryable
    assert (attempt.status, attempt.code) == (400, "SignatureDoesNotMatch")


async def test_aliyun_fake_refuses_a_tampered_request(serve: Serve) -> None:
    """The fake's verifier is not vacuous: change one signed parameter and it refuses."""
    server = await serve(aliyun_fake())
    channel = aliyun(server.url)
    url, headers, body = channel.request(notification(), "+8613812345678")
    async with httpx.AsyncClient(timeout=5) as client:
        good = await client.post(url, headers=headers, content=body)
        bad = await client.post(url.replace("SMS_465900001", "SMS_465900002"), headers=headers, content=body)
    assert good.json()["Code"] == "OK"
    assert bad.status_code == 400 and bad.json()["Code"] == "SignatureDoesNotMatch"


async def test_aliyun_server_error_without_json_is_retryable(serve: Serve) -> None:
    async def unavailable(req: Request) -> Response:
        return Response(503, b"<html>Service Unavailable</html>")

    server = await serve(unavailable)
    async with aliyun(server.url) as channel:
        attempt = await channel.send(notification())
    assert not attempt.ok and attempt.retryable and attempt.status == 503
    assert attempt.error is not None and attempt.error.startswith("unreadable response")


async def test_aliyun_timeout_is_retryable(serve: Serve) -> None:
    server = await serve(aliyun_fake(delay_s=3.0))
    async with aliyun(server.url, timeout_s=0.3) as channel:
        attempt = await channel.send(notification())
    assert not attempt.ok and attempt.retryable and attempt.code == TIMEOUT and attempt.status is None


async def test_sms_without_a_phone_number_is_skipped_without_a_request(serve: Serve) -> None:
    server = await serve(aliyun_fake())
    async with aliyun(server.url) as channel:
        attempt = await channel.send(notification(recipient=Recipient(id="W-9", name="张三")))
    assert not attempt.ok and not attempt.retryable and attempt.code == NO_ADDRESS
    assert server.requests == []


# --- Tencent Cloud ------------------------------------------------------------------------------


def tencent(url: str, key: str = TC_KEY) -> TencentSmsChannel:
    return TencentSmsChannel(
        TencentSmsSettings(
            secret_id=TC_ID,
            secret_key=key,
            sdk_app_id="1400006666",
            sign_name="数字吹哨",
            template_id="1234567",
            template_params="kind,ticket,time",
            endpoint=url + "/",
        )
    )


async def test_tencent_sends_a_signed_sendsms(serve: Serve) -> None:
    server = await serve(tencent_fake())
    async with tencent(server.url) as channel:
        attempt = await channel.send(notification())
    assert attempt.ok and (attempt.code, attempt.provider_message_id) == ("Ok", "2640:1230000001")
    assert attempt.address == "+86138****5678"
    [req] = server.requests
    assert req.headers["content-type"] == "application/json; charset=utf-8"
    assert req.json() == {
        "PhoneNumberSet": ["+8613812345678"],
        "SmsSdkAppId": "1400006666",
        "SignName": "数字吹哨",
        "TemplateId": "1234567",
        "TemplateParamSet": ["火警", "T-1001", "11-24 10:15"],
        "SessionContext": "n-1",
    }


@pytest.mark.parametrize(
    ("code", "retryable", "retry_after"),
    [
        ("LimitExceeded.PhoneNumberThirtySecondLimit", True, 30_000),
        ("LimitExceeded.PhoneNumberDailyLimit", False, None),
        ("InvalidParameterValue.IncorrectPhoneNumber", False, None),
    ],
)
async def test_tencent_per_number_status(serve: Serve, code: str, retryable: bool, retry_after: int | None) -> None:
    server = await serve(tencent_fake([{"Code": code, "Message": "for +8613812345678"}]))
    async with tencent(server.url) as channel:
        attempt = await channel.send(notification())
    assert not attempt.ok
    assert (attempt.code, attempt.retryable, attempt.retry_after_ms) == (code, retryable, retry_after)
    assert attempt.error == f"{code}: for +86138****5678"


async def test_tencent_internal_error_is_retryable(serve: Serve) -> None:
    server = await serve(tencent_fake(errors=[{"Code": "InternalError.SendAndRecvFail", "Message": "busy"}]))
    async with tencent(server.url) as channel:
        first = await channel.send(notification())
        second = await channel.send(notification())
    assert not first.ok and first.retryable and first.code == "InternalError.SendAndRecvFail"
    assert second.ok


async def test_tencent_fake_refuses_a_wrong_key(serve: Serve) -> None:
    server = await serve(tencent_fake())
    async with tencent(server.url, key="wrong-key") as channel:
        attempt = await channel.send(notification())
    assert not attempt.ok and not attempt.retryable and attempt.code == "AuthFailure.SignatureFailure"


async def test_tencent_fake_refuses_a_tampered_body(serve: Serve) -> None:
    server = await serve(tencent_fake())
    url, headers, body = tencent(server.url).request(notification(), "+8613812345678")
    async with httpx.AsyncClient(timeout=5) as client:
        good = await client.post(url, headers=headers, content=body)
        bad = await client.post(url, headers=headers, content=body.replace(b"13812345678", b"13900000000"))
    assert "SendStatusSet" in good.json()["Response"]
    assert bad.json()["Response"]["Error"]["Code"] == "AuthFailure.SignatureFailure"


def test_template_params_are_cut_to_the_provider_limit() -> None:
    from alerts.channels.sms import template_params

    params = template_params(notification(title="很" * 50), "title,severity,name", 20)
    assert params == [("title", "很" * 19 + "…"), ("severity", "紧急"), ("name", "李小龙")]
