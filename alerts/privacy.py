"""Residents' personal data on the alerts side: who may read a household's contacts (and the log of
every read), erasure on request, and notification rows that forget phone numbers after retention.

A grid worker sees the contacts of a household only on a ticket assigned to them; the operations
center, the street center and admins on any ticket in their scope. Every read is logged in
`personal_data_reads` (who, when, which household, on which ticket) in the transaction that reads,
for the audits that China's Personal Information Protection Law and 等保 expect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from alerts.store import ticket_scope_sql
from whistle import audit
from whistle.access import Principal
from whistle.errors import Forbidden, NotFound
from whistle.store.db import Database
from whistle.timeutil import now_ms, to_datetime

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HouseholdContacts:
    """The contacts of the household a ticket is about (empty for a building's ticket)."""

    ticket_id: str
    household_id: str | None
    unit: str
    contacts: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class PersonalDataRead:
    id: int
    at: datetime
    actor: str
    household_id: str
    ticket_id: str | None
    fields: list[str]
    purpose: str


async def read_contacts(db: Database, ticket_id: str, *, caller: Principal) -> HouseholdContacts:
    """The household's contacts on a ticket the caller may read them on, logged; NotFound outside the
    caller's scope, Forbidden on a ticket in scope that is not theirs."""
    where, args = ticket_scope_sql(caller.scope)
    async with db.connection() as conn, conn.transaction():
        cur = await conn.execute(
            f"SELECT t.assignee_id, t.household_id, h.unit, h.contacts FROM tickets t "
            f"LEFT JOIN households h ON h.id = t.household_id WHERE t.id = %s AND {where}",
            (ticket_id, *args),
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"ticket {ticket_id} not found")
        assignee, household_id, unit, contacts = row
        if not caller.contacts_on_any_ticket and assignee != caller.id:
            raise Forbidden("a household's contacts are shown only to the worker the ticket is assigned to")
        if household_id is None:
            return HouseholdContacts(ticket_id, None, "", [])
        await conn.execute(
            "INSERT INTO personal_data_reads (actor, household_id, ticket_id, fields, purpose) "
            "VALUES (%s, %s, %s, %s, %s)",
            (caller.id, household_id, ticket_id, ["contacts.name", "contacts.phone"], "ticket"),
        )
    return HouseholdContacts(ticket_id, household_id, unit or "", [dict(c) for c in contacts or []])


async def list_reads(
    db: Database, *, household_id: str | None = None, actor: str | None = None, limit: int = 100
) -> list[PersonalDataRead]:
    """The log of reads of personal data, newest first."""
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT id, at, actor, household_id, ticket_id::text, fields, purpose FROM personal_data_reads "
            "WHERE (%s::text IS NULL OR household_id = %s) AND (%s::text IS NULL OR actor = %s) "
            "ORDER BY id DESC LIMIT %s",
            (household_id, household_id, actor, actor, limit),
        )
        return [PersonalDataRead(*r) for r in await cur.fetchall()]


@dataclass(frozen=True, slots=True)
class Erasure:
    household_id: str
    contacts_erased: int
    notifications_scrubbed: int


async def erase_household(db: Database, household_id: str, *, actor: str, reason: str) -> Erasure:
    """Erase a household's personal data on request: its contacts, and their names and phones in the
    notification rows; tickets and their history stay (they name the household by id only)."""
    pattern = f"contact:{household_id}:%"
    async with db.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "SELECT jsonb_array_length(contacts) FROM households WHERE id = %s FOR UPDATE", (household_id,)
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"household {household_id} not found")
        await conn.execute(
            "UPDATE households SET contacts = '[]', erased_at = now(), updated_at = now() WHERE id = %s",
            (household_id,),
        )
        await conn.execute(
            "UPDATE notifications SET status = 'suppressed', last_error = 'personal data erased' "
            "WHERE recipient_id LIKE %s AND status = 'pending'",
            (pattern,),
        )
        cur = await conn.execute(
            "UPDATE notifications SET body = jsonb_set(body, '{recipient}', "
            "jsonb_build_object('id', recipient_id, 'name', '', 'phone', NULL, 'type', 'contact')) "
            "WHERE recipient_id LIKE %s",
            (pattern,),
        )
        scrubbed = cur.rowcount
        await conn.execute(
            "UPDATE notification_attempts SET address = '', provider_message_id = NULL WHERE notification_id IN "
            "(SELECT id FROM notifications WHERE recipient_id LIKE %s)",
            (pattern,),
        )
        await audit.record(
            conn,
            actor=actor,
            action="household.erase",
            target_type="household",
            target_id=household_id,
            data={"reason": reason, "contacts": row[0], "notifications": scrubbed},
        )
        await conn.execute("NOTIFY whistle_registry")
    return Erasure(household_id, int(row[0]), scrubbed)


async def scrub_notification_phones(db: Database, *, older_than: datetime) -> int:
    """Drop the phone numbers from notification rows settled before `older_than`; returns how many."""
    async with db.connection() as conn:
        cur = await conn.execute(
            "UPDATE notifications SET body = jsonb_set(body, '{recipient,phone}', 'null'::jsonb) "
            "WHERE status <> 'pending' AND created_at < %s AND jsonb_typeof(body #> '{recipient,phone}') = 'string'",
            (older_than,),
        )
        return cur.rowcount


class RetentionWorker:
    """Scrubs phones from settled notification rows older than the retention, every `interval_s`."""

    def __init__(
        self,
        db: Database,
        *,
        retention_s: float,
        interval_s: float = 3600.0,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.db = db
        self.retention_s = retention_s
        self.interval_s = interval_s
        self.clock = clock
        self.scrubbed = 0

    async def run_once(self) -> int:
        cutoff = to_datetime(self.clock()) - timedelta(seconds=self.retention_s)
        n = await scrub_notification_phones(self.db, older_than=cutoff)
        self.scrubbed += n
        if n:
            log.info("retention: phone numbers dropped from %d notification rows", n)
        return n

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("retention round failed; retrying later")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)
