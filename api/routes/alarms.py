"""GET /alarms: alarms newest first, filtered, paginated by cursor, within the caller's scope."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from alerts import queries
from api.deps import Allow, Db, Limit
from api.schemas import AlarmRead, Page
from whistle.access import Permission, Principal
from whistle.domain import AlarmKind, AlarmStatus

router = APIRouter()


@router.get("/alarms", response_model=Page[AlarmRead])
async def get_alarms(
    db: Db,
    user: Annotated[Principal, Allow(Permission.ALARMS_READ)],
    kind: AlarmKind | None = None,
    status_: Annotated[AlarmStatus | None, Query(alias="status")] = None,
    grid_id: str | None = None,
    household_id: str | None = None,
    since: datetime | None = None,
    limit: Limit = 100,
    cursor: str | None = None,
) -> Page[AlarmRead]:
    filters = {"kind": kind, "status": status_, "grid_id": grid_id, "household_id": household_id}
    items, nxt = await queries.list_alarms(
        db, filters=filters, since=since, limit=limit, cursor=cursor, scope=user.scope
    )
    return Page(items=[AlarmRead.of(a, masked=user.masked) for a in items], next=nxt)
