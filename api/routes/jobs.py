"""Jobs an operator may ask the running service for: the household job over chosen days."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import Allow, Db
from api.schemas import JobCreate, JobRead
from whistle import jobs
from whistle.access import Permission, Principal

router = APIRouter()
Runner = Annotated[Principal, Allow(Permission.JOBS_RUN)]


@router.post("/jobs/household-days", response_model=JobRead)
async def run_household_days(
    db: Db,
    user: Runner,
    body: JobCreate | None = None,
    wait_s: Annotated[float, Query(ge=0, le=1800)] = 600.0,
) -> JobRead:
    """Feature and judge the household days from `from` to `to` (after an import or a backfill); answers when
    the rules role has done it (or, after `wait_s`, 409 with the request still running: read it back with GET)."""
    ask = body or JobCreate()
    rid = await jobs.request_household_days(db, first=ask.first, last=ask.last, actor=user.id)
    return JobRead.model_validate(await jobs.wait_for_request(db, rid, timeout_s=wait_s))


@router.get("/jobs/household-days", response_model=list[JobRead])
async def recent_household_days(db: Db, user: Runner) -> list[JobRead]:
    """The latest requests, newest first, with what each did."""
    return [JobRead.model_validate(r) for r in await jobs.recent_requests(db)]
