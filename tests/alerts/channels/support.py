"""Hand-built notifications and recipients for the channel tests."""

from __future__ import annotations

from alerts.channels.base import Notification, PushSubscription, Recipient
from whistle.domain import AlarmKind, Severity

# 2026-11-24 10:15:00 +08:00
T0 = 1_795_486_500_000

WORKER = Recipient(id="W-17", name="李小龙", phone="+8613812345678")


def notification(
    *,
    id: str = "n-1",
    severity: Severity = Severity.CRITICAL,
    kind: AlarmKind = AlarmKind.SMOKE_FIRE,
    recipient: Recipient = WORKER,
    push: tuple[PushSubscription, ...] | None = None,
    title: str = "瑞金二路 1 弄 3 号 烟感报警",
    body: str = "2F 公共厨房烟感报警，请立即前往确认。",
    ticket_id: str | None = "T-1001",
    created_at: int = T0,
    url: str | None = None,
    ack_url: str | None = None,
    reply_code: str | None = None,
) -> Notification:
    if push is not None:
        recipient = Recipient(
            id=recipient.id, name=recipient.name, phone=recipient.phone, push=push, addresses=recipient.addresses
        )
    return Notification(
        id=id,
        recipient=recipient,
        severity=severity,
        kind=kind,
        title=title,
        body=body,
        ticket_id=ticket_id,
        created_at=created_at,
        url=url,
        ack_url=ack_url,
        reply_code=reply_code,
    )
