"""API shapes, named for their use. Domain values live in whistle.domain; these are the wire forms."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, time
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from alerts.channels.text import KIND_LABEL, SEVERITY_LABEL
from alerts.one_tap import OneTap
from alerts.queries import TicketView
from alerts.rosters import Roster
from alerts.worklist import WorkTicket
from stats.assessment import GridAssessment, Measures, WorkerAssessment
from stats.places import AlarmPlace, BuildingDetail, SeverityCounts, StreetMap
from stats.summary import Summary
from whistle.access import ACCOUNT_ROLES, Role
from whistle.domain import Alarm, AlarmKind, Outcome, TicketEvent
from whistle.privacy import mask_json, mask_phones_in
from whistle.timeutil import to_datetime

ID = r"^[A-Za-z0-9_\-]{1,64}$"


def _text(value: str | None, masked: bool) -> str | None:
    return mask_phones_in(value) if masked and value is not None else value


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next: str | None


class AlarmRead(BaseModel):
    id: str
    kind: str
    severity: str
    status: str
    subject_type: str
    subject_id: str
    household_id: str | None
    building_id: str | None
    grid_id: str | None
    first_seen: datetime
    last_seen: datetime
    detected_at: datetime
    count: int
    evidence: dict[str, Any]

    @classmethod
    def of(cls, a: Alarm, *, masked: bool = False) -> AlarmRead:
        return cls(
            id=a.id,
            kind=a.kind.value,
            severity=a.severity.value,
            status=a.status.value,
            subject_type=a.subject_type.value,
            subject_id=a.subject_id,
            household_id=a.household_id,
            building_id=a.building_id,
            grid_id=a.grid_id,
            first_seen=to_datetime(a.first_seen),
            last_seen=to_datetime(a.last_seen),
            detected_at=to_datetime(a.detected_at),
            count=a.count,
            evidence=mask_json(dict(a.evidence)) if masked else dict(a.evidence),
        )


class TicketEventRead(BaseModel):
    at: datetime
    actor: str
    action: str
    from_status: str | None
    to_status: str | None
    note: str | None
    data: dict[str, Any]

    @classmethod
    def of(cls, e: TicketEvent, *, masked: bool = False) -> TicketEventRead:
        return cls(
            at=to_datetime(e.at),
            actor=e.actor,
            action=e.action,
            from_status=e.from_status,
            to_status=e.to_status,
            note=_text(e.note, masked),
            data=mask_json(dict(e.data)) if masked else dict(e.data),
        )


def _dt(ms: int | None) -> datetime | None:
    return to_datetime(ms) if ms is not None else None


class TicketRead(BaseModel):
    id: str
    kind: str
    severity: str
    alarm_ids: list[str]
    grid_id: str | None
    assignee_id: str | None
    status: str
    escalation_level: int
    created_at: datetime
    acknowledged_at: datetime | None
    arrived_at: datetime | None
    resolved_at: datetime | None
    outcome: str | None
    note: str | None
    history: list[TicketEventRead]
    closed_at: datetime | None = None
    escalation_due_at: datetime | None = None
    code: str | None = None  # the short code an SMS reply acknowledges with
    grid_name: str | None = None  # the registry's names: the grid and the worker the ticket is assigned to
    assignee_name: str | None = None

    @classmethod
    def of(cls, view: TicketView, *, masked: bool = False) -> TicketRead:
        """The wire form; `masked` (a screen) masks phone numbers in notes and event data."""
        t = view.ticket
        return cls(
            id=t.id,
            kind=t.kind.value,
            severity=t.severity.value,
            alarm_ids=list(t.alarm_ids),
            grid_id=t.grid_id,
            assignee_id=t.assignee_id,
            status=t.status.value,
            escalation_level=t.escalation_level,
            created_at=to_datetime(t.created_at),
            acknowledged_at=_dt(t.acknowledged_at),
            arrived_at=_dt(t.arrived_at),
            resolved_at=_dt(t.resolved_at),
            outcome=t.outcome.value if t.outcome else None,
            note=_text(t.note, masked),
            history=[TicketEventRead.of(e, masked=masked) for e in view.history],
            closed_at=_dt(t.closed_at),
            escalation_due_at=_dt(t.escalation_due_at),
            code=str(t.short_code) if t.short_code else None,
            grid_name=view.grid_name,
            assignee_name=view.assignee_name,
        )


class TicketNote(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(default=None, max_length=4000)
    # when the worker tapped it, if their page queued it while offline (recorded as they say; the event's time
    # is when it arrived)
    queued_at: datetime | None = None

    def extra(self) -> dict[str, Any]:
        """What goes into the event's data besides the note."""
        return {"queued_at": self.queued_at.isoformat()} if self.queued_at else {}


