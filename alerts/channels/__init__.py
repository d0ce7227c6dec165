"""Notification channels: SMS (Alibaba Cloud, Tencent Cloud), Web Push, DingTalk and WeCom group
robots, a signed webhook, and the live feed; and the dispatcher that retries, fails over,
rate-limits and defers. See docs/NOTIFICATIONS.md.
"""

from alerts.channels.base import (
    Attempt,
    ChannelNotStarted,
    ManagedChannel,
    Notification,
    NotifyChannel,
    PushSubscription,
    Recipient,
)
from alerts.channels.delivery import (
    Delivery,
    DeliveryPolicy,
    DeliveryStatus,
    Dispatcher,
    MemorySentLog,
    QuietHours,
    RateLimit,
    SentLog,
)
from alerts.channels.live import Subscription, WebSocketChannel
from alerts.channels.registry import build_channels, open_channels
from alerts.channels.settings import ChannelSettings
from whistle.privacy import mask_name, mask_phone

__all__ = [
    "Attempt",
    "ChannelNotStarted",
    "ChannelSettings",
    "Delivery",
    "DeliveryPolicy",
    "DeliveryStatus",
    "Dispatcher",
    "ManagedChannel",
    "MemorySentLog",
    "Notification",
    "NotifyChannel",
    "PushSubscription",
    "QuietHours",
    "RateLimit",
    "Recipient",
    "SentLog",
    "Subscription",
    "WebSocketChannel",
    "build_channels",
    "mask_name",
    "mask_phone",
    "open_channels",
]
