"""The live feed across processes: a worker's page may be connected to another process than the one that sends.

The hub (alerts.channels.live) fans out inside one process. When the roles run apart (`whistle run api` beside
`whistle run alerts`, or a supervisor's child processes) the notification is sent where the page is not:

- **Presence.** Each process serving `/api/v1/live` keeps, in `live_presence`, which recipients have a
  connection to it (`LiveRelay.opened` / `closed`), refreshed every `heartbeat_s`; a process that dies stops
  refreshing and its rows go stale after `stale_s`.
- **Relay.** `RelayedLiveChannel.send` reaches the recipient's connections in its own process first; if it has
  none and another process has (a fresh presence row), it hands the message over with PostgreSQL's
  `pg_notify('whistle_live', …)` — delivered to every listening process at once — and counts it handed over,
  exactly like a local one. `LiveRelay.run` LISTENs in each process with the API and puts what it hears
  into its own hub for the recipient's connections there.

NOTIFY is not durable (a process that is not listening at that moment misses it), and that is fine here: a
handover is not a delivery. The page confirms what it showed (alerts.receipts, persisted); without a receipt a
critical notification goes on to the next channel, and the page also reads `GET /me/notifications` when it
opens or reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import Counter
from typing import Any

import psycopg

from alerts.channels.base import Attempt, Notification
from alerts.channels.http import log_attempt
from alerts.channels.live import WebSocketChannel
from whistle.store.db import Database
from whistle.timeutil import now_ms

log = logging.getLogger("alerts.channels")

CHANNEL = "whistle_live"
MAX_PAYLOAD = 7000  # NOTIFY takes 8000 bytes


class LiveRelay:
    """This process's side of the relay: who is connected here, and the messages other processes hand over."""

    def __init__(self, db: Database, hub: WebSocketChannel, *, heartbeat_s: float = 20.0) -> None:
        self.db = db
        self.hub = hub
        self.process = uuid.uuid4().hex
        self.heartbeat_s = heartbeat_s
        self._here: Counter[str] = Counter()
        self.relayed_in = 0

    async def opened(self, recipient_id: str) -> None:
        """A connection for `recipient_id` opened in this process."""
        self._here[recipient_id] += 1
        await self._mark([recipient_id])

    async def closed(self, recipient_id: str) -> None:
        """One of its connections closed; the last one takes the recipient's presence here away."""
        self._here[recipient_id] -= 1
        if self._here[recipient_id] > 0:
            return
        del self._here[recipient_id]
        with contextlib.suppress(psycopg.Error, OSError):
            async with self.db.connection() as conn:
                await conn.execute(
                    "DELETE FROM live_presence WHERE recipient_id = %s AND process = %s", (recipient_id, self.process)
                )

    async def _mark(self, recipients: list[str]) -> None:
        if not recipients:
            return
        try:
            async with self.db.connection() as conn:
                await conn.execute(
                    "INSERT INTO live_presence (recipient_id, process, seen_at) "
                    "SELECT r, %s, now() FROM unnest(%s::text[]) r "
                    "ON CONFLICT (recipient_id, process) DO UPDATE SET seen_at = now()",
                    (self.process, recipients),
                )
        except (psycopg.Error, OSError) as exc:  # the database away: presence is refreshed at the next beat
            log.warning("live presence not recorded: %s", exc)

    def deliver(self, payload: str) -> None:
        """A message handed over by another process: into this hub, for the recipient's connections here."""
        try:
            doc = json.loads(payload)
        except json.JSONDecodeError:
            return
        if not isinstance(doc, dict) or doc.get("origin") == self.process or not isinstance(doc.get("event"), dict):
            return
        recipient = doc.get("recipient_id")
        if isinstance(recipient, str) and recipient in self._here:
            self.relayed_in += 1
            self.hub.publish(doc["event"], recipient_id=recipient)

    async def run(self, stop: asyncio.Event) -> None:
        """LISTEN for handed-over messages and refresh this process's presence, until `stop` (reconnecting)."""
        beat = asyncio.create_task(self._beat(stop))
        try:
            while not stop.is_set():
                try:
                    await self._listen(stop)
                except (psycopg.Error, OSError) as exc:
                    log.warning("live relay: listening failed (%s); again in 2 s", exc)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 2.0)
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
            with contextlib.suppress(psycopg.Error, OSError):
                async with self.db.connection() as conn:
                    await conn.execute("DELETE FROM live_presence WHERE process = %s", (self.process,))

    async def _listen(self, stop: asyncio.Event) -> None:
        conn = await psycopg.AsyncConnection.connect(self.db.conninfo, autocommit=True)
        try:
            await conn.execute(f"LISTEN {CHANNEL}")
            while not stop.is_set():
                async for n in conn.notifies(timeout=1.0):
                    self.deliver(n.payload)
        finally:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()

    async def _beat(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.heartbeat_s)
            await self._mark(sorted(self._here))


class RelayedLiveChannel:
    """The `live` channel of a process that sends: its own hub first, then a page connected to another process."""

    def __init__(self, hub: WebSocketChannel, db: Database, *, stale_s: float = 60.0, origin: str = "") -> None:
        self.hub = hub
        self.db = db
        self.stale_s = stale_s
        self.origin = origin or uuid.uuid4().hex
        self.relayed_out = 0

    @property
    def name(self) -> str:
        return self.hub.name

    async def send(self, message: Notification) -> Attempt:
        local = await self.hub.send(message)
        if local.ok:
            return local
        at = now_ms()
        started = time.perf_counter()
        event: dict[str, Any] = {**message.document(), "recipient_id": message.recipient.id}
        payload = json.dumps(
            {"origin": self.origin, "recipient_id": message.recipient.id, "event": event},
            ensure_ascii=False,
            separators=(",", ":"),
            default=str,
        )
        if len(payload.encode()) > MAX_PAYLOAD:
            event["body"] = str(event.get("body", ""))[:500]
            payload = json.dumps({"origin": self.origin, "recipient_id": message.recipient.id, "event": event},
                                 ensure_ascii=False, separators=(",", ":"), default=str)  # fmt: skip
        async with self.db.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM live_presence WHERE recipient_id = %s AND seen_at > now() - %s * interval '1 s'",
                (message.recipient.id, self.stale_s),
            )
            row = await cur.fetchone()
            elsewhere = int(row[0]) if row else 0
            if elsewhere:
                await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
        if not elsewhere:
            return local  # nobody's page is open anywhere: no_address, on to the next channel
        self.relayed_out += 1
        attempt = Attempt(
            channel=self.name,
            notification_id=message.id,
            ok=True,
            retryable=False,
            address=f"relayed to {elsewhere} other process{'es' if elsewhere > 1 else ''}",
            code="relayed",
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            at=at,
        )
        log_attempt(attempt, message)
        return attempt
