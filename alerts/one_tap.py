"""Acknowledging from the message itself: the one-tap link of an SMS or a robot message (alerts.links).

`open_link` finds the one ticket a token names and checks it was signed for that ticket's current
assignee and assignment and has not expired; `ack_by_link` acknowledges it as that worker (the actor
of the event, `via: one_tap`). Nothing else is reachable with a token: it reads no other ticket, no
contacts, no history, and opens no session.
"""

from __future__ import annotations

from dataclasses import dataclass

from alerts import links
from alerts.service import AlertService, TicketError
from alerts.worklist import WorkTicket, work_ticket
from whistle.errors import NotFound, ServiceError
from whistle.store.db import Database


class LinkExpired(ServiceError):
    """A genuine one-tap link past its expiry (the page says so, and offers to sign in)."""


@dataclass(frozen=True, slots=True)
class OneTap:
    """The ticket a valid link opens, and the worker it acts for."""

    work: WorkTicket
    worker_id: str
    worker_name: str
    expires_at: int  # ms


_NOT_OURS = "this link is not valid (mistyped, or the ticket was given to someone else)"


async def open_link(db: Database, key: bytes, token: str, *, now: int) -> OneTap:
    """The ticket and worker of a valid token; NotFound for anything else (not ours, tampered, reassigned),
    LinkExpired for a genuine one that has expired."""
    read = links.read(token)
    if read is None:
        raise NotFound(_NOT_OURS)
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT t.id::text, t.assignee_id, t.assignment, w.name FROM tickets t "
            "JOIN workers w ON w.id = t.assignee_id AND w.retired_at IS NULL WHERE t.short_code = %s",
            (read.code,),
        )
        row = await cur.fetchone()
    if row is None or not read.valid_for(key, worker_id=row[1], assignment=int(row[2])):
        raise NotFound(_NOT_OURS)
    if read.expired(now):
        raise LinkExpired("this link has expired: sign in to see the ticket")
    work = await work_ticket(db, row[0], scope=None)
    if work is None:
        raise NotFound(_NOT_OURS)
    return OneTap(work, row[1], row[3], read.expires_at)


async def ack_by_link(db: Database, service: AlertService, key: bytes, token: str, *, now: int) -> OneTap:
    """Acknowledge the link's ticket as its assignee; a ticket already acknowledged is a conflict (409)."""
    tap = await open_link(db, key, token, now=now)
    ticket = tap.work.view.ticket
    try:
        await service.transition(
            ticket.id, "ack", actor=tap.worker_id, extra={"via": "one_tap"}, assignee=tap.worker_id
        )
    except TicketError as exc:
        if exc.forbidden:  # reassigned between the check and the lock
            raise NotFound(_NOT_OURS) from exc
        raise
    return await open_link(db, key, token, now=now)
