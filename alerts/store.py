"""The write side of alarms and tickets: SQL on an open connection, callers own the transaction.

Alarms and tickets come back as domain values (`whistle.domain.Alarm`, `Ticket`); what the API
lists and shows is in `alerts.queries`, duty rosters in `alerts.rosters`, silences in
`alerts.silences`, the outbox in `alerts.outbox`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import TupleRow, dict_row
from psycopg.types.json import Jsonb

from alerts.lifecycle import Cleared
from alerts.routing import Candidate
from whistle.access import Scope
from whistle.domain import (
    Alarm,
    AlarmKind,
    AlarmStatus,
    Detection,
    Outcome,
    Severity,
    SubjectType,
    Ticket,
    TicketStatus,
    WorkerRole,
)
from whistle.timeutil import from_datetime, to_datetime

Conn = AsyncConnection[TupleRow]

ALARM_COLUMNS = (
    "id, kind, severity, status, subject_type, subject_id, household_id, building_id, grid_id, "
    "first_seen, last_seen, detected_at, count, evidence"
)


def alarm_from_row(row: Sequence[Any]) -> Alarm:
    """An alarm from a row of ALARM_COLUMNS."""
    return Alarm(
        id=str(row[0]),
        kind=AlarmKind(row[1]),
        severity=Severity(row[2]),
        status=AlarmStatus(row[3]),
        subject_type=SubjectType(row[4]),
        subject_id=row[5],
        household_id=row[6],
        building_id=row[7],
        grid_id=row[8],
        first_seen=from_datetime(row[9]),
        last_seen=from_datetime(row[10]),
        detected_at=from_datetime(row[11]),
        count=row[12],
        evidence=row[13],
    )


def _ms(value: datetime | None) -> int | None:
    return from_datetime(value) if value is not None else None


def ticket_from_row(row: Mapping[str, Any]) -> Ticket:
    """A ticket from a `SELECT * FROM tickets` row (dict_row), with `alarm_ids` when the query adds them."""
    return Ticket(
        id=str(row["id"]),
        kind=AlarmKind(row["kind"]),
        severity=Severity(row["severity"]),
        grid_id=row["grid_id"],
        assignee_id=row["assignee_id"],
        status=TicketStatus(row["status"]),
        escalation_level=int(row["escalation_level"]),
        created_at=from_datetime(row["created_at"]),
        acknowledged_at=_ms(row["acknowledged_at"]),
        arrived_at=_ms(row["arrived_at"]),
        resolved_at=_ms(row["resolved_at"]),
        closed_at=_ms(row.get("closed_at")),
        outcome=Outcome(row["outcome"]) if row["outcome"] else None,
        note=row["note"],
        household_id=row.get("household_id"),
        building_id=row.get("building_id"),
        alarm_ids=tuple(str(a) for a in row.get("alarm_ids") or ()),
        policy=row.get("policy") or {},
        escalation_step=int(row.get("escalation_step") or 0),
        escalation_due_at=_ms(row.get("escalation_due_at")),
        escalation_base_at=_ms(row.get("escalation_base_at")),
        assignment=int(row.get("assignment") or 0),
        short_code=int(row["short_code"]) if row.get("short_code") is not None else None,
    )


@dataclass(frozen=True, slots=True)
class Contact:
    """Someone a notification can go to: a worker, or a household's emergency contact."""

    id: str
    name: str
    phone: str | None
    type: str  # "worker" or "contact": picks the channels tried (alerts.outbox.ROUTES)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "phone": self.phone, "type": self.type}


async def detection_applied(conn: Conn, detection_id: str) -> bool:
    cur = await conn.execute("SELECT 1 FROM applied_detections WHERE detection_id = %s", (detection_id,))
    return await cur.fetchone() is not None


async def lock_open_alarm(conn: Conn, d: Detection) -> Alarm | None:
    """The open alarm of the detection's kind and subject, locked for this transaction."""
    cur = await conn.execute(
        f"SELECT {ALARM_COLUMNS} FROM alarms WHERE kind = %s AND subject_type = %s AND subject_id = %s "
        "AND status <> 'cleared' FOR UPDATE",
        (d.kind.value, d.subject_type.value, d.subject_id),
    )
    row = await cur.fetchone()
    return alarm_from_row(row) if row else None


