"""Declared absences of a household (a family or the grid worker reports that a lone elder is away)."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import CurrentUser, Db, HouseholdId, Services
from api.schemas import AbsenceCreate, AbsenceRead
from whistle import absences

router = APIRouter()


@router.post("/households/{household_id}/absences", response_model=AbsenceRead, status_code=status.HTTP_201_CREATED)
async def post_absence(ctx: Services, user: CurrentUser, household_id: HouseholdId, body: AbsenceCreate) -> AbsenceRead:
    """Declare that a household is away: no inactivity alert inside the span."""
    absence = await absences.add_absence(
        ctx.db, household_id, start=body.start, end=body.end, note=body.note, actor=user, bus=ctx.bus
    )
    return AbsenceRead.model_validate(absence)


@router.get("/households/{household_id}/absences", response_model=list[AbsenceRead])
async def get_absences(db: Db, user: CurrentUser, household_id: HouseholdId) -> list[AbsenceRead]:
    return [AbsenceRead.model_validate(a) for a in await absences.list_absences(db, household_id)]
