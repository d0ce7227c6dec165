"""Which channels a process has: the implementations chosen by configuration.

`build_channels(settings)` returns the configured channels by name, not started; unconfigured
ones are absent and half-configured ones are an error that names every variable to fix.
`open_channels(settings)` starts them and stops them in reverse order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

from alerts.channels.base import ManagedChannel
from alerts.channels.live import WebSocketChannel
from alerts.channels.robots import DingTalkChannel, WeComChannel
from alerts.channels.settings import ChannelConfig, ChannelSettings
from alerts.channels.sms import AliyunSmsChannel, TencentSmsChannel
from alerts.channels.webhook import WebhookChannel
from alerts.channels.webpush import WebPushChannel
from whistle.settings import SettingsError

# name -> (its settings, the implementation built from them)
Factory = Callable[[ChannelSettings], ManagedChannel]
REGISTRY: Mapping[str, tuple[Callable[[ChannelSettings], ChannelConfig], Factory]] = {
    "sms.aliyun": (lambda s: s.aliyun, lambda s: AliyunSmsChannel(s.aliyun)),
    "sms.tencent": (lambda s: s.tencent, lambda s: TencentSmsChannel(s.tencent)),
    "webpush": (lambda s: s.webpush, lambda s: WebPushChannel(s.webpush)),
    "dingtalk": (lambda s: s.dingtalk, lambda s: DingTalkChannel(s.dingtalk)),
    "wecom": (lambda s: s.wecom, lambda s: WeComChannel(s.wecom)),
    "webhook": (lambda s: s.webhook, lambda s: WebhookChannel(s.webhook)),
}


def build_channels(settings: ChannelSettings | None = None) -> dict[str, ManagedChannel]:
    """The configured channels by name (plus the live feed, which needs no configuration)."""
    settings = settings or ChannelSettings()
    channels: dict[str, ManagedChannel] = {}
    problems: list[str] = []
    for name, (config_of, build) in REGISTRY.items():
        try:
            if config_of(settings).configured():
                channels[name] = build(settings)
        except (SettingsError, ValueError) as exc:
            problems.append(f"{name}: {exc}")
    if problems:
        raise SettingsError("notification channels misconfigured:\n  " + "\n  ".join(problems))
    channels["live"] = WebSocketChannel(queue_size=settings.live.queue_size)
    return channels


@asynccontextmanager
async def open_channels(settings: ChannelSettings | None = None) -> AsyncIterator[dict[str, ManagedChannel]]:
    """The configured channels, started; stopped in reverse order on exit."""
    channels = build_channels(settings)
    async with AsyncExitStack() as stack:
        for channel in channels.values():
            await stack.enter_async_context(channel)
        yield channels
