"""The alerts role's senders, wired from the environment: notification channels, the outbox, escalation."""

from __future__ import annotations

from contextlib import AsyncExitStack

from alerts.caps import BudgetedSms, CapHit, Caps, NotificationCaps, cap_detection
from alerts.channels.base import NotifyChannel
from alerts.channels.delivery import DeliveryPolicy, Dispatcher
from alerts.channels.registry import build_channels
from alerts.channels.relay import RelayedLiveChannel
from alerts.channels.settings import ChannelSettings
from alerts.links import Links, link_key
from alerts.outbox import ROUTES, OutboxSender, PgSentLog
from alerts.service import AlertService
from alerts.workers import EscalationWorker
from whistle.settings import Settings


async def start_dispatch(
    stack: AsyncExitStack, service: AlertService, process: Settings | None = None
) -> tuple[OutboxSender, EscalationWorker]:
    """The alerts role's senders: channels from the environment (the service's hub as `live`),
    started on `stack`, SMS under the hourly budget; an outbox sender woken by the service's commits,
    under the per-recipient cap, a cap reached raising `system.notification_cap`, its messages carrying
    the links to the worker's page and the assignee's one-tap link; the escalation worker."""
    process = process or Settings()
    settings = ChannelSettings()
    delivery = settings.delivery
    links = Links(
        process.base_url,
        await link_key(service.db, process.link_key),
        ttl_ms=int(process.one_tap_ttl_hours * 3600 * 1000),
    )

    async def raise_cap_alarm(hit: CapHit) -> None:
        await service.apply(cap_detection(hit))

    caps = NotificationCaps(
        service.db,
        Caps(recipient_per_hour=delivery.recipient_max_per_hour, sms_per_hour=delivery.sms_max_per_hour),
        on_cap=raise_cap_alarm,
    )
    channels: dict[str, NotifyChannel] = {}
    for name, channel in build_channels(settings).items():
        if name != "live":
            entered = await stack.enter_async_context(channel)
            channels[name] = BudgetedSms(entered, caps) if name.startswith("sms.") else entered
    channels["live"] = RelayedLiveChannel(service.live, service.db)  # this process's pages, then other processes
    sent_log = PgSentLog(service.db)
    dispatcher = Dispatcher(channels, policy=DeliveryPolicy.from_settings(settings.delivery), sent_log=sent_log)
    # Routes name only the channels this process has (live always): no attempt on an absent one.
    routes = {k: tuple(c for c in route if c in channels) for k, route in ROUTES.items()}
    sender = OutboxSender(
        service.db, dispatcher, sent_log=sent_log, wakeup=service.outbox_ready, routes=routes, caps=caps, links=links
    )
    return sender, EscalationWorker(service)
