"""GET /screen/config: what the operations-center page needs to know about this deployment."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from api.deps import Allow, Services
from api.schemas import ScreenConfigRead
from whistle.access import Permission, Principal

router = APIRouter()
Screen = Annotated[Principal, Allow(Permission.SCREEN_READ)]


@router.get("/screen/config", response_model=ScreenConfigRead)
async def get_screen_config(ctx: Services, user: Screen) -> ScreenConfigRead:
    """The optional self-hosted basemap (and its coordinate system), the poll interval, the low-battery threshold."""
    s = ctx.screen
    return ScreenConfigRead(
        tiles_url=s.tiles_url, tiles_crs=s.tiles_crs.value, poll_s=s.poll_s, low_battery_pct=s.low_battery_pct
    )
