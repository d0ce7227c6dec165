"""WS /live: alarm and ticket changes as JSON messages, and a recipient's own notifications."""

from __future__ import annotations

import asyncio
import contextlib
import secrets

from fastapi import APIRouter, WebSocket, WebSocketDisconnect, status

from api.deps import ApiContext

router = APIRouter()


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
