"""GET /buildings/{id}: a building's devices with their state, its open alarms and its tickets (the map's click)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import Allow, BuildingId, Services
from api.responses import json_of
from api.schemas import BuildingRead
from stats import places
from whistle.access import Permission, Principal
from whistle.errors import NotFound
from whistle.timeutil import to_datetime

router = APIRouter()
Screen = Annotated[Principal, Allow(Permission.SCREEN_READ)]


@router.get("/buildings/{building_id}", response_model=BuildingRead)
async def get_building(
    ctx: Services, user: Screen, building_id: BuildingId, recent: Annotated[int, Query(ge=0, le=200)] = 20
) -> Response:
    """Every device of the building (and of its households) with its last state, its open alarms, its open
    tickets and the `recent` latest finished ones, and the silences covering it."""
    found = await places.building_detail(
        ctx.db, building_id, now=to_datetime(ctx.alerts.clock()), recent=recent, grids=user.grids
    )
    if found is None:
        raise NotFound(f"building {building_id} not found")
    return json_of(BuildingRead.of(found))