async def lock_alarm(conn: Conn, alarm_id: str) -> Alarm | None:
    """An alarm by id, locked for this transaction."""
    cur = await conn.execute(f"SELECT {ALARM_COLUMNS} FROM alarms WHERE id = %s FOR UPDATE", (alarm_id,))
    row = await cur.fetchone()
    return alarm_from_row(row) if row else None


async def insert_alarm(conn: Conn, d: Detection, severity: Severity, now: int) -> str:
    alarm_id = str(uuid.uuid4())
    await conn.execute(
        "INSERT INTO alarms (id, kind, severity, status, subject_type, subject_id, household_id, building_id, "
        "grid_id, first_seen, last_seen, detected_at, count, evidence) "
        "VALUES (%s, %s, %s, 'active', %s, %s, %s, %s, %s, %s, %s, %s, 1, %s)",
        (
            alarm_id,
            d.kind.value,
            severity.value,
            d.subject_type.value,
            d.subject_id,
            d.household_id,
            d.building_id,
            d.grid_id,
            to_datetime(d.ts),
            to_datetime(d.ts),
            to_datetime(now),
            Jsonb(d.evidence),
        ),
    )
    return alarm_id


async def update_alarm(conn: Conn, alarm_id: str, d: Detection, severity: Severity) -> None:
    await conn.execute(
        "UPDATE alarms SET count = count + 1, last_seen = GREATEST(last_seen, %s), "
        "first_seen = LEAST(first_seen, %s), evidence = %s, severity = %s WHERE id = %s",
        (to_datetime(d.ts), to_datetime(d.ts), Jsonb(d.evidence), severity.value, alarm_id),
    )


async def clear_alarms(
    conn: Conn, alarm_ids: Sequence[str], now: int, evidence: Mapping[str, Any] | None, *, seen: int | None = None
) -> None:
    """Clear alarms; `seen` is the event time of the rule's clear (only a rule's clear may be reopened)."""
    await conn.execute(
        "UPDATE alarms SET status = 'cleared', cleared_at = %s, cleared_seen = %s, "
        "evidence = CASE WHEN %s::jsonb IS NULL THEN evidence ELSE evidence || %s::jsonb END "
        "WHERE id = ANY(%s) AND status <> 'cleared'",
        (
            to_datetime(now),
            to_datetime(seen) if seen is not None else None,
            Jsonb(evidence),
            Jsonb(evidence),
            list(alarm_ids),
        ),
    )


