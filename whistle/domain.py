"""The values that flow through the system: readings, detections, dead letters, alarms, tickets.

Every package imports this module; it imports none of them. Event times are integer
milliseconds since the Unix epoch (UTC) so that the hot paths never build datetimes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class DeviceType(StrEnum):
    SMOKE = "smoke"
    ELEVATOR = "elevator"
    EBIKE = "ebike"
    WATER = "water"
    POWER = "power"


class Channel(StrEnum):
    DATA = "data"
    EVENT = "event"
    STATUS = "status"


class Severity(StrEnum):
    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    WARNING = "warning"

    @property
    def rank(self) -> int:
        """0 for critical, 3 for warning: lower is more urgent."""
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.CRITICAL: 0, Severity.MAJOR: 1, Severity.MINOR: 2, Severity.WARNING: 3}


class AlarmKind(StrEnum):
    SMOKE_FIRE = "smoke.fire"
    SMOKE_FAULT = "smoke.fault"
    SMOKE_TAMPER = "smoke.tamper"
    SMOKE_LOW_BATTERY = "smoke.low_battery"
    ELEVATOR_TRAPPED = "elevator.trapped"
    ELEVATOR_FAULT = "elevator.fault"
    ELEVATOR_EBIKE = "elevator.ebike"
    EBIKE_INDOOR_CHARGING = "ebike.indoor_charging"
    GROUP_RENTAL_SUSPECTED = "household.group_rental_suspected"
    LONE_ELDER_INACTIVE = "household.lone_elder_inactive"
    WATER_CONTINUOUS_FLOW = "water.continuous_flow"
    DEVICE_OFFLINE = "device.offline"
    # Extensions (CONTRACT.md allows more kinds). An incident grouping the device.offline alarms of one
    # building or gateway that went quiet together (alerts.storms); the system's own health: a
    # notification cap reached (alerts.caps).
    DEVICE_MASS_OFFLINE = "device.mass_offline"
    SYSTEM_NOTIFICATION_CAP = "system.notification_cap"
    # The service watching itself (alerts.selfcheck): a role with no live process, a stage falling behind,
    # devices' messages waiting at the endpoint, a spike of refused input, the database or the broker away.
    SYSTEM_ROLE_DOWN = "system.role_down"
    SYSTEM_LAG = "system.lag"
    SYSTEM_INGEST_BACKLOG = "system.ingest_backlog"
    SYSTEM_DEAD_LETTERS = "system.dead_letters"
    SYSTEM_DATABASE = "system.database_unreachable"
    SYSTEM_BROKER = "system.broker_unreachable"


# Kinds that are never grouped under an incident, inhibited or held back by a notification cap.
LIFE_SAFETY_KINDS: frozenset[AlarmKind] = frozenset({AlarmKind.SMOKE_FIRE, AlarmKind.ELEVATOR_TRAPPED})


DEFAULT_SEVERITY: Mapping[AlarmKind, Severity] = {
    AlarmKind.SMOKE_FIRE: Severity.CRITICAL,
    AlarmKind.SMOKE_FAULT: Severity.MINOR,
    AlarmKind.SMOKE_TAMPER: Severity.MAJOR,
    AlarmKind.SMOKE_LOW_BATTERY: Severity.WARNING,
    AlarmKind.ELEVATOR_TRAPPED: Severity.CRITICAL,
    AlarmKind.ELEVATOR_FAULT: Severity.MAJOR,
    AlarmKind.ELEVATOR_EBIKE: Severity.WARNING,
    AlarmKind.EBIKE_INDOOR_CHARGING: Severity.MAJOR,
    AlarmKind.GROUP_RENTAL_SUSPECTED: Severity.MINOR,
    AlarmKind.LONE_ELDER_INACTIVE: Severity.MAJOR,
    AlarmKind.WATER_CONTINUOUS_FLOW: Severity.MINOR,
    AlarmKind.DEVICE_OFFLINE: Severity.WARNING,
    AlarmKind.DEVICE_MASS_OFFLINE: Severity.MAJOR,
    AlarmKind.SYSTEM_NOTIFICATION_CAP: Severity.MAJOR,
    AlarmKind.SYSTEM_ROLE_DOWN: Severity.MAJOR,
    AlarmKind.SYSTEM_LAG: Severity.MAJOR,
    AlarmKind.SYSTEM_INGEST_BACKLOG: Severity.MAJOR,
    AlarmKind.SYSTEM_DEAD_LETTERS: Severity.MINOR,
    AlarmKind.SYSTEM_DATABASE: Severity.MAJOR,
    AlarmKind.SYSTEM_BROKER: Severity.MAJOR,
}


class SubjectType(StrEnum):
    DEVICE = "device"
    HOUSEHOLD = "household"
    BUILDING = "building"
    GATEWAY = "gateway"  # a gateway or concentrator the registry names (devices.gateway_id)
    SYSTEM = "system"  # the service itself (system.* kinds)


class DetectionAction(StrEnum):
    RAISE = "raise"
    CLEAR = "clear"


class AlarmStatus(StrEnum):
    ACTIVE = "active"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"


class TicketStatus(StrEnum):
    DISPATCHED = "dispatched"
    ACKNOWLEDGED = "acknowledged"
    ON_SITE = "on_site"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Outcome(StrEnum):
    CONFIRMED = "confirmed"
    FALSE_ALARM = "false_alarm"
    DUPLICATE = "duplicate"


class WorkerRole(StrEnum):
    GRID_WORKER = "grid_worker"
    GRID_LEADER = "grid_leader"
    STREET_CENTER = "street_center"
    PROPERTY = "property"
    ELEVATOR_MAINTAINER = "elevator_maintainer"


@dataclass(frozen=True, slots=True)
class Reading:
    """One validated device message, bound to where the device is installed."""

    device_id: str
    device_type: DeviceType
    channel: Channel
    ts: int
    received_at: int
    values: Mapping[str, Any]
    seq: int | None = None
    household_id: str | None = None
    building_id: str | None = None
    grid_id: str | None = None
    # The collector that put it on the bus (its name): the rules hold their timers until every collector
    # feeding a partition has reached the time (`rules.processor`, source watermarks). None off the bus.
    source: str | None = None
    # It came in a `{"batch": [...]}` message: its device uploads buffered readings (the offline rule then
    # judges it by its uploads, not by each reading).
    batched: bool = False

    @property
    def key(self) -> str:
        """The partition key: the household if any, else the building, else the device."""
        return self.household_id or self.building_id or self.device_id

    @property
    def site_key(self) -> str:
        """The partition key of the priority lane: the building, so one building's detectors meet."""
        return self.building_id or self.household_id or self.device_id


