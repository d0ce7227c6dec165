"""Declared absences of households (registry data: a family reports that a lone elder is away), in PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from whistle import audit
from whistle.access import Scope
from whistle.bus import Bus
from whistle.changes import announce_after, announce_in
from whistle.errors import ServiceError
from whistle.store.db import Database

# A household within a scope: the grid of its building.
_HOUSEHOLD_IN_SCOPE = "SELECT 1 FROM households h JOIN buildings b ON b.id = h.building_id WHERE h.id = %s AND "


class AbsenceError(ServiceError):
    """An absence that cannot be recorded; `not_found` when the household does not exist."""

    def __init__(self, message: str, *, not_found: bool = False) -> None:
        super().__init__(message, not_found=not_found, invalid=not not_found)


MAX_ABSENCE_DAYS = 366


@dataclass(frozen=True, slots=True)
class Absence:
    id: int
    household_id: str
    start: datetime
    end: datetime
    note: str
    created_by: str
    created_at: datetime


async def household_in_scope(conn: AsyncConnection[TupleRow], household_id: str, scope: Scope | None) -> bool:
    """Whether a household exists (and its building lies within `scope`, if given)."""
    where, args = (scope or Scope.everything()).grid_sql("b.grid_id")
    cur = await conn.execute(_HOUSEHOLD_IN_SCOPE + where, (household_id, *args))
    return await cur.fetchone() is not None


async def add_absence(
    db: Database,
    household_id: str,
    *,
    start: datetime,
    end: datetime,
    note: str,
    actor: str,
    scope: Scope | None = None,
    bus: Bus | None = None,
) -> Absence:
    """Record a declared absence of a household (within `scope`), audited."""
    if start.tzinfo is None or end.tzinfo is None:
        raise AbsenceError("start and end need a UTC offset (RFC 3339)")
    if end <= start:
        raise AbsenceError("end must be after start")
    if (end - start).days > MAX_ABSENCE_DAYS:
        raise AbsenceError(f"an absence longer than {MAX_ABSENCE_DAYS} days is not an absence; update the registry")
    async with db.connection() as conn, conn.transaction():
        if not await household_in_scope(conn, household_id, scope):
            raise AbsenceError(f"household {household_id} is not registered", not_found=True)
        cur = await conn.execute(
            "INSERT INTO household_absences (household_id, starts_at, ends_at, note, created_by)"
            " VALUES (%s, %s, %s, %s, %s) RETURNING id, created_at",
            (household_id, start, end, note, actor),
        )
        row = await cur.fetchone()
        assert row is not None
        await audit.record(
            conn,
            actor=actor,
            action="absence.declare",
            target_type="household",
            target_id=household_id,
            data={"absence_id": row[0], "start": start.isoformat(), "end": end.isoformat()},
        )
        change = await announce_in(conn, bus, "absence")
    await announce_after(bus, change)
    return Absence(row[0], household_id, start, end, note, actor, row[1])


async def list_absences(db: Database, household_id: str, *, scope: Scope | None = None) -> list[Absence]:
    """A household's declared absences, latest first; AbsenceError(not_found) outside `scope`."""
    async with db.connection() as conn:
        if not await household_in_scope(conn, household_id, scope):
            raise AbsenceError(f"household {household_id} is not registered", not_found=True)
        cur = await conn.execute(
            "SELECT id, starts_at, ends_at, note, created_by, created_at FROM household_absences"
            " WHERE household_id = %s ORDER BY starts_at DESC LIMIT 500",
            (household_id,),
        )
        rows = await cur.fetchall()
    return [Absence(i, household_id, s, e, n, by, at) for i, s, e, n, by, at in rows]


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
