"""Applying detections and ticket actions: decide (pure), then commit in one transaction, then announce.

Announcements (the live feed) go out only after the transaction commits, so nothing is announced
that the database does not hold. Notifications are written to the outbox in the same transaction
as the ticket change and sent after it commits (alerts.outbox).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg

from alerts import rosters, silences, store
from alerts.channels.live import WebSocketChannel
from alerts.escalation import policy_for
from alerts.lifecycle import Change, decide, group_of
from alerts.notify import SYSTEM, advance, reached_statuses
from alerts.outbox import suppress_notifications
from alerts.routing import route
from whistle.access import Scope
from whistle.bus import TOPIC_DETECTIONS, Bus, TopicPartition
from whistle.domain import Detection, Outcome, Severity, SubjectType, Ticket, TicketStatus
from whistle.errors import ServiceError
from whistle.serde import decode_detection
from whistle.store.db import Database
from whistle.timeutil import now_ms, to_datetime

log = logging.getLogger(__name__)

Listener = Callable[[Mapping[str, Any]], None]


class TicketError(ServiceError):
    """A ticket action that is not allowed (unknown ticket, or not from its current status)."""


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying one detection did."""

    change: Change
    alarm_id: str | None
    ticket_id: str | None = None
    assignee_id: str | None = None
    duplicate: bool = False
    silenced: bool = False  # recorded inside a silence or maintenance window: not dispatched
    grouped: bool = False  # joined the open ticket of a related alarm
    queued: int = 0  # notifications written to the outbox


# Which statuses each action may start from, and where it leads.
TRANSITIONS: Mapping[str, tuple[frozenset[TicketStatus], TicketStatus, str]] = {
    "ack": (frozenset({TicketStatus.DISPATCHED}), TicketStatus.ACKNOWLEDGED, "acknowledged_at"),
    "arrive": (frozenset({TicketStatus.DISPATCHED, TicketStatus.ACKNOWLEDGED}), TicketStatus.ON_SITE, "arrived_at"),
    "resolve": (
        frozenset({TicketStatus.DISPATCHED, TicketStatus.ACKNOWLEDGED, TicketStatus.ON_SITE}),
        TicketStatus.RESOLVED,
        "resolved_at",
    ),
    "close": (frozenset({TicketStatus.RESOLVED}), TicketStatus.CLOSED, "closed_at"),
}
OPEN_STATUSES = frozenset({TicketStatus.DISPATCHED, TicketStatus.ACKNOWLEDGED, TicketStatus.ON_SITE})


def _device_ids(d: Detection) -> list[str]:
    """The devices behind a detection: its subject if a device, the source, and the detectors in evidence."""
    ids = {d.source_id.split(":", 1)[0]} if d.source_id else set()
    if d.subject_type is SubjectType.DEVICE:
        ids.add(d.subject_id)
    detectors = d.evidence.get("detectors")
    if isinstance(detectors, list):
        ids.update(str(x) for x in detectors)
    ids.discard("")
    return sorted(ids)


