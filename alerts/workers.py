"""Background work of the alerts role: escalation timers, quiet-period clearing, held offline alarms.

All keep their state in PostgreSQL (tickets.escalation_due_at, alarms.last_seen,
alarms.held_until), so they survive a restart, and all take rows with `FOR UPDATE SKIP LOCKED`, so several alerts
processes share the work without doing it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

from psycopg.rows import dict_row

from alerts import store
from alerts.notify import SYSTEM, advance
from alerts.service import AlertService
from whistle.domain import AlarmKind
from whistle.timeutil import to_datetime

log = logging.getLogger(__name__)

# How long an alarm that its rule never clears stays open without a new detection (seconds).
# Life-safety kinds (fire, trapped passengers, a lone elder) are never cleared by silence.
QUIET_PERIODS: Mapping[AlarmKind, int] = {
    AlarmKind.ELEVATOR_EBIKE: 3600,
    AlarmKind.ELEVATOR_FAULT: 24 * 3600,
    AlarmKind.EBIKE_INDOOR_CHARGING: 12 * 3600,
    AlarmKind.WATER_CONTINUOUS_FLOW: 24 * 3600,
    AlarmKind.SMOKE_FAULT: 3 * 24 * 3600,
    AlarmKind.SMOKE_TAMPER: 3 * 24 * 3600,
    AlarmKind.SMOKE_LOW_BATTERY: 7 * 24 * 3600,
    AlarmKind.SYSTEM_NOTIFICATION_CAP: 2 * 3600,  # raised again each hour a cap keeps stopping something
}


class EscalationWorker:
    """Fires due escalation steps: polls tickets whose `escalation_due_at` has passed."""

    def __init__(
        self,
        service: AlertService,
        *,
        clock: Callable[[], int] | None = None,
        batch: int = 50,
        poll_s: float = 1.0,
        quiet_periods: Mapping[AlarmKind, int] = QUIET_PERIODS,
    ) -> None:
        self.service = service
        self.db = service.db
        self.clock = clock or service.clock
        self.batch = batch
        self.poll_s = poll_s
        self.quiet_periods = quiet_periods
        self.fired = 0
        self.cleared = 0

    async def run_once(self) -> int:
        """Advance one batch of due tickets; each in the same transaction as its outbox rows."""
        now = self.clock()
        queued = 0
        async with self.db.connection() as conn, conn.transaction():
            async with conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(
                    "SELECT * FROM tickets WHERE escalation_due_at <= %s ORDER BY escalation_due_at "
                    "LIMIT %s FOR UPDATE SKIP LOCKED",
                    (to_datetime(now), self.batch),
                )
                due = await cur.fetchall()
            for row in due:
                queued += await advance(conn, store.ticket_from_row(row), now)
        self.fired += queued
        if queued:
            self.service.outbox_ready.set()
            for t in due:
                self.service.announce(
                    {
                        "type": "ticket.escalated",
                        "ticket_id": str(t["id"]),
                        "grid_id": t["grid_id"],
                        "assignee_id": t["assignee_id"],
                    }
                )
        return len(due)

    async def clear_quiet(self) -> int:
        """Clear open alarms of kinds with a quiet period whose last detection is older than it."""
        now = self.clock()
        if not self.quiet_periods:
            return 0
        kinds = [k.value for k in self.quiet_periods]
        periods = [self.quiet_periods[k] * 1000 for k in self.quiet_periods]
        cleared: list[tuple[str, str | None, str | None]] = []
        async with self.db.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT a.id, ta.ticket_id, a.grid_id FROM alarms a "
                "JOIN unnest(%s::text[], %s::bigint[]) q(kind, ms) ON q.kind = a.kind "
                "LEFT JOIN ticket_alarms ta ON ta.alarm_id = a.id "
                "WHERE a.status <> 'cleared' AND a.last_seen < %s::timestamptz - q.ms * interval '1 millisecond' "
                "ORDER BY a.last_seen LIMIT 500 FOR UPDATE OF a SKIP LOCKED",
                (kinds, periods, to_datetime(now)),
            )
            cleared = [(str(r[0]), str(r[1]) if r[1] else None, r[2]) for r in await cur.fetchall()]
            for alarm_id, ticket_id, _grid in cleared:
                await store.clear_alarms(conn, [alarm_id], now, {"cleared_by": "quiet_period"})
                if ticket_id:
                    await store.add_ticket_event(
                        conn,
                        ticket_id,
                        at=now,
                        actor=SYSTEM,
                        action="alarm_cleared",
                        data={"alarm_id": alarm_id, "cleared_by": "quiet_period"},
                    )
                    await self.service.after_clear(conn, ticket_id, now)
        self.cleared += len(cleared)
        for alarm_id, _, grid in cleared:
            self.service.announce(
                {"type": "alarm.clear", "alarm_id": alarm_id, "cleared_by": "quiet_period", "grid_id": grid}
            )
        return len(cleared)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                while await self.run_once() >= self.batch:
                    pass
                await self.service.release_held()
                await self.clear_quiet()
            except Exception:
                log.exception("escalation round failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll_s)
