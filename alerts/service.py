"""Applying detections and ticket actions: decide (pure), then commit in one transaction, then announce.

Announcements (the live feed) go out only after the transaction commits, so nothing is announced
that the database does not hold. Notifications are written to the outbox in the same transaction
as the ticket change and sent after it commits (alerts.outbox). A `device.offline` alarm may be held
or grouped under an incident of its building or gateway instead of dispatched (alerts.storms).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg

from alerts import rosters, silences, store, storms
from alerts.arrival import ArrivalCheck, Position
from alerts.arrival import check as check_arrival
from alerts.channels.live import WebSocketChannel
from alerts.escalation import policy_for
from alerts.lifecycle import Change, Cleared, ReopenPolicy, decide, group_of
from alerts.notify import SYSTEM, advance, policy_of, reached_statuses
from alerts.outbox import suppress_notifications
from alerts.routing import route
from alerts.storms import StormPolicy, StormScope
from whistle.access import Scope
from whistle.bus import TOPIC_DETECTIONS, Bus, Record, TopicPartition
from whistle.domain import (
    Alarm,
    AlarmKind,
    Detection,
    DetectionAction,
    Outcome,
    Severity,
    SubjectType,
    Ticket,
    TicketStatus,
)
from whistle.errors import ServiceError, uuid_text
from whistle.retry import TRANSIENT, Backoff, Stopped, until_done
from whistle.serde import decode_detection
from whistle.store.db import Database
from whistle.store.writers import insert_bus_dead_letters
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
    grouped: bool = False  # joined the open ticket of a related alarm, or an incident (alerts.storms)
    queued: int = 0  # notifications written to the outbox
    held: bool = False  # a device.offline alarm waiting to see whether its building or gateway goes quiet
    incident_id: str | None = None  # the incident alarm it was grouped under
    announcements: tuple[Mapping[str, Any], ...] = ()  # more to announce after commit (an incident opened)


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


def _as_detection(a: Alarm) -> Detection:
    """A held alarm as the detection that opened it, to dispatch it after its wait."""
    return Detection(
        kind=a.kind,
        severity=a.severity,
        subject_type=a.subject_type,
        subject_id=a.subject_id,
        ts=a.first_seen,
        action=DetectionAction.RAISE,
        evidence=a.evidence,
        household_id=a.household_id,
        building_id=a.building_id,
        grid_id=a.grid_id,
        source_id=f"{a.subject_id}:{a.first_seen}",
    )


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
    storm_policy: StormPolicy | None = field(default_factory=StormPolicy)  # None: each offline alarm alone
    reopen: ReopenPolicy = field(default_factory=ReopenPolicy)  # which alarms reopen after their rule's clear

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
            except (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected):
                # Another worker opened the same alarm (or incident) concurrently; the retry sees it.
                if attempt == 2:
                    raise
        self._queued(result.queued)
        for event in result.announcements:
            self.announce(event)
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
                    "held": result.held,
                    "incident_id": result.incident_id,
                }
            )
            if result.ticket_id and result.change in (Change.OPEN, Change.REOPEN) and not result.incident_id:
                self.announce(
                    {
                        "type": "ticket.updated"
                        if result.grouped or result.change is Change.REOPEN
                        else "ticket.created",
                        "ticket_id": result.ticket_id,
                        "assignee_id": result.assignee_id,
                        "kind": d.kind.value,
                        "grid_id": d.grid_id,
                    }
                )
        return result

    async def _dispatch(
        self, conn: store.Conn, d: Detection, alarm_id: str, severity: Severity, now: int, *, hold: bool = True
    ) -> Applied:
        """Open a ticket for a new alarm (or join a related one or an incident), unless a silence covers it."""
        chain, candidates = await store.routing_candidates(conn, d.grid_id)
        silence = await silences.active_silence(
            conn, kind=d.kind.value, devices=_device_ids(d), building_id=d.building_id, grids=chain, at=now
        )
        if silence is not None:
            await silences.set_alarm_silence(conn, alarm_id, silence)
            return Applied(Change.OPEN, alarm_id, silenced=True)
        storm = self.storm_policy
        if storm is not None and d.kind is AlarmKind.DEVICE_OFFLINE and d.subject_type is SubjectType.DEVICE:
            placed = await self._storm(conn, d, alarm_id, now, storm, hold=hold)
            if placed is not None:
                return placed
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

    async def _storm(
        self, conn: store.Conn, d: Detection, alarm_id: str, now: int, policy: StormPolicy, *, hold: bool
    ) -> Applied | None:
        """Group an offline alarm under its building's or gateway's incident, open one, or hold it.
        None: dispatch it on its own."""
        scopes = await storms.scopes_of(conn, d.subject_id, d.building_id)
        await storms.lock_scopes(conn, scopes)
        incident = await storms.open_incident(conn, scopes)
        announcements: tuple[Mapping[str, Any], ...] = ()
        queued = 0
        if incident is None:
            for scope in scopes:
                offline, total = await storms.count_offline(conn, scope)
                if offline >= policy.threshold(total):
                    incident, announcements, queued = await self._open_incident(conn, d, scope, offline, total, now)
                    break
        if incident is not None:
            await storms.join(conn, incident, alarm_id, device_id=d.subject_id, now=now)
            ticket = await store.lock_ticket(conn, incident.ticket_id) if incident.ticket_id else None
            return Applied(
                Change.OPEN,
                alarm_id,
                incident.ticket_id,
                ticket.assignee_id if ticket else None,
                grouped=True,
                incident_id=incident.alarm_id,
                queued=queued,
                announcements=announcements,
            )
        if hold and policy.wait_s > 0:
            await storms.hold(conn, alarm_id, now + int(policy.wait_s * 1000))
            return Applied(Change.OPEN, alarm_id, held=True)
        return None

    async def _open_incident(
        self, conn: store.Conn, d: Detection, scope: StormScope, offline: int, total: int, now: int
    ) -> tuple[storms.Incident, tuple[Mapping[str, Any], ...], int]:
        """A device.mass_offline alarm on the scope, dispatched as one ticket, with the scope's held alarms."""
        incident = Detection(
            kind=AlarmKind.DEVICE_MASS_OFFLINE,
            severity=Severity.MAJOR,
            subject_type=scope.type,
            subject_id=scope.id,
            ts=d.ts,
            evidence={
                "scope": scope.type.value,
                "devices_offline": offline,
                "devices_in_scope": total,
                "first_device": d.subject_id,
                "why": "devices of one building or gateway went quiet together",
            },
            household_id=None,
            building_id=d.building_id,
            grid_id=d.grid_id,
            source_id=f"storm:{d.subject_id}:{d.ts}",
        )
        incident_id = await store.insert_alarm(conn, incident, incident.severity, now)
        await store.mark_applied(conn, incident.detection_id, incident_id)
        applied = await self._dispatch(conn, incident, incident_id, incident.severity, now)
        opened = storms.Incident(incident_id, applied.ticket_id, AlarmKind.DEVICE_MASS_OFFLINE)
        await storms.adopt(conn, scope, opened, now=now)
        said: list[Mapping[str, Any]] = [
            {
                "type": "alarm.open",
                "alarm_id": incident_id,
                "kind": incident.kind.value,
                "severity": incident.severity.value,
                "subject_id": scope.id,
                "grid_id": incident.grid_id,
                "silenced": applied.silenced,
            }
        ]
        if applied.ticket_id:
            said.append(
                {
                    "type": "ticket.created",
                    "ticket_id": applied.ticket_id,
                    "assignee_id": applied.assignee_id,
                    "kind": incident.kind.value,
                }
            )
        return opened, tuple(said), applied.queued

    async def release_held(self, *, limit: int = 200) -> int:
        """Dispatch the held offline alarms whose wait is over: under an incident if one formed, else
        each on its own; a held alarm cleared meanwhile (its device came back) makes no ticket."""
        now = self.clock()
        queued = 0
        released: list[Applied] = []
        async with self.db.connection() as conn, conn.transaction():
            for alarm_id in await storms.take_due(conn, now, limit):
                alarm = await store.lock_alarm(conn, alarm_id)
                if alarm is None or alarm.status.value == "cleared":
                    continue
                applied = await self._dispatch(conn, _as_detection(alarm), alarm_id, alarm.severity, now, hold=False)
                queued += applied.queued
                released.append(applied)
        self._queued(queued)
        for a in released:
            for event in a.announcements:
                self.announce(event)
            if a.ticket_id and not a.grouped:
                self.announce({"type": "ticket.created", "ticket_id": a.ticket_id, "assignee_id": a.assignee_id})
        return len(released)

    async def _apply_once(self, d: Detection) -> Applied:
        now = self.clock()
        async with self.db.connection() as conn, conn.transaction():
            if await store.detection_applied(conn, d.detection_id):
                return Applied(Change.IGNORE, None, duplicate=True)
            existing = await store.lock_open_alarm(conn, d)
            cleared = None
            if existing is None and d.action is DetectionAction.RAISE and self.reopen.applies(d.kind):
                cleared = await store.last_cleared_alarm(conn, d)
            decision = decide(d, existing, cleared, self.reopen)
            if decision.change is Change.IGNORE:
                return Applied(Change.IGNORE, None)
            if decision.change is Change.REOPEN:
                assert cleared is not None
                return await self._reopen(conn, d, cleared, decision.severity, now)
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
            await store.clear_alarms(conn, [existing.id], now, {"cleared_by": "rule", **dict(d.evidence)}, seen=d.ts)
            incident = await storms.incident_back(conn, existing.id)
            if incident is not None:  # the last device of a storm is back: the incident is over
                await store.clear_alarms(conn, [incident], now, {"cleared_by": "devices_back"})
            if open_ticket:
                await store.add_ticket_event(
                    conn, open_ticket, at=now, actor=SYSTEM, action="alarm_cleared", data={"alarm_id": existing.id}
                )
                queued = await self.after_clear(conn, open_ticket, now)
            await store.mark_applied(conn, d.detection_id, existing.id)
            return Applied(decision.change, existing.id, open_ticket, queued=queued)

    async def _reopen(self, conn: store.Conn, d: Detection, cleared: Cleared, severity: Severity, now: int) -> Applied:
        """The alarm its rule cleared a while ago is raised again: open it again and let its ticket go on, with
        its history, instead of a new alarm and ticket (no flapping reaches a worker)."""
        alarm_id = cleared.alarm.id
        ticket_id = await store.ticket_for_alarm(conn, alarm_id)
        ticket = await store.lock_ticket(conn, ticket_id) if ticket_id else None
        acked = ticket is not None and ticket.status is not TicketStatus.DISPATCHED
        await store.reopen_alarm(conn, cleared, d, severity, acknowledged=acked)
        await store.mark_applied(conn, d.detection_id, alarm_id)
        if ticket is None:  # it had none (silenced, held): dispatch it now as a new one would be
            applied = await self._dispatch(conn, d, alarm_id, severity, now)
            return replace(applied, change=Change.REOPEN)
        after_s = round((d.ts - (cleared.cleared_seen or d.ts)) / 1000)
        await store.add_ticket_event(
            conn,
            ticket.id,
            at=now,
            actor=SYSTEM,
            action="alarm_reopened",
            data={"alarm_id": alarm_id, "kind": d.kind.value, "after_clear_s": after_s, "severity": severity.value},
        )
        if severity.rank < ticket.severity.rank:
            await store.update_ticket(conn, ticket.id, severity=severity.value)
        queued = await self._resume(conn, ticket, now)
        return Applied(Change.REOPEN, alarm_id, ticket.id, ticket.assignee_id, queued=queued)

    async def _resume(self, conn: store.Conn, ticket: Ticket, now: int) -> int:
        """A ticket whose alarms were all cleared stopped escalating; with one open again it goes on from the step
        it had reached, that step's delay counted from now (nothing overdue fires at once: the people who were
        told are told nothing new until the ticket is really left unanswered)."""
        steps = policy_of(ticket).steps
        i = ticket.escalation_step
        if 0 < i <= len(steps):
            base = now - steps[i - 1].after_s * 1000
            if ticket.escalation_base_at is None or base > ticket.escalation_base_at:
                await store.update_ticket(conn, ticket.id, escalation_base_at=to_datetime(base))
        fresh = await store.lock_ticket(conn, ticket.id)
        return await advance(conn, fresh, now) if fresh else 0

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
        position: Position | None = None,
        radius_m: float = 200.0,
        extra: Mapping[str, Any] | None = None,
        assignee: str | None = None,
    ) -> ArrivalCheck | None:
        """Move a ticket along (ack, arrive, resolve, close), recording who, when and why.

        With a `scope`, a ticket outside it is not found (the caller's part of the street, whistle.access).
        An arrival is checked against the building's location (`position`, within `radius_m`: alerts.arrival)
        and recorded either way; the check is returned. `extra` goes into the event's data (how the action
        came: a one-tap link, an SMS reply); `assignee` refuses the action unless the ticket is assigned to them."""
        allowed, target, stamp = TRANSITIONS[action]
        now = self.clock()
        arrival: ArrivalCheck | None = None
        async with self.db.connection() as conn, conn.transaction():
            row = await self._lock(conn, ticket_id, scope)
            current = row.status
            if assignee is not None and row.assignee_id != assignee:
                raise TicketError(f"ticket {ticket_id} is not assigned to {assignee}", forbidden=True)
            if current not in allowed:
                raise TicketError(f"cannot {action} a ticket that is {current.value}")
            columns: dict[str, Any] = {stamp: to_datetime(now)}
            if action == "resolve":
                if outcome is None:
                    raise TicketError("resolve needs an outcome: confirmed, false_alarm or duplicate")
                columns.update(outcome=outcome.value, note=note)
            data: dict[str, Any] = {"outcome": outcome.value} if outcome else {}
            if action == "arrive":
                arrival = check_arrival(
                    position, await store.location_of(conn, row.building_id, row.household_id), radius_m
                )
                data.update(arrival.to_json())
            data.update(extra or {})
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
                data=data or None,
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
        return arrival

    async def _lock(self, conn: store.Conn, ticket_id: str, scope: Scope | None = None) -> Ticket:
        row = await store.lock_ticket_in_scope(conn, uuid_text(ticket_id, "ticket"), scope)
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

    async def comment(
        self,
        ticket_id: str,
        *,
        actor: str,
        note: str,
        scope: Scope | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Add a comment to a ticket's history (any status); `extra` goes into the event's data."""
        now = self.clock()
        async with self.db.connection() as conn, conn.transaction():
            row = await self._lock(conn, ticket_id, scope)
            await store.add_ticket_event(
                conn, ticket_id, at=now, actor=actor, action="comment", note=note, data=extra or None
            )
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
    """Consumes detections from the bus and applies them.

    A detection that cannot be decoded or applied (a bug, a value the database refuses) is recorded in
    `bus_dead_letters` with its topic, offset and error and skipped, so one bad record never stops the
    role; an outage (the database or the bus unreachable) is waited out, retrying the same record."""

    def __init__(self, bus: Bus, service: AlertService, *, group: str = "whistle-alerts") -> None:
        self.bus = bus
        self.service = service
        self.group = group
        self.applied = 0
        self.poison = 0
        self.outages = 0

    async def _apply(self, rec: Record, stop: asyncio.Event) -> None:
        try:
            d = decode_detection(rec.value)
        except Exception as exc:
            await self._refuse(rec, exc, stop)
            return
        backoff = Backoff()
        while True:
            try:
                await self.service.apply(d)
                return
            except TRANSIENT as exc:
                self.outages += 1
                if stop.is_set():
                    raise Stopped("applying a detection") from exc
                log.warning("applying detection %s: %s (again in %.1f s)", d.detection_id, exc, backoff.delay)
                await backoff.wait(stop)
            except Exception as exc:
                if backoff.failures >= 2:
                    await self._refuse(rec, exc, stop)
                    return
                log.warning("applying detection %s failed (%s); trying again", d.detection_id, exc)
                await backoff.wait(stop)

    async def _refuse(self, rec: Record, exc: Exception, stop: asyncio.Event) -> None:
        log.error("detection at %s/%d offset %d refused: %s", rec.topic, rec.partition, rec.offset, exc)
        item = [(rec, f"{type(exc).__name__}: {exc}")]

        async def write() -> None:
            async with self.service.db.connection() as conn:
                await insert_bus_dead_letters(conn, self.group, item)

        await until_done("recording a refused detection", write, stop=stop)
        self.poison += 1

    async def run(self, stop: asyncio.Event) -> None:
        consumer = self.bus.consumer(self.group, [TOPIC_DETECTIONS])
        await until_done(f"joining group {self.group}", consumer.start, stop=stop)
        backoff = Backoff()
        try:
            while not stop.is_set():
                try:
                    batches = await consumer.getmany(timeout_ms=250, max_records=500)
                    offsets: dict[TopicPartition, int] = {}
                    for tp, records in batches.items():
                        for rec in records:
                            await self._apply(rec, stop)
                            self.applied += 1
                            offsets[tp] = rec.offset + 1
                    if offsets:
                        await until_done(
                            "committing detections", functools.partial(consumer.commit, offsets), stop=stop
                        )
                    backoff.succeeded()
                except Stopped:
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the bus itself failed (e.g. the durable log's database is away)
                    self.outages += 1
                    log.warning("alerts: reading detections failed: %s (again in %.1f s)", exc, backoff.delay)
                    await backoff.wait(stop)
        finally:
            await consumer.stop()
