"""Silences and maintenance windows: alarms inside one are recorded, not dispatched.

Life-safety kinds (`smoke.fire`, `elevator.trapped`) are never held back by accident: a silence
that covers one of them (or every kind) must say so (`life_safety`), give a reason and last at
most a few hours (4 by default, WHISTLE_LIFE_SAFETY_SILENCE_MAX_HOURS). Every silence, and the end
of every silence, is in the audit trail with the user who did it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import class_row

from alerts.store import Conn
from whistle import audit
from whistle.access import Scope
from whistle.domain import AlarmKind
from whistle.errors import Invalid, NotFound
from whistle.store.db import Database
from whistle.timeutil import to_datetime

_COLUMNS = "id, scope_type, scope_id, kinds, starts_at, ends_at, reason, created_by, created_at, life_safety, ended_by"
SCOPE_TABLE = {"device": "devices", "building": "buildings", "grid": "grids"}
LIFE_SAFETY_KINDS = frozenset({AlarmKind.SMOKE_FIRE.value, AlarmKind.ELEVATOR_TRAPPED.value})
MIN_LIFE_SAFETY_REASON = 2  # "演练" (a drill) is a reason
DEFAULT_LIFE_SAFETY_MAX_S = 4 * 3600.0

# The grid a silence lies in, for scoping: the grid itself, the building's, or the device's building's.
SILENCE_GRID = (
    "CASE s.scope_type WHEN 'grid' THEN s.scope_id "
    "WHEN 'building' THEN (SELECT b.grid_id FROM buildings b WHERE b.id = s.scope_id) "
    "ELSE (SELECT b.grid_id FROM devices d LEFT JOIN households h ON h.id = d.household_id "
    "JOIN buildings b ON b.id = COALESCE(d.building_id, h.building_id) WHERE d.id = s.scope_id) END"
)
# The same for a silence about to be made, from its (scope_type, scope_id) parameters.
_TARGET_GRID = {
    "grid": "SELECT id FROM grids WHERE id = %s",
    "building": "SELECT grid_id FROM buildings WHERE id = %s",
    "device": "SELECT b.grid_id FROM devices d LEFT JOIN households h ON h.id = d.household_id "
    "JOIN buildings b ON b.id = COALESCE(d.building_id, h.building_id) WHERE d.id = %s",
}


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
    life_safety: bool = False
    ended_by: str | None = None


def covers_life_safety(kinds: Sequence[str] | None) -> bool:
    """Whether a silence of these kinds (None: every kind) would hold back a life-safety alarm."""
    return kinds is None or any(k in LIFE_SAFETY_KINDS for k in kinds)


def check_silence(
    *,
    kinds: Sequence[str] | None,
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
    life_safety: bool,
    max_life_safety_s: float,
) -> bool:
    """Refuse a silence of life-safety kinds that is not explicit, bounded and explained (pure);
    returns whether it covers life safety."""
    if ends_at <= starts_at:
        raise Invalid("end must be after start")
    if not covers_life_safety(kinds):
        return False
    what = "every kind" if kinds is None else ", ".join(sorted(LIFE_SAFETY_KINDS & set(kinds)))
    if not life_safety:
        raise Invalid(
            f"this silence would hold back {what} (life safety): say so with life_safety: true, "
            f"give a reason and end it within {max_life_safety_s / 3600:g} h; or name the kinds to silence"
        )
    if len(reason.strip()) < MIN_LIFE_SAFETY_REASON:
        raise Invalid("a silence of life-safety alarms needs a reason")
    if (ends_at - starts_at).total_seconds() > max_life_safety_s:
        raise Invalid(f"a silence of life-safety alarms lasts at most {max_life_safety_s / 3600:g} h")
    return True


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
    life_safety: bool = False,
) -> Silence:
    async with conn.cursor(row_factory=class_row(Silence)) as cur:
        await cur.execute(
            "INSERT INTO silences (scope_type, scope_id, kinds, starts_at, ends_at, reason, created_by, life_safety) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING " + _COLUMNS,
            (scope_type, scope_id, list(kinds) if kinds else None, starts_at, ends_at, reason, actor, life_safety),
        )
        row = await cur.fetchone()
    assert row is not None
    return row


async def list_silences(db: Database, *, active_at: datetime | None, scope: Scope | None = None) -> list[Silence]:
    """Silences not over at `active_at` (all of them when None), newest first, within `scope`."""
    in_scope, args = (scope or Scope.everything()).grid_sql(f"({SILENCE_GRID})")
    where = f"WHERE {in_scope}" + (" AND s.ends_at > %s" if active_at else "")
    params = (*args, active_at) if active_at else tuple(args)
    columns = ", ".join(f"s.{c.strip()}" for c in _COLUMNS.split(","))
    async with db.connection() as conn, conn.cursor(row_factory=class_row(Silence)) as cur:
        await cur.execute(
            f"SELECT {columns} FROM silences s {where} ORDER BY s.starts_at DESC, s.id DESC LIMIT 1000", params
        )
        return await cur.fetchall()


async def end_silence(
    db: Database, silence_id: int, at: datetime, *, actor: str = audit.SYSTEM, scope: Scope | None = None
) -> None:
    """End a silence at `at` (it stays on record); NotFound if there is no such silence (within `scope`)."""
    in_scope, args = (scope or Scope.everything()).grid_sql(f"({SILENCE_GRID})")
    async with db.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "UPDATE silences s SET ends_at = GREATEST(starts_at + interval '1 millisecond', LEAST(ends_at, %s)), "
            f"ended_by = %s WHERE s.id = %s AND {in_scope} RETURNING s.id, s.scope_type, s.scope_id",
            (at, actor, silence_id, *args),
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"silence {silence_id} not found")
        await audit.record(
            conn,
            actor=actor,
            action="silence.end",
            target_type="silence",
            target_id=str(silence_id),
            data={"scope_type": row[1], "scope_id": row[2], "at": at.isoformat()},
        )


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
    life_safety: bool = False,
    max_life_safety_s: float = DEFAULT_LIFE_SAFETY_MAX_S,
    scope: Scope | None = None,
) -> Silence:
    """A silence over an existing device, building or grid (within `scope`), audited; NotFound if the
    target does not exist for the caller, Invalid for a life-safety silence that is not explicit and bounded."""
    covers = check_silence(
        kinds=kinds,
        starts_at=starts_at,
        ends_at=ends_at,
        reason=reason,
        life_safety=life_safety,
        max_life_safety_s=max_life_safety_s,
    )
    in_scope, args = (scope or Scope.everything()).grid_sql("g.grid")
    async with db.connection() as conn, conn.transaction():
        cur = await conn.execute(
            f"SELECT 1 FROM ({_TARGET_GRID[scope_type]}) g(grid) WHERE {in_scope}", (scope_id, *args)
        )
        if await cur.fetchone() is None:
            raise NotFound(f"{scope_type} {scope_id} not found")
        silence = await insert_silence(
            conn,
            scope_type=scope_type,
            scope_id=scope_id,
            kinds=kinds,
            starts_at=starts_at,
            ends_at=ends_at,
            reason=reason,
            actor=actor,
            life_safety=covers,
        )
        await audit.record(
            conn,
            actor=actor,
            action="silence.create",
            target_type="silence",
            target_id=str(silence.id),
            data={
                "scope_type": scope_type,
                "scope_id": scope_id,
                "kinds": list(kinds) if kinds else None,
                "starts_at": starts_at.isoformat(),
                "ends_at": ends_at.isoformat(),
                "reason": reason,
                "life_safety": covers,
            },
        )
        return silence
