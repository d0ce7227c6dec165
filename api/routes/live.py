"""WS /live: alarm and ticket changes as JSON messages within the caller's scope, and their own notifications."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from fastapi import APIRouter, WebSocket, WebSocketDisconnect, status

from alerts import receipts
from api.deps import SESSION_COOKIE, ApiContext, authenticate
from whistle.access import Permission

router = APIRouter()
log = logging.getLogger(__name__)


@router.websocket("/live")
async def live(websocket: WebSocket, token: str | None = None, recipient_id: str | None = None) -> None:
    """Alarm and ticket changes as JSON messages, limited to the caller's scope (a grid worker hears their
    grid's and their own tickets); `recipient_id` adds that person's notifications and may only be the caller.
    The page confirms a notification it has shown with `{"type": "receipt", "ids": [...]}` (answered by
    `receipt.ok`): until then a critical one counts as not seen (docs/NOTIFICATIONS.md, "Delivered means seen").

    Browsers cannot set headers on a WebSocket: the token may come as `?token=`, or the session cookie is used."""
    ctx: ApiContext = websocket.app.state.ctx
    header = websocket.headers.get("authorization", "")
    bearer = token or (header[7:] if header.lower().startswith("bearer ") else None)
    caller = await authenticate(ctx, bearer=bearer, cookie=None if bearer else websocket.cookies.get(SESSION_COOKIE))
    if caller is None or not caller.can(Permission.LIVE):
        await websocket.close(code=status.WS_1008_POLICY_VIOLATION)
        return
    if recipient_id is not None and recipient_id != caller.id:
        await websocket.close(code=status.WS_1008_POLICY_VIOLATION, reason="recipient_id may only be yourself")
        return
    await websocket.accept()
    accepts = None if caller.scope.all_grids else caller.scope.sees_event
    async with ctx.alerts.live.subscribe(recipient_id, accepts=accepts) as sub:
        if ctx.relay is not None and recipient_id is not None:  # a process that sends can reach this page
            await ctx.relay.opened(recipient_id)
        await websocket.send_json({"type": "hello", "recipient_id": recipient_id})

        async def pump() -> None:
            async for text in sub:
                await websocket.send_text(text)

        async def until_closed() -> None:
            with contextlib.suppress(WebSocketDisconnect):
                while True:
                    await receipt(await websocket.receive_text())

        async def receipt(text: str) -> None:
            """`{"type": "receipt", "ids": [...]}`: the page showed these notifications of the caller's."""
            try:
                doc = json.loads(text)
            except (json.JSONDecodeError, UnicodeDecodeError):
                return
            if not isinstance(doc, dict) or doc.get("type") != "receipt" or not isinstance(doc.get("ids"), list):
                return
            ids = [i for i in doc["ids"] if isinstance(i, str)][: receipts.MAX_IDS]
            try:
                seen = await receipts.confirm(ctx.db, user_id=caller.id, ids=ids, via="live")
            except Exception:  # the database away: the page sends it again over HTTP when it gets no answer
                log.warning("live: a receipt of %s could not be stored", caller.id, exc_info=True)
                return
            sub.put(json.dumps({"type": "receipt.ok", "ids": ids, "seen": seen}))  # sent by the pump, in order

        tasks = [asyncio.create_task(pump()), asyncio.create_task(until_closed())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if ctx.relay is not None and recipient_id is not None:
                await ctx.relay.closed(recipient_id)
