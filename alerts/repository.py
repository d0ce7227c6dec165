"""SQL for alarms, tickets and their audit trail. Functions take an open connection; callers own transactions."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import TupleRow, dict_row
from psycopg.types.json import Jsonb

from alerts.routing import Candidate, Duty, Shift
from whistle.domain import (
    Alarm,
    AlarmKind,
    AlarmStatus,
    Detection,
    Severity,
    SubjectType,
    WorkerRole,
)
from whistle.store.query import Where
from whistle.timeutil import from_datetime, to_datetime

Conn = AsyncConnection[TupleRow]

_ALARM_COLS = (
    "id, kind, severity, status, subject_type, subject_id, household_id, building_id, grid_id, "
    "first_seen, last_seen, detected_at, count, evidence"
)


def _alarm(row: Sequence[Any]) -> Alarm:
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


async def detection_applied(conn: Conn, detection_id: str) -> bool:
    cur = await conn.execute("SELECT 1 FROM applied_detections WHERE detection_id = %s", (detection_id,))
    return await cur.fetchone() is not None


async def lock_open_alarm(conn: Conn, d: Detection) -> Alarm | None:
    """The open alarm of the detection's kind and subject, locked for this transaction."""
    cur = await conn.execute(
        f"SELECT {_ALARM_COLS} FROM alarms WHERE kind = %s AND subject_type = %s AND subject_id = %s "
        "AND status <> 'cleared' FOR UPDATE",
        (d.kind.value, d.subject_type.value, d.subject_id),
    )
    row = await cur.fetchone()
    return _alarm(row) if row else None


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