class TicketResolve(TicketNote):
    outcome: Outcome


class TicketArrive(TicketNote):
    """On site, with the browser's position when it gave one (WGS-84 degrees, accuracy in metres)."""

    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    accuracy_m: float | None = Field(default=None, ge=0, le=1_000_000)

    @model_validator(mode="after")
    def _both(self) -> TicketArrive:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("give both lat and lon, or neither")
        return self


class TicketReassign(TicketNote):
    """Give the ticket to another worker; they must acknowledge it again."""

    assignee_id: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")


class TicketTransfer(TicketNote):
    """Move the ticket to another grid, routed to its worker on duty unless `assignee_id` is given."""

    grid_id: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    assignee_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_\-]{1,64}$")


class TicketComment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(min_length=1, max_length=4000)
    queued_at: datetime | None = None

    def extra(self) -> dict[str, Any]:
        return {"queued_at": self.queued_at.isoformat()} if self.queued_at else {}


class ShiftWrite(BaseModel):
    """A weekly shift in local time (Asia/Shanghai); `end` not after `start` runs past midnight."""

    model_config = ConfigDict(extra="forbid")
    worker_id: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    weekdays: list[int] = Field(min_length=1, max_length=7, description="ISO weekdays, 1 = Monday")
    start: time
    end: time
    duty: Literal["primary", "backup"] = "primary"

    @model_validator(mode="after")
    def _check(self) -> ShiftWrite:
        if any(d < 1 or d > 7 for d in self.weekdays):
            raise ValueError("weekdays are ISO weekdays, 1 (Monday) to 7 (Sunday)")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("shift times are local wall times (Asia/Shanghai), without an offset")
        return self


class RosterWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shifts: list[ShiftWrite] = Field(max_length=500)


class ShiftRead(BaseModel):
    worker_id: str
    weekday: int
    start: time
    end: time
    duty: str


class RosterRead(BaseModel):
    grid_id: str
    shifts: list[ShiftRead]
    on_duty: list[str]
    backup_on_duty: list[str]

    @classmethod
    def of(cls, r: Roster) -> RosterRead:
        return cls(
            grid_id=r.grid_id,
            shifts=[
                ShiftRead(worker_id=s.worker_id, weekday=s.weekday, start=s.starts, end=s.ends, duty=s.duty.value)
                for s in r.shifts
            ],
            on_duty=r.on_duty,
            backup_on_duty=r.backup_on_duty,
        )


class SilenceCreate(BaseModel):
    """A silence or maintenance window: alarms inside it are recorded, not dispatched."""

    model_config = ConfigDict(extra="forbid")
    scope_type: Literal["device", "building", "grid"]
    scope_id: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    kinds: list[AlarmKind] | None = None
    start: datetime
    end: datetime
    reason: str = Field(default="", max_length=500)
    life_safety: bool = Field(
        default=False,
        description="required (with a reason and at most WHISTLE_LIFE_SAFETY_SILENCE_MAX_HOURS) for a silence "
        "that covers smoke.fire or elevator.trapped, or every kind",
    )

    @model_validator(mode="after")
    def _check(self) -> SilenceCreate:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end need a UTC offset")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class SilenceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    scope_type: str
    scope_id: str
    kinds: list[str] | None
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str
    created_at: datetime
    life_safety: bool = False
    ended_by: str | None = None


class DeadLetterRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    topic: str
    reason: str
    detail: str
    received_at: datetime
    payload: str
    payload_encoding: str


class DeviceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    type: str
    household_id: str | None
    building_id: str | None
    grid_id: str | None
    location: str | None
    last_seen: datetime | None
    online: bool | None
    battery_pct: float | None
    rssi_dbm: float | None
    gateway_id: str | None = None


class UnregisteredDeviceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    device_id: str
    device_type: str
    first_seen: datetime
    last_seen: datetime
    last_topic: str
    messages: int


class UsageRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    ts: datetime
    total: float | None
    delta: float | None
    interval_ms: int | None
    reset: bool
    gap: bool


class AbsenceCreate(BaseModel):
    """A declared absence: inactivity alerts for the household are suppressed inside it."""

    model_config = ConfigDict(extra="forbid")

    start: datetime
    end: datetime
    note: str = Field(default="", max_length=500)


class AbsenceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    household_id: str
    start: datetime
    end: datetime
    note: str
    created_by: str
    created_at: datetime


class RegistryCounts(BaseModel):
    streets: int
    grids: int
    buildings: int
    households: int
    devices: int
    workers: int
    retired: dict[str, list[str]] | None = Field(default=None, description="mode=replace: the ids retired")


class Health(BaseModel):
    status: str
    version: str
    database: str
    roles: list[str]
    details: dict[str, Any] = Field(default_factory=dict)


# -- people and permissions ------------------------------------------------------------------------


class UserCreate(BaseModel):
    """A named account; registry workers need no creation."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=ID)
    name: str = Field(min_length=1, max_length=100)
    role: Role
    grid_id: str | None = Field(default=None, pattern=ID, description="none: every grid")

    @model_validator(mode="after")
    def _check(self) -> UserCreate:
        if self.role not in ACCOUNT_ROLES:
            raise ValueError(
                "named accounts are admin, ops_center, screen or integration; workers come from the registry"
            )
        return self


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    role: str
    grid_id: str | None
    kind: str
    active: bool
    has_password: bool
    active_tokens: int


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field(default="", max_length=100)
    ttl_days: float | None = Field(default=None, gt=0, le=366, description="default: WHISTLE_TOKEN_TTL_DAYS")


class TokenIssued(BaseModel):
    """The token is shown this once; only its hash is kept."""

    token: str
    user_id: str
    expires_at: datetime


class TokensRevoked(BaseModel):
    user_id: str
    revoked: int


class PasswordSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: str = Field(min_length=1, max_length=256)


class SessionCreate(BaseModel):
    """Sign in with a token, or with a user id and password."""

    model_config = ConfigDict(extra="forbid")
    token: str | None = Field(default=None, max_length=200)
    user: str | None = Field(default=None, pattern=ID)
    password: str | None = Field(default=None, max_length=256)

    @model_validator(mode="after")
    def _check(self) -> SessionCreate:
        if (self.token is None) == (self.user is None or self.password is None):
            raise ValueError('sign in with {"token": ...} or with {"user": ..., "password": ...}')
        return self


class ScopeRead(BaseModel):
    all_grids: bool
    grid_ids: list[str]


class MeRead(BaseModel):
    id: str
    name: str
    role: str
    grid_id: str | None
    scope: ScopeRead
    permissions: list[str]
    via: str


class AuditEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    at: datetime
    actor: str
    action: str
    target_type: str
    target_id: str | None
    data: dict[str, Any]


class PersonalDataReadRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    at: datetime
    actor: str
    household_id: str
    ticket_id: str | None
    fields: list[str]
    purpose: str


class ContactRead(BaseModel):
    name: str
    phone: str | None = None
    relation: str | None = None


class TicketContactsRead(BaseModel):
    ticket_id: str
    household_id: str | None
    unit: str
    contacts: list[ContactRead]


class WorkerRead(BaseModel):
    id: str
    name: str
    role: str
    grid_id: str | None
    phone: str | None
    active: bool


class HouseholdRead(BaseModel):
    """A household; its contacts masked (they are read in full only on a ticket, and that read is logged)."""

    id: str
    building_id: str
    grid_id: str | None
    unit: str
    registered_occupants: int
    tags: list[str]
    contacts: list[ContactRead]
    retired: bool
    erased: bool


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500)


class DeviceRetired(BaseModel):
    device_id: str
    alarms_cleared: int


class WorkerOffboarded(BaseModel):
    worker_id: str
    tokens_revoked: int
    reassigned: list[str]
    unassigned: list[str]


class ErasureRead(BaseModel):
    household_id: str
    contacts_erased: int
    notifications_scrubbed: int


# The operations-center screens (stats/) --------------------------------------------------------


def kind_label(kind: str) -> str:
    """The Chinese label of an alarm kind (the kind itself if it has none)."""
    try:
        return KIND_LABEL.get(AlarmKind(kind), kind)
    except ValueError:
        return kind


class SeverityCountsRead(BaseModel):
    critical: int
    major: int
    minor: int
    warning: int
    total: int

    @classmethod
    def of(cls, c: SeverityCounts) -> SeverityCountsRead:
        return cls(total=c.total, **c.as_dict())


class PersonRead(BaseModel):
    id: str
    name: str


class PolygonGeometry(BaseModel):
    type: Literal["Polygon"] = "Polygon"
    coordinates: list[list[tuple[float, float]]]


class PointGeometry(BaseModel):
    type: Literal["Point"] = "Point"
    coordinates: tuple[float, float]


class GridProperties(BaseModel):
    kind: Literal["grid"] = "grid"
    id: str
    name: str
    parent_id: str | None
    level: int
    leaf: bool
    open_alarms: SeverityCountsRead
    worst: str | None
    open_tickets: int
    on_duty: PersonRead | None
    silenced: bool


class BuildingProperties(BaseModel):
    kind: Literal["building"] = "building"
    id: str
    grid_id: str
    address: str
    floors: int | None
    open_alarms: SeverityCountsRead
    worst: str | None
    open_tickets: int
    silenced: bool
    silenced_devices: int


class MapFeature(BaseModel):
    type: Literal["Feature"] = "Feature"
    id: str
    geometry: PolygonGeometry | PointGeometry | None
    properties: GridProperties | BuildingProperties


class ActiveSilenceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    scope_type: str
    scope_id: str
    place: str
    kinds: list[str] | None
    starts_at: datetime
    ends_at: datetime
    reason: str
    building_id: str | None
    grid_id: str | None


class MapRead(BaseModel):
    """A GeoJSON FeatureCollection (RFC 7946): grids as Polygons, buildings as Points, with foreign members."""

    type: Literal["FeatureCollection"] = "FeatureCollection"
    bbox: tuple[float, float, float, float] | None
    coordinate_system: str = Field(description="wgs84 (as registered) or gcj02 (for a Chinese basemap)")
    streets: list[str]
    features: list[MapFeature]
    silences: list[ActiveSilenceRead]

    @classmethod
    def of(cls, m: StreetMap) -> MapRead:
        features: list[MapFeature] = []
        for g in m.grids:
            features.append(
                MapFeature(
                    id=g.id,
                    geometry=PolygonGeometry(coordinates=[g.ring]) if g.ring else None,
                    properties=GridProperties(
                        id=g.id,
                        name=g.name,
                        parent_id=g.parent_id,
                        level=g.level,
                        leaf=g.leaf,
                        open_alarms=SeverityCountsRead.of(g.open_alarms),
                        worst=g.open_alarms.worst,
                        open_tickets=g.open_tickets,
                        on_duty=PersonRead(id=g.on_duty.id, name=g.on_duty.name) if g.on_duty else None,
                        silenced=g.silenced,
                    ),
                )
            )
        for b in m.buildings:
            features.append(
                MapFeature(
                    id=b.id,
                    geometry=PointGeometry(coordinates=b.point) if b.point else None,
                    properties=BuildingProperties(
                        id=b.id,
                        grid_id=b.grid_id,
                        address=b.address,
                        floors=b.floors,
                        open_alarms=SeverityCountsRead.of(b.open_alarms),
                        worst=b.open_alarms.worst,
                        open_tickets=b.open_tickets,
                        silenced=b.silenced,
                        silenced_devices=b.silenced_devices,
                    ),
                )
            )
        return cls(
            bbox=m.bbox,
            coordinate_system=m.crs.value,
            streets=m.streets,
            features=features,
            silences=[ActiveSilenceRead.model_validate(s) for s in m.silences],
        )


class AlarmPlaceRead(BaseModel):
    """An alarm with its place and ticket, as the ticker and a building's card show it."""

    model_config = ConfigDict(from_attributes=True)
    id: str
    kind: str
    kind_label: str
    severity: str
    status: str
    subject_type: str
    subject_id: str
    grid_id: str | None
    grid_name: str | None
    building_id: str | None
    address: str | None
    unit: str | None
    detected_at: datetime
    first_seen: datetime
    last_seen: datetime
    count: int
    silenced: bool
    ticket_id: str | None
    ticket_status: str | None
    assignee_id: str | None
    assignee_name: str | None

    @classmethod
    def of(cls, a: AlarmPlace) -> AlarmPlaceRead:
        return cls.model_validate({**dataclasses.asdict(a), "kind_label": kind_label(a.kind)})


