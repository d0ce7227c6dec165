"""Channels chosen by configuration: absent when unset, built when complete, an error when half-set."""

from __future__ import annotations

import pytest

from alerts.channels.base import ChannelNotStarted, ManagedChannel
from alerts.channels.live import WebSocketChannel
from alerts.channels.registry import build_channels, open_channels
from alerts.channels.settings import (
    AliyunSmsSettings,
    ChannelSettings,
    DingTalkSettings,
    TencentSmsSettings,
    WebhookSettings,
    WebPushSettings,
    WeComSettings,
)
from alerts.channels.sms import AliyunSmsChannel, TencentSmsChannel
from alerts.channels.webpush import WebPushChannel, generate_vapid_keys
from tests.alerts.channels.support import notification
from whistle.settings import SettingsError

ENV_PREFIXES = (
    "WHISTLE_SMS_ALIYUN_",
    "WHISTLE_SMS_TENCENT_",
    "WHISTLE_WEBPUSH_",
    "WHISTLE_DINGTALK_",
    "WHISTLE_WECOM_",
    "WHISTLE_WEBHOOK_",
    "WHISTLE_LIVE_",
    "WHISTLE_NOTIFY_",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Channel variables of the developer's shell must not leak into these tests."""
    import os

    for name in list(os.environ):
        if name.startswith(ENV_PREFIXES):
            monkeypatch.delenv(name)


def full() -> ChannelSettings:
    private, _ = generate_vapid_keys()
    return ChannelSettings(
        aliyun=AliyunSmsSettings(access_key_id="id", access_key_secret="s", sign_name="吹哨", template_code="SMS_1"),
        tencent=TencentSmsSettings(
            secret_id="id", secret_key="k", sdk_app_id="1400", sign_name="吹哨", template_id="1"
        ),
        webpush=WebPushSettings(vapid_private_key=private, vapid_subject="mailto:ops@example.org"),
        dingtalk=DingTalkSettings(webhook="https://oapi.dingtalk.com/robot/send?access_token=t", secret="SECx"),
        wecom=WeComSettings(key="k"),
        webhook=WebhookSettings(url="https://dispatch.example/hook", secret="s"),
    )


def test_nothing_configured_leaves_only_the_live_feed() -> None:
    channels = build_channels(ChannelSettings())
    assert list(channels) == ["live"]
    assert isinstance(channels["live"], WebSocketChannel)


def test_every_configured_channel_is_built_with_its_implementation() -> None:
    channels = build_channels(full())
    assert sorted(channels) == ["dingtalk", "live", "sms.aliyun", "sms.tencent", "webhook", "webpush", "wecom"]
    assert isinstance(channels["sms.aliyun"], AliyunSmsChannel)
    assert isinstance(channels["sms.tencent"], TencentSmsChannel)
    assert isinstance(channels["webpush"], WebPushChannel)
    assert all(isinstance(c, ManagedChannel) and c.name == name for name, c in channels.items())


def test_a_half_configured_channel_is_an_error_naming_the_missing_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHISTLE_SMS_ALIYUN_ACCESS_KEY_ID", "LTAI5t")
    monkeypatch.setenv("WHISTLE_WEBHOOK_SECRET", "s")
    with pytest.raises(SettingsError) as err:
        build_channels(ChannelSettings())
    message = str(err.value)
    assert "sms.aliyun" in message and "WHISTLE_SMS_ALIYUN_ACCESS_KEY_SECRET" in message
    assert "WHISTLE_SMS_ALIYUN_SIGN_NAME" in message and "WHISTLE_SMS_ALIYUN_TEMPLATE_CODE" in message
    assert "webhook" in message and "WHISTLE_WEBHOOK_URL" in message
    assert "LTAI5t" not in message


def test_a_dingtalk_secret_without_its_webhook_is_an_error() -> None:
    with pytest.raises(SettingsError, match="WHISTLE_DINGTALK_WEBHOOK"):
        build_channels(ChannelSettings(dingtalk=DingTalkSettings(secret="SECx")))


def test_a_dingtalk_robot_without_a_secret_is_allowed() -> None:
    settings = ChannelSettings(dingtalk=DingTalkSettings(webhook="https://oapi.dingtalk.com/robot/send?access_token=t"))
    assert "dingtalk" in build_channels(settings)


def test_channels_are_configured_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "WHISTLE_SMS_TENCENT_SECRET_ID": "AKID1",
        "WHISTLE_SMS_TENCENT_SECRET_KEY": "key",
        "WHISTLE_SMS_TENCENT_SDK_APP_ID": "1400006666",
        "WHISTLE_SMS_TENCENT_SIGN_NAME": "数字吹哨",
        "WHISTLE_SMS_TENCENT_TEMPLATE_ID": "1234",
        "WHISTLE_SMS_TENCENT_TEMPLATE_PARAMS": "kind,ticket",
        "WHISTLE_LIVE_QUEUE_SIZE": "8",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    channels = build_channels()
    assert sorted(channels) == ["live", "sms.tencent"]


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown template fields"):
        AliyunSmsSettings(template_params="kind,address")
    with pytest.raises(ValueError, match="mailto"):
        WebPushSettings(vapid_subject="ops@example.org")
    with pytest.raises(SettingsError, match="32 octets"):
        build_channels(ChannelSettings(webpush=WebPushSettings(vapid_private_key="AAAA", vapid_subject="mailto:a@b")))
    with pytest.raises(SettingsError, match="not an http"):
        build_channels(ChannelSettings(webhook=WebhookSettings(url="ftp://x", secret="s")))


async def test_open_channels_starts_and_stops_them() -> None:
    async with open_channels(full()) as channels:
        sms = channels["sms.aliyun"]
        assert isinstance(sms, AliyunSmsChannel)
        assert sms.client is not None
    with pytest.raises(ChannelNotStarted):
        await sms.send(notification())
    await sms.stop()  # idempotent


async def test_send_before_start_is_a_programming_error() -> None:
    channel = build_channels(full())["webhook"]
    with pytest.raises(ChannelNotStarted, match="webhook"):
        await channel.send(notification())