async def last_cleared_alarm(conn: Conn, d: Detection) -> Cleared | None:
    """The most recently cleared alarm of the detection's kind and subject, locked, with what reopening needs."""
    cur = await conn.execute(
        f"SELECT {ALARM_COLUMNS}, cleared_seen, incident_id IS NOT NULL, ("
        " SELECT t.status FROM ticket_alarms ta JOIN tickets t ON t.id = ta.ticket_id WHERE ta.alarm_id = alarms.id"
        " ORDER BY t.created_at DESC LIMIT 1) FROM alarms"
        " WHERE kind = %s AND subject_type = %s AND subject_id = %s AND status = 'cleared'"
        " ORDER BY cleared_at DESC, last_seen DESC LIMIT 1 FOR UPDATE",
        (d.kind.value, d.subject_type.value, d.subject_id),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    n = len(ALARM_COLUMNS.split(","))
    seen, grouped, ticket_status = row[n], row[n + 1], row[n + 2]
    ticket_open = None if ticket_status is None else TicketStatus(ticket_status) in _WORKED_ON
    return Cleared(alarm_from_row(row[:n]), from_datetime(seen) if seen is not None else None, ticket_open, grouped)


_WORKED_ON = frozenset({TicketStatus.DISPATCHED, TicketStatus.ACKNOWLEDGED, TicketStatus.ON_SITE})


async def reopen_alarm(conn: Conn, cleared: Cleared, d: Detection, severity: Severity, *, acknowledged: bool) -> None:
    """Make a cleared alarm open again with the detection that raised it anew.

    The screens' daily rollup (stats/rollups.py, migration 0021) counts an alarm once it is cleared; if it was
    rolled up already, it is taken out of its day again here, under the rollup's lock, so that its next clear
    counts it once."""
    a = cleared.alarm
    await conn.execute("SELECT 1 FROM stats_marks WHERE name = 'alarms' FOR UPDATE")
    await conn.execute(
        "UPDATE alarm_days SET alarms = alarm_days.alarms - 1 FROM alarms a, stats_marks m"
        " WHERE a.id = %s AND m.name = 'alarms' AND a.cleared_at < m.through AND alarm_days.alarms > 0"
        " AND alarm_days.day = ((a.detected_at + interval '8 hours') AT TIME ZONE 'UTC')::date"
        " AND alarm_days.kind = a.kind AND alarm_days.severity = a.severity"
        " AND alarm_days.grid_id = COALESCE(a.grid_id, '')",
        (a.id,),
    )
    await conn.execute(
        "UPDATE alarms SET status = %s, cleared_at = NULL, cleared_seen = NULL, reopened = reopened + 1,"
        " count = count + 1, last_seen = GREATEST(last_seen, %s), severity = %s, evidence = %s WHERE id = %s",
        (
            "acknowledged" if acknowledged else "active",
            to_datetime(d.ts),
            severity.value,
            Jsonb(
                {
                    **dict(d.evidence),
                    "reopened_after_clear_s": round((d.ts - (cleared.cleared_seen or d.ts)) / 1000),
                }
            ),
            a.id,
        ),
    )


async def mark_applied(conn: Conn, detection_id: str, alarm_id: str) -> None:
    await conn.execute(
        "INSERT INTO applied_detections (detection_id, alarm_id) VALUES (%s, %s)", (detection_id, alarm_id)
    )


async def ticket_for_alarm(conn: Conn, alarm_id: str) -> str | None:
    cur = await conn.execute("SELECT ticket_id FROM ticket_alarms WHERE alarm_id = %s", (alarm_id,))
    row = await cur.fetchone()
    return str(row[0]) if row else None


async def routing_candidates(conn: Conn, grid_id: str | None) -> tuple[list[str], list[Candidate]]:
    """The grid chain from `grid_id` up through its parents, and the workers who could take the ticket."""
    chain: list[str] = []
    if grid_id is not None:
        cur = await conn.execute(
            "WITH RECURSIVE up(id, parent_id, depth) AS ("
            " SELECT id, parent_id, 0 FROM grids WHERE id = %s"
            " UNION ALL SELECT g.id, g.parent_id, up.depth + 1 FROM grids g JOIN up ON g.id = up.parent_id"
            " WHERE up.depth < 16) SELECT id FROM up ORDER BY depth",
            (grid_id,),
        )
        chain = [r[0] for r in await cur.fetchall()]
    cur = await conn.execute(
        "SELECT id, grid_id, role FROM workers WHERE (grid_id = ANY(%s) OR grid_id IS NULL OR role = 'street_center') "
        "AND retired_at IS NULL",
        (chain,),
    )
    workers = [Candidate(r[0], r[1], WorkerRole(r[2])) for r in await cur.fetchall()]
    return chain, workers


async def insert_ticket(
    conn: Conn,
    *,
    alarm: Alarm | Detection,
    alarm_id: str,
    severity: Severity,
    assignee_id: str | None,
    now: int,
    policy: Mapping[str, Any] | None = None,
) -> str:
    ticket_id = str(uuid.uuid4())
    await conn.execute(
        "INSERT INTO tickets (id, kind, severity, grid_id, assignee_id, status, created_at, policy, "
        "escalation_base_at, household_id, building_id) "
        "VALUES (%s, %s, %s, %s, %s, 'dispatched', %s, %s, %s, %s, %s)",
        (
            ticket_id,
            alarm.kind.value,
            severity.value,
            alarm.grid_id,
            assignee_id,
            to_datetime(now),
            Jsonb(dict(policy or {})),
            to_datetime(now),
            alarm.household_id,
            alarm.building_id,
        ),
    )
    await conn.execute("INSERT INTO ticket_alarms (ticket_id, alarm_id) VALUES (%s, %s)", (ticket_id, alarm_id))
    return ticket_id


async def add_ticket_event(
    conn: Conn,
    ticket_id: str,
    *,
    at: int,
    actor: str,
    action: str,
    from_status: str | None = None,
    to_status: str | None = None,
    note: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO ticket_events (ticket_id, at, actor, action, from_status, to_status, note, data) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (ticket_id, to_datetime(at), actor, action, from_status, to_status, note, Jsonb(dict(data or {}))),
    )


async def lock_ticket(conn: Conn, ticket_id: str) -> Ticket | None:
    """The ticket, locked for this transaction."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT * FROM tickets WHERE id = %s FOR UPDATE", (ticket_id,))
        row = await cur.fetchone()
    return ticket_from_row(row) if row is not None else None


def ticket_scope_sql(scope: Scope | None, alias: str = "t") -> tuple[str, list[Any]]:
    """A SQL condition keeping the tickets (alias `alias`) within a caller's scope: in its grids, assigned
    to it, or notified to it (whistle.access). None: no restriction (the service itself)."""
    if scope is None or scope.all_grids:
        return "TRUE", []
    parts: list[str] = []
    args: list[Any] = []
    if scope.grid_ids:
        parts.append(f"{alias}.grid_id = ANY(%s)")
        args.append(list(scope.grid_ids))
    if scope.user_id is not None:
        parts.append(f"{alias}.assignee_id = %s")
        parts.append(f"EXISTS (SELECT 1 FROM notifications n WHERE n.ticket_id = {alias}.id AND n.recipient_id = %s)")
        args += [scope.user_id, scope.user_id]
    return ("(" + " OR ".join(parts) + ")" if parts else "FALSE"), args


def alarm_scope_sql(scope: Scope | None, alias: str = "alarms") -> tuple[str, list[Any]]:
    """A SQL condition keeping the alarms within a caller's scope: in its grids, or on a ticket in its scope."""
    if scope is None or scope.all_grids:
        return "TRUE", []
    grid_sql, args = scope.grid_sql(f"{alias}.grid_id")
    if scope.user_id is None:
        return grid_sql, args
    ticket_sql, ticket_args = ticket_scope_sql(Scope(False, (), scope.user_id), "st")
    return (
        f"({grid_sql} OR EXISTS (SELECT 1 FROM ticket_alarms sta JOIN tickets st ON st.id = sta.ticket_id "
        f"WHERE sta.alarm_id = {alias}.id AND {ticket_sql}))",
        [*args, *ticket_args],
    )


async def lock_ticket_in_scope(conn: Conn, ticket_id: str, scope: Scope | None) -> Ticket | None:
    """The ticket, locked for this transaction, if it is within `scope` (None when it is not, or is not at all)."""
    where, args = ticket_scope_sql(scope)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT * FROM tickets t WHERE t.id = %s AND {where} FOR UPDATE", (ticket_id, *args))
        row = await cur.fetchone()
    return ticket_from_row(row) if row is not None else None


async def set_ticket_status(conn: Conn, ticket_id: str, status: str, **columns: Any) -> None:
    sets = ", ".join([f"{c} = %s" for c in columns] + ["status = %s"])
    await conn.execute(f"UPDATE tickets SET {sets} WHERE id = %s", (*columns.values(), status, ticket_id))


async def alarm_ids_of_ticket(conn: Conn, ticket_id: str) -> list[str]:
    cur = await conn.execute("SELECT alarm_id FROM ticket_alarms WHERE ticket_id = %s ORDER BY alarm_id", (ticket_id,))
    return [str(r[0]) for r in await cur.fetchall()]


async def update_ticket(conn: Conn, ticket_id: str, **columns: Any) -> None:
    sets = ", ".join(f"{c} = %s" for c in columns)
    await conn.execute(f"UPDATE tickets SET {sets} WHERE id = %s", (*columns.values(), ticket_id))


async def open_ticket_of_group(conn: Conn, kinds: Sequence[str], column: str, value: str) -> str | None:
    """An unresolved ticket holding an open alarm of one of `kinds` on the same household or building."""
    assert column in ("household_id", "building_id")
    cur = await conn.execute(
        "SELECT ta.ticket_id FROM alarms a JOIN ticket_alarms ta ON ta.alarm_id = a.id "
        "JOIN tickets t ON t.id = ta.ticket_id "
        f"WHERE a.{column} = %s AND a.kind = ANY(%s) AND a.status <> 'cleared' "
        "AND t.status NOT IN ('resolved', 'closed') ORDER BY t.created_at LIMIT 1 FOR UPDATE OF t",
        (value, list(kinds)),
    )
    row = await cur.fetchone()
    return str(row[0]) if row else None


async def attach_alarm(conn: Conn, ticket_id: str, alarm_id: str) -> None:
    await conn.execute("INSERT INTO ticket_alarms (ticket_id, alarm_id) VALUES (%s, %s)", (ticket_id, alarm_id))


async def has_open_alarms(conn: Conn, ticket_id: str) -> bool:
    cur = await conn.execute(
        "SELECT 1 FROM ticket_alarms ta JOIN alarms a ON a.id = ta.alarm_id "
        "WHERE ta.ticket_id = %s AND a.status <> 'cleared' LIMIT 1",
        (ticket_id,),
    )
    return await cur.fetchone() is not None


async def acknowledge_alarms(conn: Conn, ticket_id: str) -> None:
    await conn.execute(
        "UPDATE alarms SET status = 'acknowledged' WHERE status = 'active' "
        "AND id IN (SELECT alarm_id FROM ticket_alarms WHERE ticket_id = %s)",
        (ticket_id,),
    )


async def exists(conn: Conn, table: str, row_id: str) -> bool:
    assert table in ("grids", "workers", "buildings", "devices", "households")
    cur = await conn.execute(f"SELECT 1 FROM {table} WHERE id = %s", (row_id,))
    return await cur.fetchone() is not None


async def grid_in_scope(conn: Conn, grid_id: str, scope: Scope | None) -> bool:
    """Whether a grid exists (and lies within `scope`, if given)."""
    where, args = (scope or Scope.everything()).grid_sql("id")
    cur = await conn.execute(f"SELECT 1 FROM grids WHERE id = %s AND {where}", (grid_id, *args))
    return await cur.fetchone() is not None


async def worker_in_scope(conn: Conn, worker_id: str, scope: Scope | None) -> bool:
    """Whether an active worker exists (and works within `scope`, if given)."""
    where, args = (scope or Scope.everything()).grid_sql("grid_id")
    cur = await conn.execute(
        f"SELECT 1 FROM workers WHERE id = %s AND retired_at IS NULL AND {where}", (worker_id, *args)
    )
    return await cur.fetchone() is not None


async def contacts_of(conn: Conn, household_id: str | None) -> list[Mapping[str, Any]]:
    """A household's emergency contacts that have a phone (the registry's `contacts`)."""
    if household_id is None:
        return []
    cur = await conn.execute("SELECT contacts FROM households WHERE id = %s", (household_id,))
    row = await cur.fetchone()
    return [c for c in (row[0] if row else []) if isinstance(c, dict) and c.get("phone")]


async def recipients(conn: Conn, ids: Sequence[str]) -> dict[str, Contact]:
    """Name and phone of each recipient id: workers, and households' contacts (contact:<household>:<n>)."""
    out: dict[str, Contact] = {}
    workers = [i for i in ids if not i.startswith("contact:")]
    if workers:
        cur = await conn.execute("SELECT id, name, phone FROM workers WHERE id = ANY(%s)", (workers,))
        for r in await cur.fetchall():
            out[r[0]] = Contact(r[0], r[1], r[2], "worker")
    for rid in ids:
        if rid.startswith("contact:"):
            _, household, index = rid.split(":")
            contacts = await contacts_of(conn, household)
            if int(index) < len(contacts):
                c = contacts[int(index)]
                out[rid] = Contact(rid, str(c.get("name", "")), c.get("phone"), "contact")
    return out


async def place_of(conn: Conn, building_id: str | None, household_id: str | None) -> str:
    """A human-readable place: the building's address and the household's unit."""
    if building_id is None and household_id is None:
        return ""
    cur = await conn.execute(
        "SELECT b.address, h.unit FROM buildings b LEFT JOIN households h ON h.id = %s AND h.building_id = b.id "
        "WHERE b.id = COALESCE(%s, (SELECT building_id FROM households WHERE id = %s))",
        (household_id, building_id, household_id),
    )
    row = await cur.fetchone()
    return " ".join(p for p in (row or ()) if p)


async def location_of(conn: Conn, building_id: str | None, household_id: str | None) -> tuple[float, float] | None:
    """The registry location (WGS-84 lon, lat) of a ticket's building (or its household's), if it has one."""
    if building_id is None and household_id is None:
        return None
    cur = await conn.execute(
        "SELECT lon, lat FROM buildings WHERE id = COALESCE(%s, (SELECT building_id FROM households WHERE id = %s))",
        (building_id, household_id),
    )
    row = await cur.fetchone()
    if row is None or row[0] is None or row[1] is None:
        return None
    return float(row[0]), float(row[1])
