"""Registry workers: listed within the caller's scope (by name; phones masked unless the role may see them),
and offboarded (no more sign-in, off the rosters, their open tickets routed to someone else)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from alerts import retirement
from api.deps import Allow, Db, Services, WorkerId
from api.schemas import Reason, WorkerOffboarded, WorkerRead
from whistle import registry
from whistle.access import Permission, Principal
from whistle.privacy import mask_phone

router = APIRouter()


@router.get("/workers", response_model=list[WorkerRead])
async def get_workers(db: Db, user: Annotated[Principal, Allow(Permission.WORKERS_READ)]) -> list[WorkerRead]:
    phones = user.can(Permission.WORKERS_PHONES)
    return [
        WorkerRead(
            id=w.id,
            name=w.name,
            role=w.role.value,
            grid_id=w.grid_id,
            phone=(w.phone if phones else mask_phone(w.phone)) if w.phone else None,
            active=w.active,
        )
        for w in await registry.list_workers(db, scope=user.scope)
    ]


@router.post("/workers/{worker_id}/offboard", response_model=WorkerOffboarded)
async def offboard(
    ctx: Services, user: Annotated[Principal, Allow(Permission.WORKERS_OFFBOARD)], worker_id: WorkerId, body: Reason
) -> WorkerOffboarded:
    done = await retirement.offboard_worker(ctx.alerts, worker_id, actor=user.id, reason=body.reason)
    await ctx.registry_changed()
    return WorkerOffboarded(
        worker_id=done.worker_id,
        tokens_revoked=done.tokens_revoked,
        reassigned=done.reassigned,
        unassigned=done.unassigned,
    )
