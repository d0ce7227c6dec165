"""Routes: parse, authorize, call a service or repository function. Combined into one router here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Query, status

from alerts import repository as alarms_repo
from alerts.service import TicketError
from api.deps import Ctx, CurrentUser
from api.schemas import (
    AbsenceCreate,
    AbsenceRead,
    AlarmRead,
    DeadLetterRead,
    DeviceRead,
    Health,
    Page,
    RegistryCounts,
    TicketNote,
    TicketRead,
    TicketResolve,
    UnregisteredDeviceRead,
    UsageRead,
)
from collectors import queries as collector_queries
from rules import households as households_repo
from whistle import __version__
from whistle.domain import AlarmKind, AlarmStatus, TicketStatus
from whistle.registry import RegistryError, import_registry, parse_registry

router = APIRouter(prefix="/api/v1")

Limit = Annotated[int, Query(ge=1, le=1000)]
TicketId = Annotated[str, Path(pattern=r"^[0-9a-fA-F-]{36}$")]
DeviceId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]
HouseholdId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]


@router.get("/health", response_model=Health)
async def health(ctx: Ctx) -> Health:
    try:
        async with ctx.db.connection() as conn:
            await conn.execute("SELECT 1")
        db_state = "ok"
    except Exception as exc:  # health reports, never raises
        db_state = f"error: {type(exc).__name__}"
    return Health(
        status="ok" if db_state == "ok" else "degraded",
        version=__version__,
        database=db_state,
        roles=ctx.roles,
        details=ctx.health_details(),
    )


@router.post("/registry", response_model=RegistryCounts)
async def post_registry(ctx: Ctx, user: CurrentUser, body: Annotated[dict[str, Any], Body()]) -> RegistryCounts:
    try:
        reg = parse_registry(body)
        counts = await import_registry(ctx.db, reg)
    except RegistryError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    if ctx.directory is not None:
        await ctx.directory.load()
    return RegistryCounts(**counts)


def _bad_cursor(exc: ValueError) -> HTTPException:
    return HTTPException(status.HTTP_400_BAD_REQUEST, str(exc))


@router.get("/alarms", response_model=Page[AlarmRead])
async def get_alarms(
    ctx: Ctx,
    user: CurrentUser,
    kind: AlarmKind | None = None,
    status_: Annotated[AlarmStatus | None, Query(alias="status")] = None,
    grid_id: str | None = None,
    household_id: str | None = None,
    since: datetime | None = None,
    limit: Limit = 100,
    cursor: str | None = None,
) -> dict[str, Any]:
    filters = {"kind": kind, "status": status_, "grid_id": grid_id, "household_id": household_id}
    try:
        async with ctx.db.connection() as conn:
            items, nxt = await alarms_repo.list_alarms(conn, filters=filters, since=since, limit=limit, cursor=cursor)
    except ValueError as exc:
        raise _bad_cursor(exc) from exc
    return {"items": items, "next": nxt}


@router.get("/tickets", response_model=Page[TicketRead])
async def get_tickets(
    ctx: Ctx,
    user: CurrentUser,
    status_: Annotated[TicketStatus | None, Query(alias="status")] = None,
    grid_id: str | None = None,
    assignee_id: str | None = None,
    kind: AlarmKind | None = None,
    limit: Limit = 100,
    cursor: str | None = None,
) -> dict[str, Any]:
    filters = {"status": status_, "grid_id": grid_id, "assignee_id": assignee_id, "kind": kind}
    try:
        async with ctx.db.connection() as conn:
            items, nxt = await alarms_repo.list_tickets(conn, filters=filters, limit=limit, cursor=cursor)
    except ValueError as exc:
        raise _bad_cursor(exc) from exc
    return {"items": items, "next": nxt}


async def _one_ticket(ctx: Ctx, ticket_id: str) -> dict[str, Any]:
    async with ctx.db.connection() as conn:
        items, _ = await alarms_repo.list_tickets(conn, filters={}, limit=1, cursor=None, ticket_id=ticket_id)
    if not items:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"ticket {ticket_id} not found")
    return items[0]


@router.get("/tickets/{ticket_id}", response_model=TicketRead)
async def get_ticket(ctx: Ctx, user: CurrentUser, ticket_id: TicketId) -> dict[str, Any]:
    return await _one_ticket(ctx, ticket_id)


async def _transition(ctx: Ctx, user: str, ticket_id: str, action: str, body: TicketNote) -> dict[str, Any]:
    outcome = body.outcome if isinstance(body, TicketResolve) else None
    try:
        await ctx.alerts.transition(ticket_id, action, actor=user, outcome=outcome, note=body.note)
    except TicketError as exc:
        code = status.HTTP_404_NOT_FOUND if exc.not_found else status.HTTP_409_CONFLICT
        raise HTTPException(code, str(exc)) from exc
    return await _one_ticket(ctx, ticket_id)


@router.post("/tickets/{ticket_id}/ack", response_model=TicketRead)
async def ack_ticket(
    ctx: Ctx, user: CurrentUser, ticket_id: TicketId, body: TicketNote | None = None
) -> dict[str, Any]:
    return await _transition(ctx, user, ticket_id, "ack", body or TicketNote())


@router.post("/tickets/{ticket_id}/arrive", response_model=TicketRead)
async def arrive_ticket(
    ctx: Ctx, user: CurrentUser, ticket_id: TicketId, body: TicketNote | None = None
) -> dict[str, Any]:
    return await _transition(ctx, user, ticket_id, "arrive", body or TicketNote())


@router.post("/tickets/{ticket_id}/resolve", response_model=TicketRead)
async def resolve_ticket(ctx: Ctx, user: CurrentUser, ticket_id: TicketId, body: TicketResolve) -> dict[str, Any]:
    return await _transition(ctx, user, ticket_id, "resolve", body)


@router.get("/dead-letters", response_model=Page[DeadLetterRead])
async def get_dead_letters(
    ctx: Ctx,
    user: CurrentUser,
    reason: str | None = None,
    since: datetime | None = None,
    limit: Limit = 100,
    cursor: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    async with ctx.db.connection() as conn:
        items, nxt = await collector_queries.list_dead_letters(
            conn, reason=reason, since=since, limit=limit, cursor=cursor
        )
    return {"items": items, "next": str(nxt) if nxt is not None else None}


@router.get("/devices/unregistered", response_model=list[UnregisteredDeviceRead])
async def get_unregistered(ctx: Ctx, user: CurrentUser, limit: Limit = 100) -> list[dict[str, Any]]:
    """Devices that keep publishing without being registered, so an operator can register them."""
    async with ctx.db.connection() as conn:
        return await collector_queries.list_unregistered(conn, limit=limit)


@router.get("/devices/{device_id}/usage", response_model=list[UsageRead])
async def get_usage(
    ctx: Ctx,
    user: CurrentUser,
    device_id: DeviceId,
    since: datetime,
    until: datetime | None = None,
    max_gap_s: Annotated[float, Query(gt=0)] = 7200.0,
) -> list[dict[str, Any]]:
    """A water or power meter's consumption per interval: resets never count as negative use."""
    end = until or datetime.now(UTC)
    if since.tzinfo is None or end.tzinfo is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "since and until need a UTC offset")
    async with ctx.db.connection() as conn:
        return await collector_queries.device_usage(conn, device_id, since=since, until=end, max_gap_s=max_gap_s)


