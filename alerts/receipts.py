"""Delivered means seen: a worker's notifications, and the receipts their page sends once it has shown them.

The worker's page confirms display (over the live socket, or from the service worker when a push
notification is tapped); `confirm` stores the receipt on the notification's row in PostgreSQL, so it
counts whichever process served the page and whichever sends (alerts.outbox waits for it, then moves
on to the next channel). The first receipt of a notification is also a `seen` event in its ticket's
history: the operations center sees who has seen the alarm, and when.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg.types.json import Jsonb

from whistle.store.db import Database
from whistle.timeutil import now_ms, to_datetime

VIAS = ("live", "page", "push_click", "link")
MAX_IDS = 100


@dataclass(frozen=True, slots=True)
class MyNotification:
    """A notification to the caller, as their page lists it (no phone numbers: their own is not needed)."""

    id: str  # the dedup key: the id every channel carries
    ticket_id: str | None
    kind: str
    severity: str
    title: str
    body: str
    created_at: datetime
    status: str
    channel: str | None
    seen_at: datetime | None


async def my_notifications(
    db: Database, user_id: str, *, limit: int = 50, within: timedelta = timedelta(days=1)
) -> list[MyNotification]:
    """The caller's notifications of the last day, newest first (what the page shows when no channel is set up,
    or after the socket was down)."""
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT dedup_key, ticket_id::text, body, created_at, status, channel_used, seen_at FROM notifications "
            "WHERE recipient_id = %s AND created_at >= now() - %s AND status <> 'suppressed' "
            "ORDER BY created_at DESC, id DESC LIMIT %s",
            (user_id, within, limit),
        )
        rows = await cur.fetchall()
    return [
        MyNotification(
            id=r[0],
            ticket_id=r[1],
            kind=str(r[2].get("kind", "")),
            severity=str(r[2].get("severity", "")),
            title=str(r[2].get("title", "")),
            body=str(r[2].get("body", "")),
            created_at=r[3],
            status=r[4],
            channel=r[5],
            seen_at=r[6],
        )
        for r in rows
    ]


async def confirm(db: Database, *, user_id: str, ids: Sequence[str], via: str, now: int | None = None) -> int:
    """Record that the caller's page showed these notifications of theirs (others' ids are ignored); a
    notification waiting for this receipt is done. Returns how many were seen for the first time."""
    if via not in VIAS:
        raise ValueError(f"via must be one of {VIAS}")
    wanted = sorted({i for i in ids if isinstance(i, str) and 0 < len(i) <= 200})[:MAX_IDS]
    if not wanted:
        return 0
    at = to_datetime(now if now is not None else now_ms())
    async with db.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "UPDATE notifications SET seen_at = %(at)s, seen_via = %(via)s, "
            " status = CASE WHEN status = 'pending' AND awaiting_channel IS NOT NULL"
            "   AND (claimed_until IS NULL OR claimed_until < %(at)s) THEN 'sent' ELSE status END "
            "WHERE dedup_key = ANY(%(ids)s) AND recipient_id = %(user)s AND seen_at IS NULL "
            "RETURNING ticket_id, dedup_key, channel_used",
            {"at": at, "via": via, "ids": wanted, "user": user_id},
        )
        seen = await cur.fetchall()
        for ticket_id, key, channel in seen:
            if ticket_id is None:
                continue
            await conn.execute(
                "INSERT INTO ticket_events (ticket_id, at, actor, action, data) VALUES (%s, %s, %s, 'seen', %s)",
                (ticket_id, at, user_id, Jsonb({"notification": key, "via": via, "channel": channel})),
            )
    return len(seen)


async def confirm_ticket(db: Database, *, user_id: str, ticket_id: str, via: str = "link") -> int:
    """Everything sent to the user about this ticket is seen: they opened it from a message (its one-tap link)."""
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT dedup_key FROM notifications WHERE ticket_id = %s AND recipient_id = %s AND seen_at IS NULL",
            (ticket_id, user_id),
        )
        ids = [r[0] for r in await cur.fetchall()]
    return await confirm(db, user_id=user_id, ids=ids, via=via) if ids else 0
