"""The live feed: an in-process fan-out of JSON messages to WebSocket clients (`/api/v1/live`).

Every subscriber has a bounded queue. A slow consumer never holds the others back and never
grows memory: when its queue is full the oldest message is dropped and counted. A subscriber
for one recipient (a worker's app) gets the messages addressed to them and the broadcasts; a
subscriber for no one in particular (the operations-center screen) gets everything.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self

from alerts.channels.base import NO_ADDRESS, Attempt, Notification
from alerts.channels.http import log_attempt
from whistle.timeutil import now_ms

log = logging.getLogger("alerts.channels")


class Subscription:
    """One consumer's bounded queue; iterate it (`async for text in sub`) until it is closed."""

    def __init__(
        self,
        hub: WebSocketChannel,
        maxsize: int,
        recipient_id: str | None,
        accepts: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> None:
        self._hub = hub
        self.accepts = accepts  # None: every message; otherwise only those it accepts (the caller's scope)
        self._items: deque[str] = deque()
        self._maxsize = maxsize
        self._ready = asyncio.Event()
        self._closed = False
        self.recipient_id = recipient_id
        self.dropped = 0

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    def put(self, text: str) -> None:
        """Queue a message; when the queue is full the oldest one goes (and is counted)."""
        if self._closed:
            return
        if len(self._items) >= self._maxsize:
            self._items.popleft()
            self.dropped += 1
            self._hub.dropped += 1
        self._items.append(text)
        self._ready.set()

    async def get(self) -> str:
        """The next message; `StopAsyncIteration` once the subscription is closed and drained."""
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def close(self) -> None:
        """Stop receiving; what is queued can still be read. Idempotent."""
        if not self._closed:
            self._closed = True
            self._hub._forget(self)
            self._ready.set()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str:
        return await self.get()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class WebSocketChannel:
    """The hub and a `NotifyChannel`: `send()` reaches the recipient's open live connections."""

    def __init__(self, *, name: str = "live", queue_size: int = 256) -> None:
        self._name = name
        self._queue_size = queue_size
        self._subs: list[Subscription] = []
        self.dropped = 0
        self.published = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def subscribe(
        self, recipient_id: str | None = None, *, accepts: Callable[[Mapping[str, Any]], bool] | None = None
    ) -> Subscription:
        """A new subscription: for one recipient, or (None) for every message; `accepts` keeps only the messages
        it returns true for (a caller's scope: whistle.access.Scope.sees_event), decided before they are queued."""
        sub = Subscription(self, self._queue_size, recipient_id, accepts)
        self._subs.append(sub)
        return sub

    def _forget(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def publish(self, event: Mapping[str, Any], *, recipient_id: str | None = None) -> int:
        """Fan a JSON message out; returns how many subscribers *of that recipient* got it
        (all subscribers when it is a broadcast)."""
        text = json.dumps(event, ensure_ascii=False, separators=(",", ":"), default=str)
        reached = 0
        for sub in list(self._subs):
            if recipient_id is None or sub.recipient_id in (None, recipient_id):
                if (
                    sub.accepts is not None
                    and not (sub.recipient_id is not None and sub.recipient_id == recipient_id)
                    and not sub.accepts(event)
                ):
                    continue
                sub.put(text)
                if recipient_id is None or sub.recipient_id == recipient_id:
                    reached += 1
        self.published += 1
        return reached

    def announce(self, event: Mapping[str, Any]) -> None:
        """A broadcast, shaped as an AlertService listener (alarm and ticket changes)."""
        self.publish(event)

    async def send(self, message: Notification) -> Attempt:
        at = now_ms()
        started = time.perf_counter()
        reached = self.publish(
            {**message.document(), "recipient_id": message.recipient.id}, recipient_id=message.recipient.id
        )
        attempt = Attempt(
            channel=self._name,
            notification_id=message.id,
            ok=reached > 0,
            retryable=False,
            address=f"{reached} live connections",
            code="ok" if reached else NO_ADDRESS,
            error=None if reached else "the recipient has no open live connection",
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            at=at,
        )
        log_attempt(attempt, message)
        return attempt

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        """Close every subscription (their iterators end once drained). Idempotent."""
        for sub in list(self._subs):
            sub.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
