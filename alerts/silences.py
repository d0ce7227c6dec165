"""Silences and maintenance windows: alarms inside one are recorded, not dispatched."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import class_row

from alerts.store import Conn, exists
from whistle.errors import NotFound
from whistle.store.db import Database
from whistle.timeutil import to_datetime

_COLUMNS = "id, scope_type, scope_id, kinds, starts_at, ends_at, reason, created_by, created_at"
SCOPE_TABLE = {"device": "devices", "building": "buildings", "grid": "grids"}


@dataclass(frozen=True, slots=True)
class Silence:
    """A silence or maintenance window over a device, building or grid, for some kinds or all (None)."""

    id: int
    scope_type: str
    scope_id: str
    kinds: list[str] | None
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str
    created_at: datetime


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
) -> Silence:
    async with conn.cursor(row_factory=class_row(Silence)) as cur:
        await cur.execute(
            "INSERT INTO silences (scope_type, scope_id, kinds, starts_at, ends_at, reason, created_by) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING " + _COLUMNS,
            (scope_type, scope_id, list(kinds) if kinds else None, starts_at, ends_at, reason, actor),
        )
        row = await cur.fetchone()
    assert row is not None
    return row


async def list_silences(db: Database, *, active_at: datetime | None) -> list[Silence]:
    """Silences not over at `active_at` (all of them when None), newest first."""
    where, args = ("WHERE ends_at > %s", (active_at,)) if active_at else ("", ())
    async with db.connection() as conn, conn.cursor(row_factory=class_row(Silence)) as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM silences {where} ORDER BY starts_at DESC, id DESC LIMIT 1000", args)
        return await cur.fetchall()


async def end_silence(db: Database, silence_id: int, at: datetime) -> None:
    """End a silence at `at` (it stays on record); NotFound if there is no such silence."""
    async with db.connection() as conn:
        cur = await conn.execute(
            "UPDATE silences SET ends_at = GREATEST(starts_at + interval '1 millisecond', LEAST(ends_at, %s)) "
            "WHERE id = %s RETURNING id",
            (at, silence_id),
        )
        if await cur.fetchone() is None:
            raise NotFound(f"silence {silence_id} not found")


async def create_silence(
    db: Database,
    *,
    scope_type: str,
    scope_id: str,
    kinds: Sequence[str] | None,
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
    actor: str,
) -> Silence:
    """A silence over an existing device, building or grid; NotFound if the scope does not exist."""
    async with db.connection() as conn, conn.transaction():
        if not await exists(conn, SCOPE_TABLE[scope_type], scope_id):
            raise NotFound(f"{scope_type} {scope_id} not found")
        return await insert_silence(
            conn,
            scope_type=scope_type,
            scope_id=scope_id,
            kinds=kinds,
            starts_at=starts_at,
            ends_at=ends_at,
            reason=reason,
            actor=actor,
        )
