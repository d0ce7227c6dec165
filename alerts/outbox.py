"""Sending the outbox: notifications go out only after the ticket change that wrote them commits.

`OutboxSender` claims due `pending` rows with `FOR UPDATE SKIP LOCKED` and a lease (so several
senders share the work and a crashed sender's rows come back after the lease), commits the claim,
hands each notification to the channels' `Dispatcher`, then records every attempt and the outcome:
`sent`, `pending` again at a later time (quiet hours, rate limits, a failed round), `failed` after
`max_rounds`, or left `suppressed` if an ack made it moot meanwhile. The notification id given to
the dispatcher is the row's dedup key, and `PgSentLog` remembers delivered ids in PostgreSQL, so a
row redelivered after a restart is recognised and not sent twice. Before a row is handed over, its
recipient's hourly cap is checked (alerts.caps): over it, the row is `suppressed` ("capped").

Delivered means seen. A critical notification handed to the worker's page (the live feed, a push
notification) is not done until the page says it was shown: the dispatcher answers `awaiting_receipt`,
the row stays `pending` with `awaiting_channel` set and falls due again at the receipt deadline
(WHISTLE_NOTIFY_RECEIPT_TIMEOUT_S). The receipt (alerts.receipts, from any process) marks the row seen
and done; without it, the next round records the unseen handover (an attempt `not_seen` and an
`unseen` event in the ticket's history) and carries on with the rest of the route, after that channel:
SMS, then the robots. An acknowledgement meanwhile suppresses the row, as any other.

Each notification to a worker carries links (alerts.links): the ticket on the worker's page, and, to its
assignee, the one-tap link and the short code an SMS reply acknowledges with. A worker's Web Push
subscriptions (alerts.push) go along; those the push service says are gone are forgotten.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from psycopg.types.json import Jsonb

from alerts import push
from alerts.caps import NotificationCaps
from alerts.channels.base import BUDGET_SPENT, NO_ADDRESS, NOT_CONFIGURED, Notification, PushSubscription, Recipient
from alerts.channels.delivery import Delivery, DeliveryStatus, Dispatcher
from alerts.links import Links
from alerts.store import Conn, Contact, add_ticket_event
from whistle.domain import AlarmKind, Severity, TicketStatus
from whistle.store.db import Database
from whistle.timeutil import from_datetime, now_ms, to_datetime

log = logging.getLogger(__name__)

# The channels tried for each kind of recipient, in order (docs/NOTIFICATIONS.md). Channels that
# are not configured in a process are skipped. Workers: the app if open, push, SMS through either
# vendor, then the grid's group robots and the webhook. Emergency contacts have only a phone.
ROUTES: Mapping[str, tuple[str, ...]] = {
    "worker": ("live", "webpush", "sms.aliyun", "sms.tencent", "dingtalk", "wecom", "webhook"),
    "contact": ("sms.aliyun", "sms.tencent", "webhook"),
}


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """What one outbox row asks to send: to whom, about what, the text, and the escalation step's target."""

    recipient: Contact
    kind: AlarmKind
    severity: Severity
    title: str
    body: str
    target: str
    level: int

    def to_json(self) -> dict[str, Any]:
        return {
            "recipient": self.recipient.to_json(),
            "kind": self.kind.value,
            "severity": self.severity.value,
            "title": self.title,
            "body": self.body,
            "target": self.target,
            "level": self.level,
        }

    @classmethod
    def from_json(cls, recipient_id: str, profile: str, doc: Mapping[str, Any]) -> OutboxMessage:
        who = doc.get("recipient") or {}
        return cls(
            recipient=Contact(recipient_id, str(who.get("name") or ""), who.get("phone"), profile),
            kind=AlarmKind(doc["kind"]),
            severity=Severity(doc["severity"]),
            title=str(doc.get("title", "")),
            body=str(doc.get("body", "")),
            target=str(doc.get("target", "")),
            level=int(doc.get("level") or 0),
        )