class TickerRead(BaseModel):
    now: datetime = Field(description="the server's wall clock, so a screen can age alarms without trusting its own")
    items: list[AlarmPlaceRead]


class DeviceStatusRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    type: str
    household_id: str | None
    unit: str | None
    location: str | None
    last_seen: datetime | None
    online: bool | None
    battery_pct: float | None
    offline_alarm: bool


class TicketBriefRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    kind: str
    severity: str
    status: str
    assignee_id: str | None
    assignee_name: str | None
    escalation_level: int
    created_at: datetime
    acknowledged_at: datetime | None
    arrived_at: datetime | None
    resolved_at: datetime | None
    outcome: str | None


class BuildingRead(BaseModel):
    id: str
    address: str
    grid_id: str
    grid_name: str | None
    floors: int | None
    location: tuple[float, float] | None
    households: int
    devices: list[DeviceStatusRead]
    open_alarms: list[AlarmPlaceRead]
    tickets: list[TicketBriefRead]
    silences: list[ActiveSilenceRead]

    @classmethod
    def of(cls, b: BuildingDetail) -> BuildingRead:
        return cls(
            id=b.id,
            address=b.address,
            grid_id=b.grid_id,
            grid_name=b.grid_name,
            floors=b.floors,
            location=b.location,
            households=b.households,
            devices=[DeviceStatusRead.model_validate(d) for d in b.devices],
            open_alarms=[AlarmPlaceRead.of(a) for a in b.open_alarms],
            tickets=[TicketBriefRead.model_validate(t) for t in b.tickets],
            silences=[ActiveSilenceRead.model_validate(s) for s in b.silences],
        )


class DeviceHealthRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    type: str
    total: int
    online: int
    offline: int
    never_seen: int
    low_battery: int


class SummaryRead(BaseModel):
    now: datetime
    day_start: datetime
    alarms_today: int
    alarms_today_by_kind: dict[str, int]
    alarms_today_by_severity: dict[str, int]
    open_alarms: int
    open_alarms_by_severity: dict[str, int]
    open_alarms_silenced: int
    open_tickets: int
    open_tickets_by_status: dict[str, int]
    overdue_tickets: int
    tickets_created_today: int
    tickets_resolved_today: int
    mtta_s: float | None = Field(description="mean seconds to the first response of tickets answered today")
    mtt_arrive_s: float | None = Field(description="mean seconds to arrival of tickets that arrived today")
    mttr_s: float | None = Field(description="mean seconds from creation to resolution of tickets resolved today")
    devices: list[DeviceHealthRead]
    devices_online_share: float | None
    low_battery: int
    low_battery_pct: float
    active_silences: int

    @classmethod
    def of(cls, s: Summary) -> SummaryRead:
        heard = sum(d.total - d.never_seen for d in s.devices)
        online = sum(d.online for d in s.devices)
        return cls(
            now=s.now,
            day_start=s.day_start,
            alarms_today=s.alarms_today,
            alarms_today_by_kind=s.alarms_today_by_kind,
            alarms_today_by_severity=s.alarms_today_by_severity,
            open_alarms=s.open_alarms,
            open_alarms_by_severity=s.open_alarms_by_severity,
            open_alarms_silenced=s.open_alarms_silenced,
            open_tickets=s.open_tickets,
            open_tickets_by_status=s.open_tickets_by_status,
            overdue_tickets=s.overdue_tickets,
            tickets_created_today=s.tickets_created_today,
            tickets_resolved_today=s.tickets_resolved_today,
            mtta_s=s.mtta_s,
            mtt_arrive_s=s.mtt_arrive_s,
            mttr_s=s.mttr_s,
            devices=[DeviceHealthRead.model_validate(d) for d in s.devices],
            devices_online_share=round(online / heard, 4) if heard else None,
            low_battery=sum(d.low_battery for d in s.devices),
            low_battery_pct=s.low_battery_pct,
            active_silences=s.active_silences,
        )


