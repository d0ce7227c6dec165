"""The read side of alarms and tickets: filtered lists with keyset pagination, one ticket with its history.

Each function opens its own connection from the `Database` it is given and returns domain values
(`Alarm`, `TicketView`); the API makes its shapes from them.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row

from alerts.store import ALARM_COLUMNS, alarm_from_row, alarm_scope_sql, ticket_from_row, ticket_scope_sql
from whistle.access import Scope
from whistle.domain import Alarm, Ticket, TicketEvent
from whistle.errors import Malformed, uuid_text
from whistle.store.db import Database
from whistle.store.query import Where
from whistle.timeutil import from_datetime, to_datetime


@dataclass(frozen=True, slots=True)
class TicketView:
    """A ticket with its audit trail, oldest event first."""

    ticket: Ticket
    history: tuple[TicketEvent, ...]
    grid_name: str | None = None  # the registry's names of the ticket's grid and of its assignee
    assignee_name: str | None = None


def encode_cursor(at: int, row_id: str) -> str:
    """An opaque cursor for the row after which the next page starts."""
    return base64.urlsafe_b64encode(f"{to_datetime(at).isoformat()}|{row_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises Malformed for a cursor this API did not issue."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, row_id = raw.split("|", 1)
        return datetime.fromisoformat(at), uuid_text(row_id)
    except Exception as exc:
        raise Malformed("invalid cursor") from exc


async def list_alarms(
    db: Database,
    *,
    filters: Mapping[str, Any],
    since: datetime | None,
    limit: int,
    cursor: str | None,
    scope: Scope | None = None,
) -> tuple[list[Alarm], str | None]:
    """Alarms newest first (by detection time), filtered by equality on the given columns, within `scope`."""
    where = Where().eq(filters)
    in_scope, scope_args = alarm_scope_sql(scope)
    if scope is not None and not scope.all_grids:
        where.add(in_scope, *scope_args)
    if since is not None:
        where.add("last_seen >= %s", since)
    if cursor:
        where.add("(detected_at, id) < (%s, %s::uuid)", *decode_cursor(cursor))
    sql = f"SELECT {ALARM_COLUMNS} FROM alarms{where.sql()} ORDER BY detected_at DESC, id DESC LIMIT %s"
    async with db.connection() as conn:
        cur = await conn.execute(sql, (*where.args, limit + 1))
        rows = await cur.fetchall()
    items = [alarm_from_row(r) for r in rows[:limit]]
    nxt = encode_cursor(items[-1].detected_at, items[-1].id) if len(rows) > limit else None
    return items, nxt


async def list_tickets(
    db: Database,
    *,
    filters: Mapping[str, Any],
    limit: int,
    cursor: str | None,
    ticket_id: str | None = None,
    scope: Scope | None = None,
    ticket_ids: Sequence[str] | None = None,
) -> tuple[list[TicketView], str | None]:
    """Tickets newest first, each with its alarms and its history, within `scope` (None: all of them);
    `ticket_ids` limits them to those."""
    where = Where().eq(filters, prefix="t.")
    if scope is not None and not scope.all_grids:
        where.add(*_flat(ticket_scope_sql(scope)))
    if ticket_id is not None:
        where.add("t.id = %s::uuid", uuid_text(ticket_id, "ticket"))
    if ticket_ids is not None:
        where.add("t.id = ANY(%s::uuid[])", [uuid_text(t, "ticket") for t in ticket_ids])
    if cursor:
        where.add("(t.created_at, t.id) < (%s, %s::uuid)", *decode_cursor(cursor))
    sql = (
        "SELECT t.*, COALESCE((SELECT array_agg(alarm_id::text ORDER BY alarm_id) FROM ticket_alarms ta "
        f"WHERE ta.ticket_id = t.id), '{{}}') AS alarm_ids, "
        "(SELECT g.name FROM grids g WHERE g.id = t.grid_id) AS grid_name, "
        f"(SELECT w.name FROM workers w WHERE w.id = t.assignee_id) AS assignee_name FROM tickets t{where.sql()} "
        "ORDER BY t.created_at DESC, t.id DESC LIMIT %s"
    )
    async with db.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, (*where.args, limit + 1))
        rows = await cur.fetchall()
        page = [ticket_from_row(r) for r in rows[:limit]]
        history: dict[str, list[TicketEvent]] = {t.id: [] for t in page}
        if page:
            await cur.execute(
                "SELECT ticket_id, at, actor, action, from_status, to_status, note, data FROM ticket_events "
                "WHERE ticket_id = ANY(%s::uuid[]) ORDER BY id",
                ([t.id for t in page],),
            )
            for ev in await cur.fetchall():
                history[str(ev["ticket_id"])].append(
                    TicketEvent(
                        at=from_datetime(ev["at"]),
                        actor=ev["actor"],
                        action=ev["action"],
                        from_status=ev["from_status"],
                        to_status=ev["to_status"],
                        note=ev["note"],
                        data=ev["data"] or {},
                    )
                )
    nxt = encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None
    names = {str(r["id"]): (r["grid_name"], r["assignee_name"]) for r in rows[:limit]}
    return [TicketView(t, tuple(history[t.id]), *names[t.id]) for t in page], nxt


async def get_ticket(db: Database, ticket_id: str, *, scope: Scope | None = None) -> TicketView | None:
    """One ticket with its history, or None (also when it is outside `scope`)."""
    items, _ = await list_tickets(db, filters={}, limit=1, cursor=None, ticket_id=ticket_id, scope=scope)
    return items[0] if items else None


def _flat(condition: tuple[str, list[Any]]) -> tuple[Any, ...]:
    return (condition[0], *condition[1])