async def insert_notification(
    conn: Conn,
    *,
    dedup_key: str,
    ticket_id: str,
    message: OutboxMessage,
    priority: int,
    cancel_on: str,
    step: int,
    now: int,
) -> int | None:
    """Queue a notification in the outbox; a dedup_key already there is not queued again (None)."""
    cur = await conn.execute(
        "INSERT INTO notifications (dedup_key, ticket_id, recipient_id, channel, body, created_at, due_at, "
        "priority, cancel_on, step) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (dedup_key) DO NOTHING RETURNING id",
        (
            dedup_key,
            ticket_id,
            message.recipient.id,
            message.recipient.type,
            Jsonb(message.to_json()),
            to_datetime(now),
            to_datetime(now),
            priority,
            cancel_on,
            step,
        ),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else None


async def suppress_notifications(conn: Conn, ticket_id: str, statuses: Sequence[str] | None, why: str) -> int:
    """Mark a ticket's unsent notifications moot: those cancelled by one of `statuses` (None: all)."""
    cur = await conn.execute(
        "UPDATE notifications SET status = 'suppressed', last_error = %s WHERE ticket_id = %s AND status = 'pending' "
        "AND (%s::text[] IS NULL OR cancel_on = ANY(%s::text[]))",
        (why, ticket_id, statuses, statuses),
    )
    return cur.rowcount


class PgSentLog:
    """The `SentLog` protocol in PostgreSQL: at most one delivery per notification id across
    processes and restarts. A claim is a lease: a sender that dies mid-delivery loses it after
    `lease_s` and the id can be claimed again."""

    def __init__(self, db: Database, *, lease_s: float = 300.0, clock: Callable[[], int] = now_ms) -> None:
        self.db = db
        self.lease_ms = int(lease_s * 1000)
        self.clock = clock

    async def claim(self, notification_id: str) -> bool:
        now = self.clock()
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO sent_log (notification_id, state, lease_until, at) VALUES (%s, 'claimed', %s, %s) "
                "ON CONFLICT (notification_id) DO UPDATE SET lease_until = EXCLUDED.lease_until, at = EXCLUDED.at "
                "WHERE sent_log.state = 'claimed' AND sent_log.lease_until < %s RETURNING 1",
                (notification_id, to_datetime(now + self.lease_ms), to_datetime(now), to_datetime(now)),
            )
            return await cur.fetchone() is not None

    async def delivered(self, notification_id: str, *, channel: str, at: int) -> None:
        async with self.db.connection() as conn:
            await conn.execute(
                "INSERT INTO sent_log (notification_id, state, channel, at) VALUES (%s, 'delivered', %s, %s) "
                "ON CONFLICT (notification_id) DO UPDATE SET state = 'delivered', lease_until = NULL, "
                "channel = EXCLUDED.channel, at = EXCLUDED.at",
                (notification_id, channel, to_datetime(at)),
            )

    async def release(self, notification_id: str) -> None:
        async with self.db.connection() as conn:
            await conn.execute(
                "DELETE FROM sent_log WHERE notification_id = %s AND state = 'claimed'", (notification_id,)
            )

    async def is_delivered(self, notification_id: str) -> bool:
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT 1 FROM sent_log WHERE notification_id = %s AND state = 'delivered'", (notification_id,)
            )
            return await cur.fetchone() is not None


_CLAIM = (
    "UPDATE notifications n SET claimed_until = %(lease)s, attempts = n.attempts + 1 FROM ("
    " SELECT id FROM notifications WHERE status = 'pending' AND due_at <= %(now)s"
    " AND (claimed_until IS NULL OR claimed_until < %(now)s)"
    " ORDER BY priority, due_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED) c"
    " WHERE n.id = c.id"
    " RETURNING n.id, n.dedup_key, n.ticket_id, n.recipient_id, n.channel, n.body, n.created_at, n.attempts,"
    " n.awaiting_channel, n.seen_at IS NOT NULL"
)
SKIPS = frozenset({NO_ADDRESS, NOT_CONFIGURED, BUDGET_SPENT})
OPEN_STATUSES = frozenset({TicketStatus.DISPATCHED.value, TicketStatus.ACKNOWLEDGED.value, TicketStatus.ON_SITE.value})


