"""Routes: parse, authorize, call a service or repository function. Combined into one router here."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Query, WebSocket, WebSocketDisconnect, status

from alerts import repository as alarms_repo
from alerts.routing import Duty, Shift, on_duty
from alerts.service import TicketError
from api.deps import ApiContext, Ctx, CurrentUser
from api.schemas import (
    AbsenceCreate,
    AbsenceRead,
    AlarmRead,
    DeadLetterRead,
    DeviceRead,
    Health,
    Page,
    RegistryCounts,
    RosterRead,
    RosterWrite,
    SilenceCreate,
    SilenceRead,
    TicketComment,
    TicketNote,
    TicketRead,
    TicketReassign,
    TicketResolve,
    TicketTransfer,
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
        raise _ticket_error(exc) from exc
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


def _ticket_error(exc: TicketError) -> HTTPException:
    if exc.not_found:
        return HTTPException(status.HTTP_404_NOT_FOUND, str(exc))
    if exc.invalid:
        return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc))
    return HTTPException(status.HTTP_409_CONFLICT, str(exc))


@router.post("/tickets/{ticket_id}/close", response_model=TicketRead)
async def close_ticket(
    ctx: Ctx, user: CurrentUser, ticket_id: TicketId, body: TicketNote | None = None
) -> dict[str, Any]:
    return await _transition(ctx, user, ticket_id, "close", body or TicketNote())


@router.post("/tickets/{ticket_id}/reassign", response_model=TicketRead)
async def reassign_ticket(ctx: Ctx, user: CurrentUser, ticket_id: TicketId, body: TicketReassign) -> dict[str, Any]:
    """Give the ticket to another worker: back to dispatched, escalation restarts for them."""
    try:
        await ctx.alerts.reassign(ticket_id, actor=user, assignee_id=body.assignee_id, note=body.note)
    except TicketError as exc:
        raise _ticket_error(exc) from exc
    return await _one_ticket(ctx, ticket_id)


@router.post("/tickets/{ticket_id}/transfer", response_model=TicketRead)
async def transfer_ticket(ctx: Ctx, user: CurrentUser, ticket_id: TicketId, body: TicketTransfer) -> dict[str, Any]:
    """Move the ticket to another grid, routed to the worker on duty there."""
    try:
        await ctx.alerts.reassign(
            ticket_id, actor=user, grid_id=body.grid_id, assignee_id=body.assignee_id, note=body.note
        )
    except TicketError as exc:
        raise _ticket_error(exc) from exc
    return await _one_ticket(ctx, ticket_id)


@router.post("/tickets/{ticket_id}/comments", response_model=TicketRead, status_code=status.HTTP_201_CREATED)
async def comment_ticket(ctx: Ctx, user: CurrentUser, ticket_id: TicketId, body: TicketComment) -> dict[str, Any]:
    try:
        await ctx.alerts.comment(ticket_id, actor=user, note=body.note)
    except TicketError as exc:
        raise _ticket_error(exc) from exc
    return await _one_ticket(ctx, ticket_id)


GridId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]


async def _roster(ctx: Ctx, grid_id: str) -> dict[str, Any]:
    async with ctx.db.connection() as conn:
        if not await alarms_repo.exists(conn, "grids", grid_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"grid {grid_id} not found")
        shifts = await alarms_repo.roster_of(conn, grid_id)
    now = ctx.alerts.clock()
    return {
        "grid_id": grid_id,
        "shifts": [
            {"worker_id": s.worker_id, "weekday": s.weekday, "start": s.starts, "end": s.ends, "duty": s.duty.value}
            for s in shifts
        ],
        "on_duty": on_duty(shifts, grid_id, now),
        "backup_on_duty": on_duty(shifts, grid_id, now, Duty.BACKUP),
    }


@router.get("/grids/{grid_id}/roster", response_model=RosterRead)
async def get_roster(ctx: Ctx, user: CurrentUser, grid_id: GridId) -> dict[str, Any]:
    """A grid's duty roster and who is on duty now."""
    return await _roster(ctx, grid_id)