async def clear_alarms(conn: Conn, alarm_ids: Sequence[str], now: int, evidence: Mapping[str, Any] | None) -> None:
    await conn.execute(
        "UPDATE alarms SET status = 'cleared', cleared_at = %s, "
        "evidence = CASE WHEN %s::jsonb IS NULL THEN evidence ELSE evidence || %s::jsonb END "
        "WHERE id = ANY(%s) AND status <> 'cleared'",
        (to_datetime(now), Jsonb(evidence), Jsonb(evidence), list(alarm_ids)),
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
        "SELECT id, grid_id, role FROM workers WHERE grid_id = ANY(%s) OR grid_id IS NULL OR role = 'street_center'",
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


async def lock_ticket(conn: Conn, ticket_id: str) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT * FROM tickets WHERE id = %s FOR UPDATE", (ticket_id,))
        return await cur.fetchone()


async def set_ticket_status(conn: Conn, ticket_id: str, status: str, **columns: Any) -> None:
    sets = ", ".join([f"{c} = %s" for c in columns] + ["status = %s"])
    await conn.execute(f"UPDATE tickets SET {sets} WHERE id = %s", (*columns.values(), status, ticket_id))


async def alarm_ids_of_ticket(conn: Conn, ticket_id: str) -> list[str]:
    cur = await conn.execute("SELECT alarm_id FROM ticket_alarms WHERE ticket_id = %s ORDER BY alarm_id", (ticket_id,))
    return [str(r[0]) for r in await cur.fetchall()]


# Listing with keyset pagination ------------------------------------------------------------


def encode_cursor(at: datetime, row_id: str) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{row_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises ValueError for a cursor this API did not issue."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, row_id = raw.split("|", 1)
        return datetime.fromisoformat(at), row_id
    except Exception as exc:
        raise ValueError("invalid cursor") from exc


async def list_alarms(
    conn: Conn, *, filters: Mapping[str, Any], since: datetime | None, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    where = Where().eq(filters)
    if since is not None:
        where.add("last_seen >= %s", since)
    if cursor:
        where.add("(detected_at, id) < (%s, %s::uuid)", *decode_cursor(cursor))
    sql = f"SELECT {_ALARM_COLS} FROM alarms{where.sql()} ORDER BY detected_at DESC, id DESC LIMIT %s"
    cur = await conn.execute(sql, (*where.args, limit + 1))
    rows = await cur.fetchall()
    items = [_alarm(r) for r in rows[:limit]]
    nxt = encode_cursor(rows[limit - 1][11], str(rows[limit - 1][0])) if len(rows) > limit else None
    return [alarm_dict(a) for a in items], nxt


def alarm_dict(a: Alarm) -> dict[str, Any]:
    return {
        "id": a.id,
        "kind": a.kind.value,
        "severity": a.severity.value,
        "status": a.status.value,
        "subject_type": a.subject_type.value,
        "subject_id": a.subject_id,
        "household_id": a.household_id,
        "building_id": a.building_id,
        "grid_id": a.grid_id,
        "first_seen": to_datetime(a.first_seen),
        "last_seen": to_datetime(a.last_seen),
        "detected_at": to_datetime(a.detected_at),
        "count": a.count,
        "evidence": a.evidence,
    }


async def list_tickets(
    conn: Conn, *, filters: Mapping[str, Any], limit: int, cursor: str | None, ticket_id: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    where = Where().eq(filters, prefix="t.")
    if ticket_id is not None:
        where.add("t.id = %s::uuid", ticket_id)
    if cursor:
        where.add("(t.created_at, t.id) < (%s, %s::uuid)", *decode_cursor(cursor))
    sql = (
        "SELECT t.*, COALESCE((SELECT array_agg(alarm_id::text ORDER BY alarm_id) FROM ticket_alarms ta "
        f"WHERE ta.ticket_id = t.id), '{{}}') AS alarm_ids FROM tickets t{where.sql()} "
        "ORDER BY t.created_at DESC, t.id DESC LIMIT %s"
    )
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, (*where.args, limit + 1))
        rows = await cur.fetchall()
        page = rows[:limit]
        history: dict[str, list[dict[str, Any]]] = {str(r["id"]): [] for r in page}
        if page:
            await cur.execute(
                "SELECT ticket_id, at, actor, action, from_status, to_status, note, data FROM ticket_events "
                "WHERE ticket_id = ANY(%s) ORDER BY id",
                ([r["id"] for r in page],),
            )
            for ev in await cur.fetchall():
                tid = str(ev.pop("ticket_id"))
                history[tid].append(ev)
    nxt = encode_cursor(rows[limit - 1]["created_at"], str(rows[limit - 1]["id"])) if len(rows) > limit else None
    items = []
    for r in page:
        tid = str(r["id"])
        items.append(
            {
                "id": tid,
                "kind": r["kind"],
                "severity": r["severity"],
                "alarm_ids": r["alarm_ids"],
                "grid_id": r["grid_id"],
                "assignee_id": r["assignee_id"],
                "status": r["status"],
                "escalation_level": r["escalation_level"],
                "created_at": r["created_at"],
                "acknowledged_at": r["acknowledged_at"],
                "arrived_at": r["arrived_at"],
                "resolved_at": r["resolved_at"],
                "outcome": r["outcome"],
                "note": r["note"],
                "history": history[tid],
                "closed_at": r.get("closed_at"),
                "escalation_due_at": r.get("escalation_due_at"),
            }
        )
    return items, nxt


# Dispatch: rosters, recipients, silences, grouping, the outbox ----------------------------------


async def shifts_of(conn: Conn, grid_ids: Sequence[str]) -> list[Shift]:
    cur = await conn.execute(
        "SELECT worker_id, grid_id, weekday, starts, ends, duty FROM duty_shifts WHERE grid_id = ANY(%s)",
        (list(grid_ids),),
    )
    return [Shift(r[0], r[1], r[2], r[3], r[4], Duty(r[5])) for r in await cur.fetchall()]


async def replace_roster(conn: Conn, grid_id: str, shifts: Sequence[Shift], *, actor: str) -> None:
    """Replace a grid's duty roster (one transaction: the old shifts go, the new ones come)."""
    await conn.execute("DELETE FROM duty_shifts WHERE grid_id = %s", (grid_id,))
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO duty_shifts (grid_id, worker_id, weekday, starts, ends, duty, updated_by) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [(grid_id, s.worker_id, s.weekday, s.starts, s.ends, s.duty.value, actor) for s in shifts],
        )


async def exists(conn: Conn, table: str, row_id: str) -> bool:
    assert table in ("grids", "workers", "buildings", "devices", "households")
    cur = await conn.execute(f"SELECT 1 FROM {table} WHERE id = %s", (row_id,))
    return await cur.fetchone() is not None


async def contacts_of(conn: Conn, household_id: str | None) -> list[dict[str, Any]]:
    if household_id is None:
        return []
    cur = await conn.execute("SELECT contacts FROM households WHERE id = %s", (household_id,))
    row = await cur.fetchone()
    return [c for c in (row[0] if row else []) if isinstance(c, dict) and c.get("phone")]


async def recipients(conn: Conn, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Name and phone of each recipient id: workers, and households' contacts (contact:<household>:<n>)."""
    out: dict[str, dict[str, Any]] = {}
    workers = [i for i in ids if not i.startswith("contact:")]
    if workers:
        cur = await conn.execute("SELECT id, name, phone FROM workers WHERE id = ANY(%s)", (workers,))
        for r in await cur.fetchall():
            out[r[0]] = {"id": r[0], "name": r[1], "phone": r[2], "type": "worker"}
    for rid in ids:
        if rid.startswith("contact:"):
            _, household, index = rid.split(":")
            contacts = await contacts_of(conn, household)
            if int(index) < len(contacts):
                c = contacts[int(index)]
                out[rid] = {"id": rid, "name": c.get("name", ""), "phone": c.get("phone"), "type": "contact"}
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


async def active_silence(
    conn: Conn, *, kind: str, devices: Sequence[str], building_id: str | None, grids: Sequence[str], at: int
) -> int | None:
    """The id of a silence or maintenance window covering an alarm at `at`, if any."""
    cur = await conn.execute(
        "SELECT id FROM silences WHERE starts_at <= %s AND ends_at > %s AND (kinds IS NULL OR %s = ANY(kinds)) "
        "AND ((scope_type = 'device' AND scope_id = ANY(%s)) OR (scope_type = 'building' AND scope_id = %s) "
        "OR (scope_type = 'grid' AND scope_id = ANY(%s))) ORDER BY id LIMIT 1",
        (to_datetime(at), to_datetime(at), kind, list(devices), building_id, list(grids)),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else None


async def set_alarm_silence(conn: Conn, alarm_id: str, silence_id: int | None) -> None:
    await conn.execute("UPDATE alarms SET silence_id = %s WHERE id = %s", (silence_id, alarm_id))


async def alarm_silence(conn: Conn, alarm_id: str) -> int | None:
    cur = await conn.execute("SELECT silence_id FROM alarms WHERE id = %s", (alarm_id,))
    row = await cur.fetchone()
    return row[0] if row else None


async def insert_silence(
    conn: Conn,
    *,
    scope_type: str,
    scope_id: str,
    kinds: Sequence[str] | None,
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
    actor: str,
) -> dict[str, Any]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "INSERT INTO silences (scope_type, scope_id, kinds, starts_at, ends_at, reason, created_by) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING *",
            (scope_type, scope_id, list(kinds) if kinds else None, starts_at, ends_at, reason, actor),
        )
        row = await cur.fetchone()
    assert row is not None
    return row


async def list_silences(conn: Conn, *, active_at: datetime | None) -> list[dict[str, Any]]:
    where, args = ("WHERE ends_at > %s", (active_at,)) if active_at else ("", ())
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT * FROM silences {where} ORDER BY starts_at DESC, id DESC LIMIT 1000", args)
        return await cur.fetchall()


async def end_silence(conn: Conn, silence_id: int, at: datetime) -> bool:
    """End a silence now (it stays on record)."""
    cur = await conn.execute(
        "UPDATE silences SET ends_at = GREATEST(starts_at + interval '1 millisecond', LEAST(ends_at, %s)) "
        "WHERE id = %s RETURNING id",
        (at, silence_id),
    )
    return await cur.fetchone() is not None


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


async def update_ticket(conn: Conn, ticket_id: str, **columns: Any) -> None:
    sets = ", ".join(f"{c} = %s" for c in columns)
    await conn.execute(f"UPDATE tickets SET {sets} WHERE id = %s", (*columns.values(), ticket_id))


async def insert_notification(
    conn: Conn,
    *,
    dedup_key: str,
    ticket_id: str,
    recipient_id: str,
    profile: str,
    body: Mapping[str, Any],
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
            recipient_id,
            profile,
            Jsonb(dict(body)),
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


async def roster_of(conn: Conn, grid_id: str) -> list[Shift]:
    cur = await conn.execute(
        "SELECT worker_id, grid_id, weekday, starts, ends, duty FROM duty_shifts WHERE grid_id = %s "
        "ORDER BY weekday, starts, worker_id",
        (grid_id,),
    )
    return [Shift(r[0], r[1], r[2], r[3], r[4], Duty(r[5])) for r in await cur.fetchall()]