@dataclass
class AlertService:
    db: Database
    clock: Callable[[], int] = now_ms
    listeners: list[Listener] = field(default_factory=list)
    live: WebSocketChannel = field(default_factory=WebSocketChannel)
    outbox_ready: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.listeners.append(self.live.announce)

    def announce(self, event: Mapping[str, Any]) -> None:
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:
                log.exception("live listener failed")

    def _queued(self, n: int) -> None:
        if n:
            self.outbox_ready.set()

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
        self._queued(result.queued)
        if result.change is not Change.IGNORE and not result.duplicate:
            self.announce(
                {
                    "type": f"alarm.{result.change.value}",
                    "alarm_id": result.alarm_id,
                    "kind": d.kind.value,
                    "severity": d.severity.value,
                    "subject_id": d.subject_id,
                    "grid_id": d.grid_id,
                    "silenced": result.silenced,
                }
            )
            if result.ticket_id and result.change is Change.OPEN:
                self.announce(
                    {
                        "type": "ticket.updated" if result.grouped else "ticket.created",
                        "ticket_id": result.ticket_id,
                        "assignee_id": result.assignee_id,
                        "kind": d.kind.value,
                        "grid_id": d.grid_id,
                    }
                )
        return result

    async def _dispatch(self, conn: store.Conn, d: Detection, alarm_id: str, severity: Severity, now: int) -> Applied:
        """Open a ticket for a new alarm (or join a related one), unless a silence covers it."""
        chain, candidates = await store.routing_candidates(conn, d.grid_id)
        silence = await silences.active_silence(
            conn, kind=d.kind.value, devices=_device_ids(d), building_id=d.building_id, grids=chain, at=now
        )
        if silence is not None:
            await silences.set_alarm_silence(conn, alarm_id, silence)
            return Applied(Change.OPEN, alarm_id, silenced=True)
        group = group_of(d.kind, d.household_id, d.building_id)
        if group is not None:
            joined = await store.open_ticket_of_group(conn, [k.value for k in group.kinds], group.column, group.value)
            if joined is not None:
                await store.attach_alarm(conn, joined, alarm_id)
                await store.add_ticket_event(
                    conn,
                    joined,
                    at=now,
                    actor=SYSTEM,
                    action="alarm_grouped",
                    data={"alarm_id": alarm_id, "kind": d.kind.value, "severity": severity.value},
                )
                ticket = await store.lock_ticket(conn, joined)
                assert ticket is not None
                if severity.rank < ticket.severity.rank:
                    await store.update_ticket(conn, joined, severity=severity.value)
                return Applied(Change.OPEN, alarm_id, joined, ticket.assignee_id, grouped=True)
        shifts = await rosters.shifts_of(conn, chain[:1])
        contacts = await store.contacts_of(conn, d.household_id)
        responders = route(chain, candidates, shifts, now, household_id=d.household_id, contacts=len(contacts))
        policy = policy_for(d.kind, severity, has_contact=bool(contacts))
        ticket_id = await store.insert_ticket(
            conn,
            alarm=d,
            alarm_id=alarm_id,
            severity=severity,
            assignee_id=responders.assignee,
            now=now,
            policy=policy.to_json(),
        )
        await store.add_ticket_event(
            conn,
            ticket_id,
            at=now,
            actor=SYSTEM,
            action="dispatched",
            to_status="dispatched",
            data={"alarm_id": alarm_id, "assignee_id": responders.assignee, "grid_chain": chain, "policy": policy.name},
        )
        ticket = await store.lock_ticket(conn, ticket_id)
        assert ticket is not None
        queued = await advance(conn, ticket, now)
        return Applied(Change.OPEN, alarm_id, ticket_id, responders.assignee, queued=queued)

    async def _apply_once(self, d: Detection) -> Applied:
        now = self.clock()
        async with self.db.connection() as conn, conn.transaction():
            if await store.detection_applied(conn, d.detection_id):
                return Applied(Change.IGNORE, None, duplicate=True)
            existing = await store.lock_open_alarm(conn, d)
            decision = decide(d, existing)
            if decision.change is Change.IGNORE:
                return Applied(Change.IGNORE, None)
            if decision.change is Change.OPEN:
                alarm_id = await store.insert_alarm(conn, d, decision.severity, now)
                await store.mark_applied(conn, d.detection_id, alarm_id)
                return await self._dispatch(conn, d, alarm_id, decision.severity, now)
            assert existing is not None
            open_ticket = await store.ticket_for_alarm(conn, existing.id)
            queued = 0
            if decision.change is Change.UPDATE:
                await store.update_alarm(conn, existing.id, d, decision.severity)
                if open_ticket and decision.escalated:
                    await store.add_ticket_event(
                        conn,
                        open_ticket,
                        at=now,
                        actor=SYSTEM,
                        action="severity_raised",
                        data={"severity": decision.severity.value},
                    )
                await store.mark_applied(conn, d.detection_id, existing.id)
                if open_ticket is None and await silences.alarm_silence(conn, existing.id) is not None:
                    # A silenced alarm still going on: dispatch it once its silence is over.
                    applied = await self._dispatch(conn, d, existing.id, decision.severity, now)
                    if not applied.silenced:
                        await silences.set_alarm_silence(conn, existing.id, None)
                        return replace(applied, change=Change.UPDATE)
                return Applied(Change.UPDATE, existing.id, open_ticket)
            await store.clear_alarms(conn, [existing.id], now, {"cleared_by": "rule", **dict(d.evidence)})
            if open_ticket:
                await store.add_ticket_event(
                    conn, open_ticket, at=now, actor=SYSTEM, action="alarm_cleared", data={"alarm_id": existing.id}
                )
                queued = await self.after_clear(conn, open_ticket, now)
            await store.mark_applied(conn, d.detection_id, existing.id)
            return Applied(decision.change, existing.id, open_ticket, queued=queued)

    async def after_clear(self, conn: store.Conn, ticket_id: str, now: int) -> int:
        """Once all of a ticket's alarms are cleared its escalation stops and unsent notifications go."""
        if await store.has_open_alarms(conn, ticket_id):
            return 0
        await suppress_notifications(conn, ticket_id, None, "alarms cleared")
        ticket = await store.lock_ticket(conn, ticket_id)
        return await advance(conn, ticket, now) if ticket else 0

    async def transition(
        self,
        ticket_id: str,
        action: str,
        *,
        actor: str,
        outcome: Outcome | None = None,
        note: str | None = None,
        scope: Scope | None = None,
    ) -> None:
        """Move a ticket along (ack, arrive, resolve, close), recording who, when and why.

        With a `scope`, a ticket outside it is not found (the caller's part of the street, whistle.access)."""
        allowed, target, stamp = TRANSITIONS[action]
        now = self.clock()
        async with self.db.connection() as conn, conn.transaction():
            row = await self._lock(conn, ticket_id, scope)
            current = row.status
            if current not in allowed:
                raise TicketError(f"cannot {action} a ticket that is {current.value}")
            columns: dict[str, Any] = {stamp: to_datetime(now)}
            if action == "resolve":
                if outcome is None:
                    raise TicketError("resolve needs an outcome: confirmed, false_alarm or duplicate")
                columns.update(outcome=outcome.value, note=note)
            await store.set_ticket_status(conn, ticket_id, target.value, **columns)
            await store.add_ticket_event(
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
            if action == "ack":
                await store.acknowledge_alarms(conn, ticket_id)
            if action == "resolve":
                alarms = await store.alarm_ids_of_ticket(conn, ticket_id)
                await store.clear_alarms(
                    conn, alarms, now, {"cleared_by": "ticket", "outcome": outcome.value if outcome else None}
                )
            await suppress_notifications(conn, ticket_id, reached_statuses(target), f"ticket {target.value}")
            ticket = await store.lock_ticket(conn, ticket_id)
            assert ticket is not None
            queued = await advance(conn, ticket, now)
        self._queued(queued)
        self.announce(
            {
                "type": f"ticket.{target.value}",
                "ticket_id": ticket_id,
                "actor": actor,
                "grid_id": row.grid_id,
                "assignee_id": row.assignee_id,
            }
        )

    async def _lock(self, conn: store.Conn, ticket_id: str, scope: Scope | None = None) -> Ticket:
        row = await store.lock_ticket_in_scope(conn, ticket_id, scope)
        if row is None:
            raise TicketError(f"ticket {ticket_id} not found", not_found=True)
        return row

    async def reassign(
        self,
        ticket_id: str,
        *,
        actor: str,
        assignee_id: str | None = None,
        grid_id: str | None = None,
        note: str | None = None,
        scope: Scope | None = None,
    ) -> None:
        """Give an open ticket to another worker (reassign) or another grid (transfer, routed there).

        The new assignee must acknowledge again: the ticket goes back to dispatched, its escalation
        restarts from the first step of its frozen policy, and the previous assignment's unsent
        notifications are dropped. With a `scope`, the ticket, the grid and the worker must be in it."""
        action = "transfer" if grid_id is not None else "reassign"
        now = self.clock()
        async with self.db.connection() as conn, conn.transaction():
            row = await self._lock(conn, ticket_id, scope)
            current = row.status
            if current not in OPEN_STATUSES:
                raise TicketError(f"cannot {action} a ticket that is {current.value}")
            if grid_id is not None and not await store.grid_in_scope(conn, grid_id, scope):
                raise TicketError(f"grid {grid_id} not found", invalid=True)
            if assignee_id is not None and not await store.worker_in_scope(conn, assignee_id, scope):
                raise TicketError(f"worker {assignee_id} not found", invalid=True)
            new_grid = grid_id if grid_id is not None else row.grid_id
            if assignee_id is None:
                chain, candidates = await store.routing_candidates(conn, new_grid)
                shifts = await rosters.shifts_of(conn, chain[:1])
                assignee_id = route(chain, candidates, shifts, now).assignee
                if assignee_id is None:
                    raise TicketError(f"nobody to take the ticket in grid {new_grid}", invalid=True)
            if assignee_id == row.assignee_id and new_grid == row.grid_id:
                raise TicketError(f"the ticket is already assigned to {assignee_id}")
            await suppress_notifications(conn, ticket_id, None, f"ticket {action}")
            await store.update_ticket(
                conn,
                ticket_id,
                grid_id=new_grid,
                assignee_id=assignee_id,
                status=TicketStatus.DISPATCHED.value,
                acknowledged_at=None,
                arrived_at=None,
                assignment=row.assignment + 1,
                escalation_step=0,
                escalation_base_at=to_datetime(now),
            )
            await store.add_ticket_event(
                conn,
                ticket_id,
                at=now,
                actor=actor,
                action=action,
                from_status=current.value,
                to_status=TicketStatus.DISPATCHED.value,
                note=note,
                data={
                    "from_assignee": row.assignee_id,
                    "to_assignee": assignee_id,
                    "from_grid": row.grid_id,
                    "to_grid": new_grid,
                },
            )
            ticket = await store.lock_ticket(conn, ticket_id)
            assert ticket is not None
            queued = await advance(conn, ticket, now)
        self._queued(queued)
        self.announce(
            {
                "type": f"ticket.{action}",
                "ticket_id": ticket_id,
                "assignee_id": assignee_id,
                "actor": actor,
                "grid_id": new_grid,
                "from_grid_id": row.grid_id,
                "from_assignee_id": row.assignee_id,
            }
        )

    async def comment(self, ticket_id: str, *, actor: str, note: str, scope: Scope | None = None) -> None:
        """Add a comment to a ticket's history (any status)."""
        now = self.clock()
        async with self.db.connection() as conn, conn.transaction():
            row = await self._lock(conn, ticket_id, scope)
            await store.add_ticket_event(conn, ticket_id, at=now, actor=actor, action="comment", note=note)
        self.announce(
            {
                "type": "ticket.comment",
                "ticket_id": ticket_id,
                "actor": actor,
                "grid_id": row.grid_id,
                "assignee_id": row.assignee_id,
            }
        )

    async def clear_alarms(self, alarm_ids: Sequence[str], *, actor: str, reason: str) -> int:
        """Clear open alarms by hand (a device retired, say), each ticket noting who and why; returns how many."""
        now = self.clock()
        cleared: list[tuple[str, str | None]] = []
        queued = 0
        async with self.db.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT id, grid_id FROM alarms WHERE id = ANY(%s::uuid[]) AND status <> 'cleared' FOR UPDATE",
                (list(alarm_ids),),
            )
            cleared = [(str(r[0]), r[1]) for r in await cur.fetchall()]
            for alarm_id, _grid in cleared:
                await store.clear_alarms(conn, [alarm_id], now, {"cleared_by": actor, "reason": reason})
                ticket_id = await store.ticket_for_alarm(conn, alarm_id)
                if ticket_id:
                    await store.add_ticket_event(
                        conn,
                        ticket_id,
                        at=now,
                        actor=actor,
                        action="alarm_cleared",
                        note=reason,
                        data={"alarm_id": alarm_id},
                    )
                    queued += await self.after_clear(conn, ticket_id, now)
        self._queued(queued)
        for alarm_id, grid in cleared:
            self.announce({"type": "alarm.clear", "alarm_id": alarm_id, "cleared_by": actor, "grid_id": grid})
        return len(cleared)


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
