"""Silences and maintenance windows: alarms inside one are recorded, not dispatched."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, status

from alerts import silences
from api.deps import CurrentUser, Db
from api.schemas import SilenceCreate, SilenceRead

router = APIRouter()


@router.post("/silences", response_model=SilenceRead, status_code=status.HTTP_201_CREATED)
async def post_silence(db: Db, user: CurrentUser, body: SilenceCreate) -> SilenceRead:
    """A silence or maintenance window for a device, building or grid."""
    silence = await silences.create_silence(
        db,
        scope_type=body.scope_type,
        scope_id=body.scope_id,
        kinds=[k.value for k in body.kinds] if body.kinds else None,
        starts_at=body.start,
        ends_at=body.end,
        reason=body.reason,
        actor=user,
    )
    return SilenceRead.model_validate(silence)


@router.get("/silences", response_model=list[SilenceRead])
async def get_silences(db: Db, user: CurrentUser, active: bool = True) -> list[SilenceRead]:
    """Silences not yet over (or all of them with active=false), newest first."""
    found = await silences.list_silences(db, active_at=datetime.now(UTC) if active else None)
    return [SilenceRead.model_validate(s) for s in found]


@router.delete("/silences/{silence_id}", status_code=status.HTTP_204_NO_CONTENT)
async def end_silence(db: Db, user: CurrentUser, silence_id: Annotated[int, Path(ge=1)]) -> None:
    """End a silence now; it stays on record."""
    await silences.end_silence(db, silence_id, datetime.now(UTC))