class MeasuresRead(BaseModel):
    """A set of tickets assessed: counts, on-time shares (of those assessed), mean times in seconds."""

    tickets: int
    open: int
    ack_assessed: int
    ack_on_time: int
    ack_on_time_share: float | None
    arrive_assessed: int
    arrive_on_time: int
    arrive_on_time_share: float | None
    mtta_s: float | None
    mtt_arrive_s: float | None
    mttr_s: float | None
    resolved: int
    false_alarms: int
    false_alarm_share: float | None

    @classmethod
    def of(cls, m: Measures) -> MeasuresRead:
        return cls(
            tickets=m.tickets,
            open=m.open,
            ack_assessed=m.ack_assessed,
            ack_on_time=m.ack_on_time,
            ack_on_time_share=m.ack_on_time_share,
            arrive_assessed=m.arrive_assessed,
            arrive_on_time=m.arrive_on_time,
            arrive_on_time_share=m.arrive_on_time_share,
            mtta_s=m.mtta_s,
            mtt_arrive_s=m.mtt_arrive_s,
            mttr_s=m.mttr_s,
            resolved=m.resolved,
            false_alarms=m.false_alarms,
            false_alarm_share=m.false_alarm_share,
        )


class GridAssessmentRead(MeasuresRead):
    """A grid's row: the measures of its whole subtree, and of its own tickets in `own`."""

    grid_id: str
    name: str
    parent_id: str | None
    level: int
    own: MeasuresRead

    @classmethod
    def of_grid(cls, g: GridAssessment) -> GridAssessmentRead:
        return cls(
            grid_id=g.grid_id,
            name=g.name,
            parent_id=g.parent_id,
            level=g.level,
            own=MeasuresRead.of(g.own),
            **MeasuresRead.of(g.total).model_dump(),
        )


class WorkerAssessmentRead(MeasuresRead):
    worker_id: str
    name: str
    role: str | None
    grid_id: str | None
    grid_name: str | None

    @classmethod
    def of_worker(cls, w: WorkerAssessment) -> WorkerAssessmentRead:
        return cls(
            worker_id=w.worker_id,
            name=w.name,
            role=w.role,
            grid_id=w.grid_id,
            grid_name=w.grid_name,
            **MeasuresRead.of(w.measures).model_dump(),
        )


class AssessmentRead(BaseModel, Generic[T]):
    since: datetime
    until: datetime
    items: list[T]


class TrendPointRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    start: datetime
    total: int
    critical: int
    major: int
    minor: int
    warning: int


class TrendsRead(BaseModel):
    bucket: str
    kind: str | None
    items: list[TrendPointRead]


class ScreenConfigRead(BaseModel):
    """What the screen page needs to know about this deployment."""

    tiles_url: str | None = Field(description="a self-hosted XYZ tile URL template, {z}/{x}/{y}; none: no basemap")
    tiles_crs: str = Field(description="the basemap's coordinate system: gcj02 or wgs84")
    poll_s: float
    low_battery_pct: float


# -- jobs and the pipeline ------------------------------------------------------------------------


