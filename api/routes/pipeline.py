"""GET /pipeline: how far behind each stage is (records on the bus not yet committed by each consumer group)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from api.deps import Allow, Services
from api.schemas import GroupLagRead, PipelineRead
from whistle.access import Permission, Principal
from whistle.errors import ServiceError
from whistle.pipeline import pipeline_state

router = APIRouter()


@router.get("/pipeline", response_model=PipelineRead)
async def get_pipeline(ctx: Services, user: Annotated[Principal, Allow(Permission.PIPELINE_READ)]) -> PipelineRead:
    if ctx.bus is None:
        raise ServiceError("this process has no bus to report on", invalid=True)
    state = await pipeline_state(ctx.bus, ctx.db)
    return PipelineRead(
        groups=[GroupLagRead.model_validate(g) for g in state.groups], lag=state.lag, dead_letters=state.dead_letters
    )
