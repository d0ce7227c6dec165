"""Duty rosters: who is on duty for a grid, per weekday and local time (the pure rules are in alerts.routing)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from alerts.routing import Duty, Shift, on_duty
from alerts.store import Conn, grid_in_scope, worker_in_scope
from whistle import audit
from whistle.access import Scope
from whistle.errors import Invalid, NotFound
from whistle.store.db import Database


async def shifts_of(conn: Conn, grid_ids: Sequence[str]) -> list[Shift]:
    """The shifts of the given grids, by grid, weekday, start and worker."""
    cur = await conn.execute(
        "SELECT worker_id, grid_id, weekday, starts, ends, duty FROM duty_shifts WHERE grid_id = ANY(%s) "
        "ORDER BY grid_id, weekday, starts, worker_id",
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


@dataclass(frozen=True, slots=True)
class Roster:
    """A grid's weekly shifts and who is on duty at the moment asked about."""

    grid_id: str
    shifts: list[Shift]
    on_duty: list[str]
    backup_on_duty: list[str]


async def get_roster(db: Database, *, grid_id: str, now: int, scope: Scope | None = None) -> Roster:
    """A grid's duty roster and who is on duty at `now`; NotFound for an unknown grid (or one outside `scope`)."""
    async with db.connection() as conn:
        if not await grid_in_scope(conn, grid_id, scope):
            raise NotFound(f"grid {grid_id} not found")
        shifts = await shifts_of(conn, [grid_id])
    return Roster(grid_id, shifts, on_duty(shifts, grid_id, now), on_duty(shifts, grid_id, now, Duty.BACKUP))


async def set_roster(
    db: Database, *, grid_id: str, shifts: Sequence[Shift], actor: str, scope: Scope | None = None
) -> None:
    """Replace a grid's roster (audited); NotFound for an unknown grid (or one outside `scope`), Invalid for an
    unknown or offboarded worker."""
    async with db.connection() as conn, conn.transaction():
        if not await grid_in_scope(conn, grid_id, scope):
            raise NotFound(f"grid {grid_id} not found")
        for worker in sorted({s.worker_id for s in shifts}):
            if not await worker_in_scope(conn, worker, None):
                raise Invalid(f"worker {worker} not found")
        await replace_roster(conn, grid_id, shifts, actor=actor)
        await audit.record(
            conn,
            actor=actor,
            action="roster.replace",
            target_type="grid",
            target_id=grid_id,
            data={"shifts": len(shifts), "workers": sorted({s.worker_id for s in shifts})},
        )
