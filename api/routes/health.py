"""GET /health: whether this process and its database answer (no auth)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Services
from api.schemas import Health
from whistle import __version__

router = APIRouter()


@router.get("/health", response_model=Health)
async def health(ctx: Services) -> Health:
    database = await ctx.db.ping()
    return Health(
        status="ok" if database == "ok" else "degraded",
        version=__version__,
        database=database,
        roles=ctx.roles,
        details=ctx.health_details(),
    )
