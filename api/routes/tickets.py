"""Tickets: list, read, and the actions along the closed loop (ack, arrive, resolve, close, reassign, transfer,
comment), within the caller's scope (outside it a ticket is not found). Each action answers with the ticket as
it is afterwards. A ticket's household contacts are read through their own endpoint, and every read is logged."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from alerts import privacy, queries
from alerts.arrival import Position
from api.deps import Allow, Db, Limit, Services, TicketId
from api.exports import Format, audit_table, disposition, render
from api.schemas import (
    ArrivalRead,
    ContactRead,
    Page,
    TicketArrive,
    TicketArrived,
    TicketComment,
    TicketContactsRead,
    TicketNote,
    TicketRead,
    TicketReassign,
    TicketResolve,
    TicketTransfer,
)
from stats import places
from whistle.access import Permission, Principal
from whistle.domain import AlarmKind, TicketStatus
from whistle.errors import NotFound
from whistle.store.db import Database

router = APIRouter()

Reader = Annotated[Principal, Allow(Permission.TICKETS_READ)]
Actor = Annotated[Principal, Allow(Permission.TICKETS_ACT)]
Dispatcher = Annotated[Principal, Allow(Permission.TICKETS_DISPATCH)]


@router.get("/tickets", response_model=Page[TicketRead])
async def get_tickets(
    db: Db,
    user: Reader,
    status_: Annotated[TicketStatus | None, Query(alias="status")] = None,
    grid_id: str | None = None,
    assignee_id: str | None = None,
    kind: AlarmKind | None = None,
    limit: Limit = 100,
    cursor: str | None = None,
) -> Page[TicketRead]:
    filters = {"status": status_, "grid_id": grid_id, "assignee_id": assignee_id, "kind": kind}
    items, nxt = await queries.list_tickets(db, filters=filters, limit=limit, cursor=cursor, scope=user.scope)
    return Page(items=[TicketRead.of(v, masked=user.masked) for v in items], next=nxt)


async def _read(db: Database, ticket_id: str, user: Principal) -> TicketRead:
    view = await queries.get_ticket(db, ticket_id, scope=user.scope)
    if view is None:
        raise NotFound(f"ticket {ticket_id} not found")
    return TicketRead.of(view, masked=user.masked)


@router.get("/tickets/{ticket_id}", response_model=TicketRead)
async def get_ticket(db: Db, user: Reader, ticket_id: TicketId) -> TicketRead:
    return await _read(db, ticket_id, user)


@router.get("/tickets/{ticket_id}/contacts", response_model=TicketContactsRead)
async def get_ticket_contacts(
    db: Db, user: Annotated[Principal, Allow(Permission.TICKETS_CONTACTS)], ticket_id: TicketId
) -> TicketContactsRead:
    """The contacts of the ticket's household, in full: for the worker it is assigned to (and the operations
    center); every read is logged (GET /api/v1/audit/personal-data)."""
    found = await privacy.read_contacts(db, ticket_id, caller=user)
    return TicketContactsRead(
        ticket_id=found.ticket_id,
        household_id=found.household_id,
        unit=found.unit,
        contacts=[ContactRead.model_validate(c) for c in found.contacts],
    )


@router.post("/tickets/{ticket_id}/ack", response_model=TicketRead)
async def ack_ticket(ctx: Services, user: Actor, ticket_id: TicketId, body: TicketNote | None = None) -> TicketRead:
    await ctx.alerts.transition(
        ticket_id,
        "ack",
        actor=user.id,
        note=body.note if body else None,
        scope=user.scope,
        extra=body.extra() if body else None,
    )
    return await _read(ctx.db, ticket_id, user)


@router.post("/tickets/{ticket_id}/arrive", response_model=TicketArrived)
async def arrive_ticket(
    ctx: Services, user: Actor, ticket_id: TicketId, body: TicketArrive | None = None
) -> TicketArrived:
    """On site. With `lat`/`lon` (and `accuracy_m`) from the browser's geolocation the position is checked against
    the building's location (within WHISTLE_ARRIVE_RADIUS_M, 200 m) and recorded in the history either way;
    without them the arrival is recorded as not located. `arrival` says how it compared."""
    position = (
        Position(body.lat, body.lon, body.accuracy_m)
        if body and body.lat is not None and body.lon is not None
        else None
    )
    check = await ctx.alerts.transition(
        ticket_id,
        "arrive",
        actor=user.id,
        note=body.note if body else None,
        scope=user.scope,
        position=position,
        radius_m=ctx.worker.arrive_radius_m,
        extra=body.extra() if body else None,
    )
    read = await _read(ctx.db, ticket_id, user)
    arrival = None
    if check is not None:
        arrival = ArrivalRead(
            distance_m=round(check.distance_m, 1) if check.distance_m is not None else None,
            radius_m=check.radius_m,
            within_radius=check.within,
            located=check.position is not None,
        )
    return TicketArrived(**read.model_dump(), arrival=arrival)


@router.post("/tickets/{ticket_id}/resolve", response_model=TicketRead)
async def resolve_ticket(ctx: Services, user: Actor, ticket_id: TicketId, body: TicketResolve) -> TicketRead:
    await ctx.alerts.transition(
        ticket_id,
        "resolve",
        actor=user.id,
        outcome=body.outcome,
        note=body.note,
        scope=user.scope,
        extra=body.extra(),
    )
    return await _read(ctx.db, ticket_id, user)


@router.post("/tickets/{ticket_id}/close", response_model=TicketRead)
async def close_ticket(
    ctx: Services, user: Dispatcher, ticket_id: TicketId, body: TicketNote | None = None
) -> TicketRead:
    await ctx.alerts.transition(ticket_id, "close", actor=user.id, note=body.note if body else None, scope=user.scope)
    return await _read(ctx.db, ticket_id, user)


@router.post("/tickets/{ticket_id}/reassign", response_model=TicketRead)
async def reassign_ticket(ctx: Services, user: Dispatcher, ticket_id: TicketId, body: TicketReassign) -> TicketRead:
    """Give the ticket to another worker: back to dispatched, escalation restarts for them."""
    await ctx.alerts.reassign(ticket_id, actor=user.id, assignee_id=body.assignee_id, note=body.note, scope=user.scope)
    return await _read(ctx.db, ticket_id, user)


@router.post("/tickets/{ticket_id}/transfer", response_model=TicketRead)
async def transfer_ticket(ctx: Services, user: Dispatcher, ticket_id: TicketId, body: TicketTransfer) -> TicketRead:
    """Move the ticket to another grid (within the caller's scope), routed to the worker on duty there."""
    await ctx.alerts.reassign(
        ticket_id, actor=user.id, grid_id=body.grid_id, assignee_id=body.assignee_id, note=body.note, scope=user.scope
    )
    view = await queries.get_ticket(ctx.db, ticket_id)  # it may have left the caller's scope
    assert view is not None
    return TicketRead.of(view, masked=user.masked)


@router.post("/tickets/{ticket_id}/comments", response_model=TicketRead, status_code=status.HTTP_201_CREATED)
async def comment_ticket(ctx: Services, user: Actor, ticket_id: TicketId, body: TicketComment) -> TicketRead:
    await ctx.alerts.comment(ticket_id, actor=user.id, note=body.note, scope=user.scope, extra=body.extra())
    return await _read(ctx.db, ticket_id, user)


@router.get("/tickets/{ticket_id}/history/export", response_class=Response)
async def export_ticket_history(
    db: Db,
    user: Reader,
    ticket_id: TicketId,
    fmt: Annotated[Format, Query(alias="format", description="csv or xlsx")] = Format.XLSX,
) -> Response:
    """The ticket's audit trail (every step, who, when, why) as CSV or Excel (.xlsx), within the caller's scope."""
    view = await queries.get_ticket(db, ticket_id, scope=user.scope)
    if view is None:
        raise NotFound(f"ticket {ticket_id} not found")
    place = await places.place_of(db, building_id=view.ticket.building_id, household_id=view.ticket.household_id)
    body = render(audit_table(view, place=place, masked=user.masked), fmt)
    name = f"工单处置记录-{ticket_id[:8]}.{fmt.value}"
    return Response(body, media_type=fmt.media_type, headers={"Content-Disposition": disposition(name)})