@dataclass(frozen=True, slots=True)
class Detection:
    """What a rule concluded: raise or clear an alarm of `kind` on a subject, with its evidence."""

    kind: AlarmKind
    severity: Severity
    subject_type: SubjectType
    subject_id: str
    ts: int
    action: DetectionAction = DetectionAction.RAISE
    evidence: Mapping[str, Any] = field(default_factory=dict)
    household_id: str | None = None
    building_id: str | None = None
    grid_id: str | None = None
    source_id: str = ""

    @property
    def detection_id(self) -> str:
        """A stable id: the same detection replayed after a restart has the same id."""
        raw = f"{self.kind}|{self.subject_type}|{self.subject_id}|{self.action}|{self.ts}|{self.source_id}"
        return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that was not accepted, kept with the reason why."""

    topic: str
    reason: str
    detail: str
    payload: bytes
    received_at: int


@dataclass(frozen=True, slots=True)
class Alarm:
    id: str
    kind: AlarmKind
    severity: Severity
    status: AlarmStatus
    subject_type: SubjectType
    subject_id: str
    household_id: str | None
    building_id: str | None
    grid_id: str | None
    first_seen: int
    last_seen: int
    detected_at: int
    count: int
    evidence: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Ticket:
    """A work order (工单): who must act on which alarms, where it stands, and its frozen escalation."""

    id: str
    kind: AlarmKind
    severity: Severity
    grid_id: str | None
    assignee_id: str | None
    status: TicketStatus
    escalation_level: int
    created_at: int
    acknowledged_at: int | None = None
    arrived_at: int | None = None
    resolved_at: int | None = None
    closed_at: int | None = None
    outcome: Outcome | None = None
    note: str | None = None
    household_id: str | None = None
    building_id: str | None = None
    alarm_ids: tuple[str, ...] = ()
    policy: Mapping[str, Any] = field(default_factory=dict)  # the escalation policy frozen at creation (JSON)
    escalation_step: int = 0  # index of the next step of the policy
    escalation_due_at: int | None = None  # when that step is due; None: nothing more to do
    escalation_base_at: int | None = None  # the time the steps count from (creation, or the last reassignment)
    assignment: int = 0  # bumped by every reassignment or transfer
    short_code: int | None = None  # what an SMS reply names (回复 1042 接单); None on tickets older than codes


@dataclass(frozen=True, slots=True)
class TicketEvent:
    """One entry of a ticket's audit trail: who did what, when, from which status to which."""

    at: int
    actor: str
    action: str
    from_status: str | None = None
    to_status: str | None = None
    note: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
