"""The one-tap link of an SMS or a robot message (`/m/a/<token>` opens the worker's page on it): that one ticket,
acknowledged as its assignee. The token is the only credential; nothing else is reachable with it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, status

from alerts import receipts
from alerts.one_tap import LinkExpired, ack_by_link, open_link
from api.deps import Services, count_failed_sign_in
from api.schemas import OneTapRead
from whistle.errors import NotFound
from whistle.timeutil import now_ms

router = APIRouter()

Token = Annotated[str, Path(min_length=1, max_length=64)]


@router.get("/one-tap/{token}", response_model=OneTapRead)
async def read_link(ctx: Services, token: Token, request: Request) -> OneTapRead:
    """The ticket a one-tap link names: what and where, its status, whether it can still be acknowledged. Opening it
    is seeing it: the worker's notifications about this ticket count as seen (via `link`)."""
    key = await ctx.worker.link_key(ctx.db)
    try:
        tap = await open_link(ctx.db, key, token, now=now_ms())
    except LinkExpired as exc:
        raise HTTPException(status.HTTP_410_GONE, str(exc)) from exc
    except NotFound:
        count_failed_sign_in(ctx, request)  # a guessed token spends the address's sign-in budget
        raise
    # opened from the message: what was sent to the worker about this ticket has been seen
    await receipts.confirm_ticket(ctx.db, user_id=tap.worker_id, ticket_id=tap.work.view.ticket.id)
    return OneTapRead.of(tap)


@router.post("/one-tap/{token}/ack", response_model=OneTapRead)
async def ack_link(ctx: Services, token: Token, request: Request) -> OneTapRead:
    """Acknowledge the link's ticket as the worker it is assigned to (409 if it is no longer dispatched)."""
    key = await ctx.worker.link_key(ctx.db)
    wait = ctx.limiter.take(f"one-tap:{token}", per_min=ctx.access.rate_write_per_min)
    if wait is not None:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, "too many requests", {"Retry-After": "1"})
    try:
        return OneTapRead.of(await ack_by_link(ctx.db, ctx.alerts, key, token, now=now_ms()))
    except LinkExpired as exc:
        raise HTTPException(status.HTTP_410_GONE, str(exc)) from exc
    except NotFound:
        count_failed_sign_in(ctx, request)
        raise
