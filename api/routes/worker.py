"""The grid worker's page (/m/): my open tickets with what and where, a ticket's detail, my notifications and
their receipts (delivered means seen), my Web Push subscriptions and the key they are made with."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from alerts import push, receipts, worklist
from api.deps import Allow, Db, Services, TicketId
from api.schemas import (
    MyNotificationRead,
    MyNotificationsRead,
    PushKeyRead,
    PushSubscriptionCreate,
    PushSubscriptionRead,
    ReceiptCreate,
    ReceiptsRead,
    WorkListRead,
    WorkTicketRead,
)
from whistle.access import Permission, Principal
from whistle.errors import NotFound
from whistle.timeutil import now_ms, to_datetime

router = APIRouter()

Reader = Annotated[Principal, Allow(Permission.TICKETS_READ)]
Own = Annotated[Principal, Allow(Permission.NOTIFICATIONS_OWN)]
Anyone = Annotated[Principal, Allow(Permission.LIVE)]


@router.get("/me/tickets", response_model=WorkListRead)
async def my_tickets(db: Db, user: Reader) -> WorkListRead:
    """The caller's open tickets (assigned to them), most urgent first: severity, then the longest waiting."""
    items = await worklist.my_open_tickets(db, user)
    return WorkListRead(items=[WorkTicketRead.of(w, masked=user.masked) for w in items], now=to_datetime(now_ms()))


@router.get("/tickets/{ticket_id}/detail", response_model=WorkTicketRead)
async def ticket_detail(db: Db, user: Reader, ticket_id: TicketId) -> WorkTicketRead:
    """A ticket with its place (address, unit, floors, location, the devices and where they hang) and its
    evidence in plain words, within the caller's scope."""
    found = await worklist.work_ticket(db, ticket_id, scope=user.scope)
    if found is None:
        raise NotFound(f"ticket {ticket_id} not found")
    return WorkTicketRead.of(found, masked=user.masked)


@router.get("/me/notifications", response_model=MyNotificationsRead)
async def my_notifications(db: Db, user: Own, limit: Annotated[int, Query(ge=1, le=200)] = 50) -> MyNotificationsRead:
    """The caller's notifications of the last day, newest first, with whether they were seen."""
    items = await receipts.my_notifications(db, user.id, limit=limit)
    return MyNotificationsRead(items=[MyNotificationRead.model_validate(n) for n in items], now=to_datetime(now_ms()))


@router.post("/me/notifications/receipts", response_model=ReceiptsRead)
async def confirm_notifications(db: Db, user: Own, body: ReceiptCreate) -> ReceiptsRead:
    """The caller's page showed these notifications of theirs (others' ids change nothing)."""
    return ReceiptsRead(confirmed=await receipts.confirm(db, user_id=user.id, ids=body.ids, via=body.via))


@router.get("/webpush/key", response_model=PushKeyRead)
async def push_key(ctx: Services, user: Anyone) -> PushKeyRead:
    """The VAPID public key browsers subscribe with (null when Web Push is not configured)."""
    return PushKeyRead(public_key=ctx.worker.vapid_public_key)


@router.post("/me/push-subscriptions", response_model=PushSubscriptionRead, status_code=status.HTTP_201_CREATED)
async def subscribe_push(db: Db, user: Own, body: PushSubscriptionCreate, request: Request) -> PushSubscriptionRead:
    """Keep this browser's push subscription (PushSubscription.toJSON()) for the caller."""
    sub = push.checked(body.model_dump())
    created = await push.subscribe(db, user.id, sub, user_agent=request.headers.get("user-agent", ""))
    return PushSubscriptionRead(endpoint=sub.endpoint, created=created)


@router.delete("/me/push-subscriptions", status_code=status.HTTP_204_NO_CONTENT)
async def unsubscribe_push(
    db: Db, user: Own, endpoint: Annotated[str, Query(max_length=1000)], response: Response
) -> None:
    """Forget one of the caller's push subscriptions (404 if it is not theirs)."""
    if not await push.unsubscribe(db, user.id, endpoint):
        raise NotFound("no such push subscription of yours")
