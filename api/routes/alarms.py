"""GET /alarms: alarms newest first, filtered, paginated by cursor."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from alerts import queries
from api.deps import CurrentUser, Db, Limit
from api.schemas import AlarmRead, Page
from whistle.domain import AlarmKind, AlarmStatus

router = APIRouter()


@router.get("/alarms", response_model=Page[AlarmRead])
async def get_alarms(
    db: Db,
    user: CurrentUser,
    kind: AlarmKind | None = None,
    status_: Annotated[AlarmStatus | None, Query(alias="status")] = None,
    grid_id: str | None = None,
    household_id: str | None = None,
    since: datetime | None = None,
    limit: Limit = 100,
    cursor: str | None = None,
) -> Page[AlarmRead]:
    filters = {"kind": kind, "status": status_, "grid_id": grid_id, "household_id": household_id}
    items, nxt = await queries.list_alarms(db, filters=filters, since=since, limit=limit, cursor=cursor)
    return Page(items=[AlarmRead.of(a) for a in items], next=nxt)
