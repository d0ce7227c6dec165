"""Households: one read (contacts masked), declared absences (a family or the grid worker reports that a lone
elder is away), a tag taken off, and erasure of a household's personal data on request."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from alerts import privacy
from api.deps import Allow, Db, HouseholdId, Services
from api.schemas import AbsenceCreate, AbsenceRead, ContactRead, ErasureRead, HouseholdRead, Reason
from whistle import absences, registry
from whistle.access import Permission, Principal
from whistle.errors import NotFound
from whistle.privacy import mask_name, mask_phone

router = APIRouter()


@router.get("/households/{household_id}", response_model=HouseholdRead)
async def get_household(
    db: Db, user: Annotated[Principal, Allow(Permission.HOUSEHOLDS_READ)], household_id: HouseholdId
) -> HouseholdRead:
    """A household in the caller's scope; its contacts masked (in full only on a ticket: /tickets/{id}/contacts)."""
    h = await registry.get_household(db, household_id, scope=user.scope)
    if h is None:
        raise NotFound(f"household {household_id} not found")
    return HouseholdRead(
        id=h.id,
        building_id=h.building_id,
        grid_id=h.grid_id,
        unit=h.unit,
        registered_occupants=h.registered_occupants,
        tags=h.tags,
        contacts=[
            ContactRead(name=mask_name(c.get("name")), phone=mask_phone(c.get("phone")), relation=c.get("relation"))
            for c in h.contacts
        ],
        retired=h.retired,
        erased=h.erased,
    )


@router.post("/households/{household_id}/absences", response_model=AbsenceRead, status_code=status.HTTP_201_CREATED)
async def post_absence(
    ctx: Services,
    user: Annotated[Principal, Allow(Permission.ABSENCES)],
    household_id: HouseholdId,
    body: AbsenceCreate,
) -> AbsenceRead:
    """Declare that a household is away: no inactivity alert inside the span."""
    absence = await absences.add_absence(
        ctx.db,
        household_id,
        start=body.start,
        end=body.end,
        note=body.note,
        actor=user.id,
        scope=user.scope,
        bus=ctx.bus,
    )
    return AbsenceRead.model_validate(absence)


@router.get("/households/{household_id}/absences", response_model=list[AbsenceRead])
async def get_absences(
    db: Db, user: Annotated[Principal, Allow(Permission.ABSENCES)], household_id: HouseholdId
) -> list[AbsenceRead]:
    return [AbsenceRead.model_validate(a) for a in await absences.list_absences(db, household_id, scope=user.scope)]


@router.delete("/households/{household_id}/tags/{tag}", response_model=list[str])
async def delete_tag(
    ctx: Services,
    user: Annotated[Principal, Allow(Permission.REGISTRY_WRITE)],
    household_id: HouseholdId,
    tag: Annotated[str, Path(pattern=r"^[a-z_]{1,32}$")],
) -> list[str]:
    """Take a tag off a household (e.g. `lone_elder` when the elder moved in with family); returns the tags left."""
    left = await registry.remove_tag(ctx.db, household_id, tag, actor=user.id, bus=ctx.bus)
    await ctx.registry_changed()
    return left


@router.post("/households/{household_id}/erasure", response_model=ErasureRead)
async def erase_personal_data(
    ctx: Services,
    user: Annotated[Principal, Allow(Permission.HOUSEHOLDS_ERASE)],
    household_id: HouseholdId,
    body: Reason,
) -> ErasureRead:
    """Erase a household's personal data on request (its contacts, and them in notification rows); its tickets
    and their history stay, naming the household by id only."""
    done = await privacy.erase_household(ctx.db, household_id, actor=user.id, reason=body.reason)
    await ctx.registry_changed()
    return ErasureRead(
        household_id=done.household_id,
        contacts_erased=done.contacts_erased,
        notifications_scrubbed=done.notifications_scrubbed,
    )
