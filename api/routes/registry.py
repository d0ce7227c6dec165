"""POST /registry: upsert streets, grids, buildings, households, devices and workers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from api.deps import CurrentUser, Services
from api.schemas import RegistryCounts
from whistle.registry import import_registry, parse_registry

router = APIRouter()


@router.post("/registry", response_model=RegistryCounts)
async def post_registry(ctx: Services, user: CurrentUser, body: Annotated[dict[str, Any], Body()]) -> RegistryCounts:
    counts = await import_registry(ctx.db, parse_registry(body), bus=ctx.bus)
    await ctx.registry_changed()
    return RegistryCounts(**counts)
