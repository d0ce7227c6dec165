"""GET /map: the street on one map (一张图), as GeoJSON: grids and buildings with their open alarms."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response

from api.deps import Allow, Services
from api.responses import json_of
from api.schemas import MapRead
from stats import places
from stats.geo import Crs
from whistle.access import Permission, Principal
from whistle.timeutil import to_datetime

router = APIRouter()
Screen = Annotated[Principal, Allow(Permission.SCREEN_READ)]


@router.get("/map", response_model=MapRead)
async def get_map(ctx: Services, user: Screen, crs: Crs = Crs.WGS84) -> Response:
    """Grids (Polygons from the registry) with open alarms by severity over their subtree, open tickets and the
    worker on duty; buildings (Points) with their worst open alarm; the silences in force. `crs=gcj02` converts
    every coordinate for a Chinese basemap."""
    found = await places.street_map(ctx.db, now=to_datetime(ctx.alerts.clock()), crs=crs, grids=user.grids)
    return json_of(MapRead.of(found))
