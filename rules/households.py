"""Household data for the models: declared absences and daily features, in PostgreSQL."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import TupleRow


class AbsenceError(ValueError):
    """An absence that cannot be recorded; `not_found` when the household does not exist."""

    def __init__(self, message: str, *, not_found: bool = False) -> None:
        super().__init__(message)
        self.not_found = not_found


MAX_ABSENCE_DAYS = 366


async def add_absence(
    conn: AsyncConnection[TupleRow], household_id: str, *, start: datetime, end: datetime, note: str, actor: str
) -> dict[str, Any]:
    """Record a declared absence of a household."""
    if start.tzinfo is None or end.tzinfo is None:
        raise AbsenceError("start and end need a UTC offset (RFC 3339)")
    if end <= start:
        raise AbsenceError("end must be after start")
    if (end - start).days > MAX_ABSENCE_DAYS:
        raise AbsenceError(f"an absence longer than {MAX_ABSENCE_DAYS} days is not an absence; update the registry")
    cur = await conn.execute("SELECT 1 FROM households WHERE id = %s", (household_id,))
    if await cur.fetchone() is None:
        raise AbsenceError(f"household {household_id} is not registered", not_found=True)
    cur = await conn.execute(
        "INSERT INTO household_absences (household_id, starts_at, ends_at, note, created_by)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING id, created_at",
        (household_id, start, end, note, actor),
    )
    row = await cur.fetchone()
    assert row is not None
    return {
        "id": row[0],
        "household_id": household_id,
        "start": start,
        "end": end,
        "note": note,
        "created_by": actor,
        "created_at": row[1],
    }


async def list_absences(conn: AsyncConnection[TupleRow], household_id: str) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT id, starts_at, ends_at, note, created_by, created_at FROM household_absences"
        " WHERE household_id = %s ORDER BY starts_at DESC LIMIT 500",
        (household_id,),
    )
    return [
        {
            "id": i,
            "household_id": household_id,
            "start": s,
            "end": e,
            "note": n,
            "created_by": by,
            "created_at": at,
        }
        for i, s, e, n, by, at in await cur.fetchall()
    ]


async def load_absences(conn: AsyncConnection[TupleRow], *, horizon_days: int = 60) -> dict[str, list[tuple[int, int]]]:
    """Declared absences that end within the horizon or later, as epoch ms, by household."""
    cur = await conn.execute(
        "SELECT household_id, (extract(epoch FROM starts_at) * 1000)::bigint,"
        " (extract(epoch FROM ends_at) * 1000)::bigint FROM household_absences"
        " WHERE ends_at > now() - make_interval(days => %s) ORDER BY starts_at",
        (horizon_days,),
    )
    out: dict[str, list[tuple[int, int]]] = {}
    for hid, s, e in await cur.fetchall():
        out.setdefault(hid, []).append((int(s), int(e)))
    return out
