"""GET /dead-letters: what was refused, why, and the payload as it came."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import Allow, Db, Limit
from api.schemas import DeadLetterRead, Page
from collectors import queries
from whistle.access import Permission, Principal

router = APIRouter()


@router.get("/dead-letters", response_model=Page[DeadLetterRead])
async def get_dead_letters(
    db: Db,
    user: Annotated[Principal, Allow(Permission.DEAD_LETTERS_READ)],
    reason: str | None = None,
    since: datetime | None = None,
    limit: Limit = 100,
    cursor: Annotated[int | None, Query(ge=1)] = None,
) -> Page[DeadLetterRead]:
    items, nxt = await queries.list_dead_letters(db, reason=reason, since=since, limit=limit, cursor=cursor)
    return Page(items=[DeadLetterRead.model_validate(d) for d in items], next=str(nxt) if nxt is not None else None)
