"""Masking of personal data, and the values channels exchange."""

from __future__ import annotations

import pytest

from alerts.channels.base import (
    ManagedChannel,
    NotifyChannel,
    PushSubscription,
    describe,
)
from alerts.channels.live import WebSocketChannel
from tests.alerts.channels.support import notification
from whistle.privacy import mask_name, mask_phone, redact


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("+8613812345678", "+86138****5678"),
        ("13812345678", "138****5678"),
        ("008613812345678", "0086138****5678"),
        ("+86 138-1234-5678", "+86138****5678"),
        ("+85291234567", "+852****67"),
        ("+14155550123", "+141****23"),
        ("12345", "****"),
        ("", "-"),
        (None, "-"),
    ],
)
def test_mask_phone(phone: str | None, masked: str) -> None:
    assert mask_phone(phone) == masked


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("王小明", "王*明"),
        ("王五", "王*"),
        ("欧阳小明", "欧**明"),
        ("王", "*"),
        ("", "-"),
        (None, "-"),
        ("Li Wei", "L****i"),
    ],
)
def test_mask_name(name: str | None, masked: str) -> None:
    assert mask_name(name) == masked


def test_redact_masks_phone_numbers_in_provider_messages_and_cuts_long_text() -> None:
    assert (
        redact("isv.MOBILE_NUMBER_ILLEGAL: +8613812345678 invalid")
        == "isv.MOBILE_NUMBER_ILLEGAL: +86138****5678 invalid"
    )
    assert redact("number 13812345678 is limited") == "number 138****5678 is limited"
    cut = redact("x" * 1000, limit=50)
    assert cut is not None and len(cut) == 50 and cut.endswith("…")
    assert redact(None) is None


def test_describe_is_log_safe() -> None:
    text = describe(notification())
    assert "李*龙" in text and "李小龙" not in text
    assert "13812345678" not in text


def test_push_subscription_from_browser_json() -> None:
    sub = PushSubscription.from_json({"endpoint": "https://push.example/abc", "keys": {"p256dh": "BA", "auth": "AQ"}})
    assert sub == PushSubscription("https://push.example/abc", "BA", "AQ")
    with pytest.raises(ValueError, match="keys"):
        PushSubscription.from_json({"endpoint": "https://push.example/abc"})
    with pytest.raises(ValueError, match="p256dh"):
        PushSubscription.from_json({"endpoint": "https://x", "keys": {"auth": "AQ"}})


def test_channels_satisfy_the_protocols() -> None:
    hub = WebSocketChannel()
    assert isinstance(hub, NotifyChannel)
    assert isinstance(hub, ManagedChannel)