@router.get("/devices/{device_id}", response_model=DeviceRead)
async def get_device(ctx: Ctx, user: CurrentUser, device_id: DeviceId) -> dict[str, Any]:
    async with ctx.db.connection() as conn:
        row = await collector_queries.get_device(conn, device_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"device {device_id} not registered")
    return row


@router.post("/households/{household_id}/absences", response_model=AbsenceRead, status_code=status.HTTP_201_CREATED)
async def post_absence(ctx: Ctx, user: CurrentUser, household_id: HouseholdId, body: AbsenceCreate) -> dict[str, Any]:
    """Declare that a household is away (a family or the grid worker): no inactivity alert inside the span."""
    try:
        async with ctx.db.connection() as conn:
            return await households_repo.add_absence(
                conn, household_id, start=body.start, end=body.end, note=body.note, actor=user
            )
    except households_repo.AbsenceError as exc:
        code = status.HTTP_404_NOT_FOUND if exc.not_found else status.HTTP_422_UNPROCESSABLE_CONTENT
        raise HTTPException(code, str(exc)) from exc


@router.get("/households/{household_id}/absences", response_model=list[AbsenceRead])
async def get_absences(ctx: Ctx, user: CurrentUser, household_id: HouseholdId) -> list[dict[str, Any]]:
    async with ctx.db.connection() as conn:
        return await households_repo.list_absences(conn, household_id)
