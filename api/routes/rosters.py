"""Duty rosters per grid: weekly shifts in Asia/Shanghai time, and who is on duty now (within the caller's scope)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from alerts import rosters
from alerts.routing import Duty, Shift
from api.deps import Allow, GridId, Services
from api.schemas import RosterRead, RosterWrite
from whistle.access import Permission, Principal

router = APIRouter()


@router.get("/grids/{grid_id}/roster", response_model=RosterRead)
async def get_roster(
    ctx: Services, user: Annotated[Principal, Allow(Permission.ROSTERS_READ)], grid_id: GridId
) -> RosterRead:
    """A grid's duty roster and who is on duty now."""
    return RosterRead.of(await rosters.get_roster(ctx.db, grid_id=grid_id, now=ctx.alerts.clock(), scope=user.scope))


@router.put("/grids/{grid_id}/roster", response_model=RosterRead)
async def put_roster(
    ctx: Services, user: Annotated[Principal, Allow(Permission.ROSTERS_WRITE)], grid_id: GridId, body: RosterWrite
) -> RosterRead:
    """Replace a grid's duty roster (weekly shifts in Asia/Shanghai time)."""
    shifts = [Shift(s.worker_id, grid_id, day, s.start, s.end, Duty(s.duty)) for s in body.shifts for day in s.weekdays]
    await rosters.set_roster(ctx.db, grid_id=grid_id, shifts=shifts, actor=user.id, scope=user.scope)
    return RosterRead.of(await rosters.get_roster(ctx.db, grid_id=grid_id, now=ctx.alerts.clock(), scope=user.scope))
