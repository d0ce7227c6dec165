"""POST /registry: upsert streets, grids, buildings, households, devices and workers; `?mode=replace` also
retires what the file no longer lists (in the sections it has)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from alerts import retirement
from api.deps import Allow, Services
from api.schemas import RegistryCounts
from whistle.access import Permission, Principal
from whistle.registry import ImportMode, apply_import, parse_registry

router = APIRouter()


@router.post("/registry", response_model=RegistryCounts, response_model_exclude_none=True)
async def post_registry(
    ctx: Services,
    user: Annotated[Principal, Allow(Permission.REGISTRY_WRITE)],
    body: Annotated[dict[str, Any], Body()],
    mode: ImportMode = "upsert",
) -> RegistryCounts:
    done = await apply_import(
        ctx.db,
        parse_registry(body),
        actor=user.id,
        mode=mode,
        chunk_rows=ctx.access.registry_chunk_rows,
        bus=ctx.bus,
    )
    if mode == "replace":
        await retirement.follow_up_retirements(ctx.alerts, done.retired, actor=user.id)
    await ctx.registry_changed()
    return RegistryCounts(**done.counts, retired=done.retired if mode == "replace" else None)
