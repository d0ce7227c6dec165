"""Tickets: list, read, and the actions along the closed loop (ack, arrive, resolve, close, reassign, transfer,
comment). Each action answers with the ticket as it is afterwards."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from alerts import queries
from api.deps import CurrentUser, Db, Limit, Services, TicketId
from api.exports import Format, audit_table, disposition, render
from api.schemas import (
    Page,
    TicketComment,
    TicketNote,
    TicketRead,
    TicketReassign,
    TicketResolve,
    TicketTransfer,
)
from stats import places
from whistle.domain import AlarmKind, TicketStatus
from whistle.errors import NotFound
from whistle.store.db import Database

router = APIRouter()


@router.get("/tickets", response_model=Page[TicketRead])
async def get_tickets(
    db: Db,
    user: CurrentUser,
    status_: Annotated[TicketStatus | None, Query(alias="status")] = None,
    grid_id: str | None = None,
    assignee_id: str | None = None,
    kind: AlarmKind | None = None,
    limit: Limit = 100,
    cursor: str | None = None,
) -> Page[TicketRead]:
    filters = {"status": status_, "grid_id": grid_id, "assignee_id": assignee_id, "kind": kind}
    items, nxt = await queries.list_tickets(db, filters=filters, limit=limit, cursor=cursor)
    return Page(items=[TicketRead.of(v) for v in items], next=nxt)


async def _read(db: Database, ticket_id: str) -> TicketRead:
    view = await queries.get_ticket(db, ticket_id)
    if view is None:
        raise NotFound(f"ticket {ticket_id} not found")
    return TicketRead.of(view)


@router.get("/tickets/{ticket_id}", response_model=TicketRead)
async def get_ticket(db: Db, user: CurrentUser, ticket_id: TicketId) -> TicketRead:
    return await _read(db, ticket_id)


@router.post("/tickets/{ticket_id}/ack", response_model=TicketRead)
async def ack_ticket(
    ctx: Services, user: CurrentUser, ticket_id: TicketId, body: TicketNote | None = None
) -> TicketRead:
    await ctx.alerts.transition(ticket_id, "ack", actor=user, note=body.note if body else None)
    return await _read(ctx.db, ticket_id)


@router.post("/tickets/{ticket_id}/arrive", response_model=TicketRead)
async def arrive_ticket(
    ctx: Services, user: CurrentUser, ticket_id: TicketId, body: TicketNote | None = None
) -> TicketRead:
    await ctx.alerts.transition(ticket_id, "arrive", actor=user, note=body.note if body else None)
    return await _read(ctx.db, ticket_id)


@router.post("/tickets/{ticket_id}/resolve", response_model=TicketRead)
async def resolve_ticket(ctx: Services, user: CurrentUser, ticket_id: TicketId, body: TicketResolve) -> TicketRead:
    await ctx.alerts.transition(ticket_id, "resolve", actor=user, outcome=body.outcome, note=body.note)
    return await _read(ctx.db, ticket_id)


@router.post("/tickets/{ticket_id}/close", response_model=TicketRead)
async def close_ticket(
    ctx: Services, user: CurrentUser, ticket_id: TicketId, body: TicketNote | None = None
) -> TicketRead:
    await ctx.alerts.transition(ticket_id, "close", actor=user, note=body.note if body else None)
    return await _read(ctx.db, ticket_id)


@router.post("/tickets/{ticket_id}/reassign", response_model=TicketRead)
async def reassign_ticket(ctx: Services, user: CurrentUser, ticket_id: TicketId, body: TicketReassign) -> TicketRead:
    """Give the ticket to another worker: back to dispatched, escalation restarts for them."""
    await ctx.alerts.reassign(ticket_id, actor=user, assignee_id=body.assignee_id, note=body.note)
    return await _read(ctx.db, ticket_id)


@router.post("/tickets/{ticket_id}/transfer", response_model=TicketRead)
async def transfer_ticket(ctx: Services, user: CurrentUser, ticket_id: TicketId, body: TicketTransfer) -> TicketRead:
    """Move the ticket to another grid, routed to the worker on duty there."""
    await ctx.alerts.reassign(ticket_id, actor=user, grid_id=body.grid_id, assignee_id=body.assignee_id, note=body.note)
    return await _read(ctx.db, ticket_id)


@router.post("/tickets/{ticket_id}/comments", response_model=TicketRead, status_code=status.HTTP_201_CREATED)
async def comment_ticket(ctx: Services, user: CurrentUser, ticket_id: TicketId, body: TicketComment) -> TicketRead:
    await ctx.alerts.comment(ticket_id, actor=user, note=body.note)
    return await _read(ctx.db, ticket_id)


@router.get("/tickets/{ticket_id}/history/export", response_class=Response)
async def export_ticket_history(
    db: Db,
    user: CurrentUser,
    ticket_id: TicketId,
    fmt: Annotated[Format, Query(alias="format", description="csv or xlsx")] = Format.XLSX,
) -> Response:
    """The ticket's audit trail (every step, who, when, why) as CSV or Excel (.xlsx)."""
    view = await queries.get_ticket(db, ticket_id)
    if view is None:
        raise NotFound(f"ticket {ticket_id} not found")
    place = await places.place_of(db, building_id=view.ticket.building_id, household_id=view.ticket.household_id)
    body = render(audit_table(view, place=place), fmt)
    name = f"工单处置记录-{ticket_id[:8]}.{fmt.value}"
    return Response(body, media_type=fmt.media_type, headers={"Content-Disposition": disposition(name)})