class JobCreate(BaseModel):
    """Days to feature and judge (local dates; open ends: every stored day, up to yesterday)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    first: date | None = Field(default=None, alias="from")
    last: date | None = Field(default=None, alias="to")


class JobRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    first_day: date | None
    last_day: date | None
    requested_by: str
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    status: str
    result: dict[str, Any]


class GroupLagRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    group: str
    topic: str
    records: int
    lag: int


class PipelineRead(BaseModel):
    groups: list[GroupLagRead]
    lag: int
    dead_letters: int


# -- the grid worker's page (/m/) --------------------------------------------------------------------------------


class DevicePlaceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    type: str
    location: str | None


class PlaceRead(BaseModel):
    """Where a ticket is, for the worker at the door."""

    model_config = ConfigDict(from_attributes=True)
    building_id: str | None
    address: str
    floors: int | None
    location: tuple[float, float] | None  # WGS-84 (lon, lat)
    grid_id: str | None
    grid_name: str | None
    household_id: str | None
    unit: str | None
    lone_elder: bool
    has_contacts: bool  # read them with GET /tickets/{id}/contacts (every read logged)
    devices: list[DevicePlaceRead]


class WorkTicketRead(BaseModel):
    """A ticket with its place and its evidence in words (the worker's page)."""

    ticket: TicketRead
    kind_label: str
    severity_label: str
    place: PlaceRead
    evidence: list[str]

    @classmethod
    def of(cls, w: WorkTicket, *, masked: bool = False) -> WorkTicketRead:
        t = w.view.ticket
        return cls(
            ticket=TicketRead.of(w.view, masked=masked),
            kind_label=KIND_LABEL.get(t.kind, t.kind.value),
            severity_label=SEVERITY_LABEL[t.severity],
            place=PlaceRead.model_validate(w.place),
            evidence=list(w.evidence),
        )


class WorkListRead(BaseModel):
    items: list[WorkTicketRead]
    now: datetime  # the server's wall clock: the page ages tickets by it


class ArrivalRead(BaseModel):
    """How the arrival compared with the building (also in the ticket's history)."""

    distance_m: float | None
    radius_m: float
    within_radius: bool | None  # None: no position given, or the building has no location
    located: bool


class TicketArrived(TicketRead):
    arrival: ArrivalRead | None = None


class MyNotificationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    ticket_id: str | None
    kind: str
    severity: str
    title: str
    body: str
    created_at: datetime
    status: str
    channel: str | None
    seen_at: datetime | None


class MyNotificationsRead(BaseModel):
    items: list[MyNotificationRead]
    now: datetime


class ReceiptCreate(BaseModel):
    """The page showed these notifications (ids as they came: live feed, push, the list)."""

    model_config = ConfigDict(extra="forbid")
    ids: list[str] = Field(min_length=1, max_length=100)
    via: Literal["page", "push_click", "live"] = "page"


class ReceiptsRead(BaseModel):
    confirmed: int  # seen for the first time now


class PushKeyRead(BaseModel):
    public_key: str | None  # the applicationServerKey for pushManager.subscribe(); None: Web Push not configured


class PushSubscriptionCreate(BaseModel):
    """PushSubscription.toJSON() of the browser."""

    endpoint: str = Field(max_length=1000)
    keys: dict[str, str]
    expirationTime: float | None = None


class PushSubscriptionRead(BaseModel):
    endpoint: str
    created: bool


class OneTapRead(BaseModel):
    """What a one-tap link shows: that one ticket, and whether it can still be acknowledged with it."""

    ticket_id: str
    code: str | None
    kind: str
    kind_label: str
    severity: str
    severity_label: str
    status: str
    created_at: datetime
    acknowledged_at: datetime | None
    address: str
    unit: str | None
    grid_name: str | None
    evidence: list[str]
    worker_id: str
    worker_name: str
    expires_at: datetime
    can_ack: bool

    @classmethod
    def of(cls, tap: OneTap) -> OneTapRead:
        w = tap.work
        t = w.view.ticket
        return cls(
            ticket_id=t.id,
            code=str(t.short_code) if t.short_code else None,
            kind=t.kind.value,
            kind_label=KIND_LABEL.get(t.kind, t.kind.value),
            severity=t.severity.value,
            severity_label=SEVERITY_LABEL[t.severity],
            status=t.status.value,
            created_at=to_datetime(t.created_at),
            acknowledged_at=_dt(t.acknowledged_at),
            address=w.place.address,
            unit=w.place.unit,
            grid_name=w.place.grid_name,
            evidence=list(w.evidence),
            worker_id=tap.worker_id,
            worker_name=tap.worker_name,
            expires_at=to_datetime(tap.expires_at),
            can_ack=t.status.value == "dispatched",
        )
