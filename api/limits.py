"""A cap on request bodies (an ASGI middleware): 413 before more than the cap is read into memory.

`Content-Length` over the cap is refused at once; a body sent without one (chunked) is counted as it
arrives and refused when it passes the cap. Paths can have their own cap (a registry import is large).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    def __init__(self, app: ASGIApp, *, default: int, paths: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.default = default
        self.paths = dict(paths or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.paths.get(scope["path"], self.default)
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = limit + 1
                if length > limit:
                    await _refuse(send, limit)
                    return
        # Read the body up to the cap before the app sees any of it (the routes read whole bodies anyway).
        parts: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([], message, receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _refuse(send, limit)
                return
            parts.append(chunk)
            more = bool(message.get("more_body", False))
        await self.app(scope, _replay(parts, None, receive), send)


def _replay(parts: list[bytes], first: Message | None, receive: Receive) -> Receive:
    """A receive that gives the buffered body as one message, then whatever the client sends next."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            if first is not None:
                return first
            return {"type": "http.request", "body": b"".join(parts), "more_body": False}
        return await receive()

    return replayed


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"request body larger than {limit} bytes"}).encode()
    headers: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json"), (b"connection", b"close")]
    headers.append((b"content-length", str(len(body)).encode()))
    start: dict[str, Any] = {"type": "http.response.start", "status": 413, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": body})
