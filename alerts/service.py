"""Applying detections and ticket actions: decide (pure), then commit in one transaction, then announce.

Announcements (the live feed; notifications in a later release) go out only after the
transaction commits, so nothing is announced that the database does not hold.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg

from alerts import repository as repo
from alerts.lifecycle import Change, decide
from alerts.routing import choose_assignee
from whistle.bus import TOPIC_DETECTIONS, Bus, TopicPartition
from whistle.domain import Detection, Outcome, TicketStatus
from whistle.serde import decode_detection
from whistle.store.db import Database
from whistle.timeutil import now_ms, to_datetime

log = logging.getLogger(__name__)

Listener = Callable[[Mapping[str, Any]], None]
SYSTEM = "system"


class TicketError(ValueError):
    """A ticket action that is not allowed (unknown ticket, or not from its current status)."""

    def __init__(self, message: str, *, not_found: bool = False) -> None:
        super().__init__(message)
        self.not_found = not_found


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying one detection did."""

    change: Change
    alarm_id: str | None
    ticket_id: str | None = None
    assignee_id: str | None = None
    duplicate: bool = False


# Which statuses each action may start from, and where it leads.
TRANSITIONS: Mapping[str, tuple[frozenset[TicketStatus], TicketStatus, str]] = {
    "ack": (frozenset({TicketStatus.DISPATCHED}), TicketStatus.ACKNOWLEDGED, "acknowledged_at"),
    "arrive": (frozenset({TicketStatus.DISPATCHED, TicketStatus.ACKNOWLEDGED}), TicketStatus.ON_SITE, "arrived_at"),
    "resolve": (
        frozenset({TicketStatus.DISPATCHED, TicketStatus.ACKNOWLEDGED, TicketStatus.ON_SITE}),
        TicketStatus.RESOLVED,
        "resolved_at",
    ),
}


@dataclass
class AlertService:
    db: Database
    clock: Callable[[], int] = now_ms
    listeners: list[Listener] = field(default_factory=list)

    def _announce(self, event: Mapping[str, Any]) -> None:
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:
                log.exception("live listener failed")

    async def apply(self, d: Detection) -> Applied:
        """Apply one detection exactly once (a redelivered one is recognised by its id and dropped)."""
        for attempt in range(3):
            try:
                result = await self._apply_once(d)
                break
            except psycopg.errors.UniqueViolation:
                # Another worker opened the same alarm concurrently; the retry sees it and updates it.
                if attempt == 2:
                    raise
        if result.change is not Change.IGNORE and not result.duplicate:
            self._announce(
                {
                    "type": f"alarm.{result.change.value}",
                    "alarm_id": result.alarm_id,
                    "kind": d.kind.value,
                    "subject_id": d.subject_id,
                }
            )
            if result.ticket_id:
                self._announce(
                    {
                        "type": "ticket.created",
                        "ticket_id": result.ticket_id,
                        "assignee_id": result.assignee_id,
                        "kind": d.kind.value,
                    }
                )
        return result

    async def _apply_once(self, d: Detection) -> Applied:
        now = self.clock()
        async with self.db.connection() as conn, conn.transaction():
            if await repo.detection_applied(conn, d.detection_id):
                return Applied(Change.IGNORE, None, duplicate=True)
            existing = await repo.lock_open_alarm(conn, d)
            decision = decide(d, existing)
            if decision.change is Change.IGNORE:
                return Applied(Change.IGNORE, None)
            if decision.change is Change.OPEN:
                alarm_id = await repo.insert_alarm(conn, d, decision.severity, now)
                await repo.mark_applied(conn, d.detection_id, alarm_id)
                chain, candidates = await repo.routing_candidates(conn, d.grid_id)
                assignee = choose_assignee(chain, candidates)
                ticket_id = await repo.insert_ticket(
                    conn, alarm=d, alarm_id=alarm_id, severity=decision.severity, assignee_id=assignee, now=now
                )
                await repo.add_ticket_event(
                    conn,
                    ticket_id,
                    at=now,
                    actor=SYSTEM,
                    action="dispatched",
                    to_status="dispatched",
                    data={"alarm_id": alarm_id, "assignee_id": assignee, "grid_chain": chain},
                )
                return Applied(Change.OPEN, alarm_id, ticket_id, assignee)
            assert existing is not None
            open_ticket = await repo.ticket_for_alarm(conn, existing.id)
            if decision.change is Change.UPDATE:
                await repo.update_alarm(conn, existing.id, d, decision.severity)
                if open_ticket and decision.escalated:
                    await repo.add_ticket_event(
                        conn,
                        open_ticket,
                        at=now,
                        actor=SYSTEM,
                        action="severity_raised",
                        data={"severity": decision.severity.value},
                    )
            else:
                await repo.clear_alarms(conn, [existing.id], now, {"cleared_by": "rule", **dict(d.evidence)})
                if open_ticket:
                    await repo.add_ticket_event(
                        conn, open_ticket, at=now, actor=SYSTEM, action="alarm_cleared", data={"alarm_id": existing.id}
                    )
            await repo.mark_applied(conn, d.detection_id, existing.id)
            return Applied(decision.change, existing.id, open_ticket)

    async def transition(
        self, ticket_id: str, action: str, *, actor: str, outcome: Outcome | None = None, note: str | None = None
    ) -> None:
        """Move a ticket along (ack, arrive, resolve), recording who, when and why."""
        allowed, target, stamp = TRANSITIONS[action]
        now = self.clock()
        async with self.db.connection() as conn, conn.transaction():
            row = await repo.lock_ticket(conn, ticket_id)
            if row is None:
                raise TicketError(f"ticket {ticket_id} not found", not_found=True)
            current = TicketStatus(row["status"])
            if current not in allowed:
                raise TicketError(f"cannot {action} a ticket that is {current.value}")
            columns: dict[str, Any] = {stamp: to_datetime(now)}
            if action == "resolve":
                if outcome is None:
                    raise TicketError("resolve needs an outcome: confirmed, false_alarm or duplicate")
                columns.update(outcome=outcome.value, note=note)
            await repo.set_ticket_status(conn, ticket_id, target.value, **columns)
            await repo.add_ticket_event(
                conn,
                ticket_id,
                at=now,
                actor=actor,
                action=action,
                from_status=current.value,
                to_status=target.value,
                note=note,
                data={"outcome": outcome.value} if outcome else None,
            )
            if action == "resolve":
                alarms = await repo.alarm_ids_of_ticket(conn, ticket_id)
                await repo.clear_alarms(
                    conn, alarms, now, {"cleared_by": "ticket", "outcome": outcome.value if outcome else None}
                )
        self._announce({"type": f"ticket.{target.value}", "ticket_id": ticket_id, "actor": actor})


class AlertsWorker:
    """Consumes detections from the bus and applies them."""

    def __init__(self, bus: Bus, service: AlertService, *, group: str = "whistle-alerts") -> None:
        self.bus = bus
        self.service = service
        self.group = group
        self.applied = 0

    async def run(self, stop: asyncio.Event) -> None:
        consumer = self.bus.consumer(self.group, [TOPIC_DETECTIONS])
        await consumer.start()
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=250, max_records=500)
                offsets: dict[TopicPartition, int] = {}
                for tp, records in batches.items():
                    for rec in records:
                        await self.service.apply(decode_detection(rec.value))
                        self.applied += 1
                    offsets[tp] = records[-1].offset + 1
                if offsets:
                    await consumer.commit(offsets)
        finally:
            await consumer.stop()