@dataclass(frozen=True, slots=True)
class TicketRef:
    """What a message about a ticket needs of it at sending time: who has it now, on which assignment, its code."""

    assignee_id: str | None
    assignment: int
    short_code: int | None
    status: str


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    dedup_key: str
    ticket_id: str | None
    message: OutboxMessage
    created_at: int
    rounds: int
    awaiting: str | None = None  # the channel it was handed to, awaiting the page's receipt
    seen: bool = False  # the receipt came
    ticket: TicketRef | None = None
    push: tuple[PushSubscription, ...] = ()

    @property
    def profile(self) -> str:
        return self.message.recipient.type

    def notification(self, links: Links | None = None, now: int = 0) -> Notification:
        """The message for the channels: to a worker with the ticket's page link; to its assignee, while the
        ticket is open, the one-tap link and the short code to reply with."""
        m = self.message
        url = ack_url = code = None
        worker = self.profile == "worker"
        if links is not None and worker and self.ticket_id:
            url = links.ticket_page(self.ticket_id)
            t = self.ticket
            if t is not None and t.short_code and t.assignee_id == m.recipient.id and t.status in OPEN_STATUSES:
                ack_url = links.one_tap(code=t.short_code, worker_id=m.recipient.id, assignment=t.assignment, now=now)
                code = str(t.short_code)
        return Notification(
            id=self.dedup_key,
            recipient=Recipient(
                id=m.recipient.id, name=m.recipient.name, phone=m.recipient.phone, push=self.push if worker else ()
            ),
            severity=m.severity,
            kind=m.kind,
            title=m.title,
            body=m.body,
            ticket_id=self.ticket_id,
            created_at=self.created_at,
            url=url,
            ack_url=ack_url,
            reply_code=code,
        )


def after(route: tuple[str, ...], channel: str | None) -> tuple[str, ...]:
    """The rest of a route after `channel` (all of it if the channel is not in it)."""
    if channel is None or channel not in route:
        return route
    return route[route.index(channel) + 1 :]


