"""The audit trail of everything that is not a ticket change (those are in `ticket_events`).

Each record names the real actor (a user id, a registry worker's id, `admin` for the bootstrap
token, `system` for the service itself), what they did, to what, and the details. Records are
written in the same transaction as the change they describe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb

from whistle.store.db import Database

SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    id: int
    at: datetime
    actor: str
    action: str
    target_type: str
    target_id: str | None
    data: Mapping[str, Any]


async def record(
    conn: AsyncConnection[TupleRow],
    *,
    actor: str,
    action: str,
    target_type: str,
    target_id: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> None:
    """Add one audit record on the caller's connection (inside the caller's transaction)."""
    await conn.execute(
        "INSERT INTO audit_events (actor, action, target_type, target_id, data) VALUES (%s, %s, %s, %s, %s)",
        (actor, action, target_type, target_id, Jsonb(dict(data or {}))),
    )


async def list_events(
    db: Database,
    *,
    actor: str | None = None,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[AuditEvent]:
    """Audit records newest first, filtered by equality, paged by id."""
    clauses: list[str] = []
    args: list[object] = []
    for column, value in (("actor", actor), ("action", action), ("target_type", target_type), ("target_id", target_id)):
        if value is not None:
            clauses.append(f"{column} = %s")
            args.append(value)
    if before_id is not None:
        clauses.append("id < %s")
        args.append(before_id)
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT id, at, actor, action, target_type, target_id, data FROM audit_events"
            f"{where} ORDER BY id DESC LIMIT %s",
            (*args, limit),
        )
        rows = await cur.fetchall()
    return [AuditEvent(*r) for r in rows]