@router.put("/grids/{grid_id}/roster", response_model=RosterRead)
async def put_roster(ctx: Ctx, user: CurrentUser, grid_id: GridId, body: RosterWrite) -> dict[str, Any]:
    """Replace a grid's duty roster (weekly shifts in Asia/Shanghai time)."""
    shifts = [Shift(s.worker_id, grid_id, day, s.start, s.end, Duty(s.duty)) for s in body.shifts for day in s.weekdays]
    async with ctx.db.connection() as conn, conn.transaction():
        if not await alarms_repo.exists(conn, "grids", grid_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"grid {grid_id} not found")
        for worker in sorted({s.worker_id for s in shifts}):
            if not await alarms_repo.exists(conn, "workers", worker):
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"worker {worker} not found")
        await alarms_repo.replace_roster(conn, grid_id, shifts, actor=user)
    return await _roster(ctx, grid_id)


_SCOPE_TABLE = {"device": "devices", "building": "buildings", "grid": "grids"}


@router.post("/silences", response_model=SilenceRead, status_code=status.HTTP_201_CREATED)
async def post_silence(ctx: Ctx, user: CurrentUser, body: SilenceCreate) -> dict[str, Any]:
    """A silence or maintenance window for a device, building or grid: alarms are recorded, not dispatched."""
    async with ctx.db.connection() as conn, conn.transaction():
        if not await alarms_repo.exists(conn, _SCOPE_TABLE[body.scope_type], body.scope_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"{body.scope_type} {body.scope_id} not found")
        return await alarms_repo.insert_silence(
            conn,
            scope_type=body.scope_type,
            scope_id=body.scope_id,
            kinds=[k.value for k in body.kinds] if body.kinds else None,
            starts_at=body.start,
            ends_at=body.end,
            reason=body.reason,
            actor=user,
        )


@router.get("/silences", response_model=list[SilenceRead])
async def get_silences(ctx: Ctx, user: CurrentUser, active: bool = True) -> list[dict[str, Any]]:
    """Silences not yet over (or all of them with active=false), newest first."""
    async with ctx.db.connection() as conn:
        return await alarms_repo.list_silences(conn, active_at=datetime.now(UTC) if active else None)


@router.delete("/silences/{silence_id}", status_code=status.HTTP_204_NO_CONTENT)
async def end_silence(ctx: Ctx, user: CurrentUser, silence_id: Annotated[int, Path(ge=1)]) -> None:
    """End a silence now; it stays on record."""
    async with ctx.db.connection() as conn:
        if not await alarms_repo.end_silence(conn, silence_id, datetime.now(UTC)):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"silence {silence_id} not found")


@router.websocket("/live")
async def live(websocket: WebSocket, token: str | None = None, recipient_id: str | None = None) -> None:
    """Alarm and ticket changes as JSON messages; `recipient_id` adds that person's notifications.

    Browsers cannot set headers on a WebSocket, so the token may come as `?token=`."""
    ctx: ApiContext = websocket.app.state.ctx
    header = websocket.headers.get("authorization", "")
    supplied = token or (header[7:] if header.lower().startswith("bearer ") else "")
    if not supplied or not secrets.compare_digest(supplied.encode(), ctx.admin_token.encode()):
        await websocket.close(code=status.WS_1008_POLICY_VIOLATION)
        return
    await websocket.accept()
    async with ctx.alerts.live.subscribe(recipient_id) as sub:
        await websocket.send_json({"type": "hello", "recipient_id": recipient_id})

        async def pump() -> None:
            async for text in sub:
                await websocket.send_text(text)

        async def until_closed() -> None:
            with contextlib.suppress(WebSocketDisconnect):
                while True:
                    await websocket.receive_text()

        tasks = [asyncio.create_task(pump()), asyncio.create_task(until_closed())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


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
