"""Asking the running service for a household job, from any process: a request row the rules role carries out.

The API (`POST /api/v1/jobs/household-days`) and the CLI (`whistle households run`) write the request and
wait for its answer; the rules role's `HouseholdJob` takes pending requests (FOR UPDATE SKIP LOCKED) and
records the result. It works whatever the bus, and across processes and machines sharing the database.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from whistle import audit
from whistle.errors import ServiceError
from whistle.store.db import Database


@dataclass(frozen=True, slots=True)
class JobRequest:
    id: int
    first_day: date | None
    last_day: date | None
    requested_by: str
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    status: str
    result: dict[str, Any]


_COLUMNS = "id, first_day, last_day, requested_by, requested_at, started_at, finished_at, status, result"


async def request_household_days(db: Database, *, first: date | None, last: date | None, actor: str) -> int:
    """Ask for the household job over [first, last] (open ends: every stored day up to yesterday)."""
    if first is not None and last is not None and last < first:
        raise ServiceError("the last day comes before the first", invalid=True)
    async with db.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "INSERT INTO household_job_requests (first_day, last_day, requested_by) VALUES (%s, %s, %s) RETURNING id",
            (first, last, actor),
        )
        row = await cur.fetchone()
        assert row is not None
        await audit.record(
            conn,
            actor=actor,
            action="jobs.household_days",
            target_type="job",
            target_id=str(row[0]),
            data={"from": first.isoformat() if first else None, "to": last.isoformat() if last else None},
        )
    return int(row[0])


async def get_request(db: Database, request_id: int) -> JobRequest | None:
    async with db.connection() as conn:
        cur = await conn.execute(f"SELECT {_COLUMNS} FROM household_job_requests WHERE id = %s", (request_id,))
        row = await cur.fetchone()
    return JobRequest(*row) if row else None


async def recent_requests(db: Database, *, limit: int = 20) -> list[JobRequest]:
    async with db.connection() as conn:
        cur = await conn.execute(f"SELECT {_COLUMNS} FROM household_job_requests ORDER BY id DESC LIMIT %s", (limit,))
        return [JobRequest(*r) for r in await cur.fetchall()]


async def wait_for_request(db: Database, request_id: int, *, timeout_s: float, pickup_s: float = 30.0) -> JobRequest:
    """Until the request is done or failed; ServiceError when nobody took it up within `pickup_s` (no rules role
    runs) or it did not finish within `timeout_s` (it goes on; ask again with GET)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        req = await get_request(db, request_id)
        if req is None:
            raise ServiceError(f"job request {request_id} not found", not_found=True)
        if req.status in ("done", "failed"):
            return req
        waited = loop.time() - start
        if req.started_at is None and waited > pickup_s:
            raise ServiceError(
                f"job request {request_id} was not taken up within {pickup_s:.0f} s: is a rules role running?"
            )
        if waited > timeout_s:
            raise ServiceError(f"job request {request_id} is still {req.status} after {timeout_s:.0f} s")
        await asyncio.sleep(0.5)
