"""Silences and maintenance windows: alarms inside one are recorded, not dispatched. A silence that would hold
back a life-safety kind (smoke.fire, elevator.trapped, or every kind) needs `life_safety: true`, a reason and an
end within WHISTLE_LIFE_SAFETY_SILENCE_MAX_HOURS, and a role that may silence life safety."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, status

from alerts import silences
from api.deps import Allow, Db, Services
from api.schemas import SilenceCreate, SilenceRead
from whistle.access import Permission, Principal
from whistle.errors import Forbidden

router = APIRouter()

Writer = Annotated[Principal, Allow(Permission.SILENCES_WRITE)]


@router.post("/silences", response_model=SilenceRead, status_code=status.HTTP_201_CREATED)
async def post_silence(ctx: Services, user: Writer, body: SilenceCreate) -> SilenceRead:
    """A silence or maintenance window for a device, building or grid (audited)."""
    kinds = [k.value for k in body.kinds] if body.kinds else None
    if silences.covers_life_safety(kinds) and not user.can(Permission.SILENCES_LIFE_SAFETY):
        raise Forbidden(f"the role {user.role.value} may not silence smoke.fire or elevator.trapped; name other kinds")
    silence = await silences.create_silence(
        ctx.db,
        scope_type=body.scope_type,
        scope_id=body.scope_id,
        kinds=kinds,
        starts_at=body.start,
        ends_at=body.end,
        reason=body.reason,
        actor=user.id,
        life_safety=body.life_safety,
        max_life_safety_s=ctx.access.life_safety_silence_max_s,
        scope=user.scope,
    )
    return SilenceRead.model_validate(silence)


@router.get("/silences", response_model=list[SilenceRead])
async def get_silences(
    db: Db, user: Annotated[Principal, Allow(Permission.SILENCES_READ)], active: bool = True
) -> list[SilenceRead]:
    """Silences not yet over (or all of them with active=false), newest first."""
    found = await silences.list_silences(db, active_at=datetime.now(UTC) if active else None, scope=user.scope)
    return [SilenceRead.model_validate(s) for s in found]


@router.delete("/silences/{silence_id}", status_code=status.HTTP_204_NO_CONTENT)
async def end_silence(db: Db, user: Writer, silence_id: Annotated[int, Path(ge=1)]) -> None:
    """End a silence now; it stays on record (audited)."""
    await silences.end_silence(db, silence_id, datetime.now(UTC), actor=user.id, scope=user.scope)