class OutboxSender:
    """Claims due outbox rows and delivers them through a `Dispatcher`; run one or many."""

    def __init__(
        self,
        db: Database,
        dispatcher: Dispatcher,
        *,
        sent_log: PgSentLog | None = None,
        clock: Callable[[], int] = now_ms,
        batch: int = 64,
        lease_s: float = 120.0,
        poll_s: float = 0.5,
        max_rounds: int = 5,
        retry_s: float = 60.0,
        wakeup: asyncio.Event | None = None,
        routes: Mapping[str, tuple[str, ...]] = ROUTES,
        caps: NotificationCaps | None = None,
        links: Links | None = None,
    ) -> None:
        self.db = db
        self.dispatcher = dispatcher
        self.sent_log = sent_log
        self.clock = clock
        self.batch = batch
        self.lease_ms = int(lease_s * 1000)
        self.poll_s = poll_s
        self.max_rounds = max_rounds
        self.retry_ms = int(retry_s * 1000)
        self.wakeup = wakeup or asyncio.Event()
        self.routes = routes
        self.caps = caps
        self.links = links
        self.capped = 0
        self.sent = 0
        self.failed = 0
        self.deferred = 0
        self.awaiting = 0  # handed over, waiting for the page's receipt
        self.unseen = 0  # no receipt in time: carried on with the rest of the route

    async def claim(self) -> list[Claimed]:
        now = self.clock()
        async with self.db.connection() as conn, conn.transaction():
            cur = await conn.execute(
                _CLAIM, {"lease": to_datetime(now + self.lease_ms), "now": to_datetime(now), "limit": self.batch}
            )
            rows = await cur.fetchall()
            claimed = [
                Claimed(
                    r[0],
                    r[1],
                    str(r[2]) if r[2] else None,
                    OutboxMessage.from_json(r[3], r[4], r[5]),
                    from_datetime(r[6]),
                    r[7],
                    awaiting=r[8],
                    seen=bool(r[9]),
                )
                for r in rows
            ]
            return await self._with_context(conn, claimed) if claimed else claimed

    async def _with_context(self, conn: Conn, claimed: list[Claimed]) -> list[Claimed]:
        """Each claimed row with its ticket as it is now and its recipient's push subscriptions."""
        tickets = sorted({c.ticket_id for c in claimed if c.ticket_id})
        refs: dict[str, TicketRef] = {}
        if tickets:
            cur = await conn.execute(
                "SELECT id::text, assignee_id, assignment, short_code, status FROM tickets WHERE id = ANY(%s::uuid[])",
                (tickets,),
            )
            refs = {r[0]: TicketRef(r[1], int(r[2]), r[3], r[4]) for r in await cur.fetchall()}
        workers = sorted({c.message.recipient.id for c in claimed if c.profile == "worker"})
        subs = await push.subscriptions_of(conn, workers)
        return [
            replace(c, ticket=refs.get(c.ticket_id or ""), push=subs.get(c.message.recipient.id, ())) for c in claimed
        ]

    async def run_once(self) -> int:
        """Claim one batch and deliver it (concurrently); returns how many rows were handled."""
        claimed = await self.claim()
        if claimed:
            await asyncio.gather(*(self._one(c) for c in claimed))
        return len(claimed)

    async def _one(self, c: Claimed) -> None:
        route = self.routes.get(c.profile, ROUTES["worker"])
        if c.awaiting is not None:  # handed to the page before: seen, or on to the rest of the route
            if c.seen:
                await self._seen(c)
                return
            await self._not_seen(c)
            route = after(route, c.awaiting)
        use = None
        if self.caps is not None and c.awaiting is None:  # a notification counts once, whatever its channels
            use = await self.caps.admit(c.message.recipient.id, c.message.kind)
            if use is None:
                await self._capped(c)
                return
        try:
            delivery = await self.dispatcher.deliver(c.notification(self.links, self.clock()), route)
        except Exception as exc:  # a bug, not a delivery outcome: keep the row for another round
            log.exception("notification %s: dispatcher raised", c.id)
            delivery = Delivery(c.dedup_key, DeliveryStatus.FAILED, reason=f"exception: {type(exc).__name__}")
        handed = delivery.status in (DeliveryStatus.DELIVERED, DeliveryStatus.AWAITING_RECEIPT)
        if use is not None and not handed and self.caps is not None:
            await self.caps.give_back(use)
        await self._finish(c, delivery)

    async def _seen(self, c: Claimed) -> None:
        """The receipt came while the row waited: it is done."""
        self.sent += 1
        async with self.db.connection() as conn:
            await conn.execute(
                "UPDATE notifications SET status = 'sent', claimed_until = NULL WHERE id = %s AND status = 'pending'",
                (c.id,),
            )

    async def _not_seen(self, c: Claimed) -> None:
        """No receipt by the deadline: on the record (an attempt, the ticket's history) before the next channel."""
        self.unseen += 1
        now = self.clock()
        error = f"no receipt from the page within the receipt timeout after {c.awaiting}"
        log.warning("notification %s to %s not seen on %s: next channel", c.id, c.message.recipient.id, c.awaiting)
        async with self.db.connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO notification_attempts (notification_id, at, channel, ok, retryable, address, code, error) "
                "VALUES (%s, %s, %s, false, false, '', 'not_seen', %s)",
                (c.id, to_datetime(now), c.awaiting, error),
            )
            if c.ticket_id is not None and c.rounds <= 2:  # once, not every retry round
                await add_ticket_event(
                    conn,
                    c.ticket_id,
                    at=now,
                    actor="system",
                    action="unseen",
                    data={"notification": c.dedup_key, "recipient_id": c.message.recipient.id, "channel": c.awaiting},
                )

    async def _capped(self, c: Claimed) -> None:
        """Over the recipient's hourly cap: the notification is dropped (its ticket stands)."""
        assert self.caps is not None
        self.capped += 1
        async with self.db.connection() as conn:
            await conn.execute(
                "UPDATE notifications SET status = 'suppressed', claimed_until = NULL, last_error = %s "
                "WHERE id = %s AND status = 'pending'",
                (f"capped: {self.caps.caps.recipient_per_hour} notifications per hour to this recipient", c.id),
            )

    async def _finish(self, c: Claimed, d: Delivery) -> None:
        now = self.clock()
        status, due, error, channel = "pending", now, d.reason, d.channel
        awaiting = c.awaiting
        if d.status is DeliveryStatus.DELIVERED:
            status = "sent"
            self.sent += 1
        elif d.status is DeliveryStatus.AWAITING_RECEIPT:
            awaiting, due = d.channel, d.receipt_due or now
            self.awaiting += 1
        elif c.awaiting is not None and d.status is DeliveryStatus.FAILED and all(a.code in SKIPS for a in d.attempts):
            # handed to the page, not seen, and nothing else reaches this recipient: that handover is all there is
            status, error = "sent", f"not seen on {c.awaiting}; no other channel reaches the recipient"
            self.sent += 1
        elif d.status is DeliveryStatus.DUPLICATE:
            delivered = self.sent_log is not None and await self.sent_log.is_delivered(c.dedup_key)
            status, due = ("sent", now) if delivered else ("pending", now + self.lease_ms)
        elif d.status is DeliveryStatus.DEFERRED:
            due = d.deferred_until or now + self.retry_ms
            self.deferred += 1
        elif c.rounds >= self.max_rounds:
            status = "failed"
            self.failed += 1
        else:
            due = now + self.retry_ms * c.rounds
        async with self.db.connection() as conn, conn.transaction():
            async with conn.cursor() as cur:
                if d.attempts:
                    await cur.executemany(
                        "INSERT INTO notification_attempts (notification_id, at, channel, ok, retryable, address, "
                        "status, code, provider_message_id, error, latency_ms) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        [
                            (
                                c.id,
                                to_datetime(a.at or now),
                                a.channel,
                                a.ok,
                                a.retryable,
                                a.address,
                                a.status,
                                a.code,
                                a.provider_message_id,
                                a.error,
                                a.latency_ms,
                            )
                            for a in d.attempts
                        ],
                    )
            await conn.execute(
                "UPDATE notifications SET"
                " status = CASE WHEN %(awaits)s AND seen_at IS NOT NULL THEN 'sent' ELSE %(st)s END,"
                " due_at = %(due)s, claimed_until = NULL, last_error = %(error)s, awaiting_channel = %(awaiting)s,"
                " channel_used = COALESCE(%(channel)s, channel_used),"
                " sent_at = CASE WHEN %(st)s = 'sent' OR %(awaits)s THEN COALESCE(sent_at, %(now)s) ELSE sent_at END "
                "WHERE id = %(id)s AND status = 'pending'",
                {
                    "awaits": d.status is DeliveryStatus.AWAITING_RECEIPT,
                    "st": status,
                    "due": to_datetime(due),
                    "error": error,
                    "awaiting": awaiting,
                    "channel": channel,
                    "now": to_datetime(now),
                    "id": c.id,
                },
            )
            gone = [e for a in d.attempts for e in a.gone]
            if gone:
                await push.forget(conn, gone)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop`: at once when woken (a commit queued rows), else every `poll_s`."""
        while not stop.is_set():
            self.wakeup.clear()  # before claiming: a commit during the round wakes the next wait at once
            try:
                handled = await self.run_once()
            except Exception:
                log.exception("outbox round failed; retrying")
                handled = 0
            if handled:
                continue
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.wakeup.wait())]
            try:
                await asyncio.wait(waiters, timeout=self.poll_s, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.gather(*waiters, return_exceptions=True)
