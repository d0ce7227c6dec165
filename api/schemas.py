"""API shapes, named for their use. Domain values live in whistle.domain; these are the wire forms."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from whistle.domain import Outcome

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


class TicketEventRead(BaseModel):
    at: datetime
    actor: str
    action: str
    from_status: str | None
    to_status: str | None
    note: str | None
    data: dict[str, Any]


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


class TicketNote(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(default=None, max_length=4000)


class TicketResolve(TicketNote):
    outcome: Outcome


class DeadLetterRead(BaseModel):
    id: int
    topic: str
    reason: str
    detail: str
    received_at: datetime
    payload: str
    payload_encoding: str


class DeviceRead(BaseModel):
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


class UnregisteredDeviceRead(BaseModel):
    device_id: str
    device_type: str
    first_seen: datetime
    last_seen: datetime
    last_topic: str
    messages: int


class UsageRead(BaseModel):
    ts: datetime
    total: float | None
    delta: float | None
    interval_ms: int | None
    reset: bool
    gap: bool


class AbsenceCreate(BaseModel):
    """A declared absence: inactivity alerts for the household are suppressed inside it."""

    start: datetime
    end: datetime
    note: str = Field(default="", max_length=500)


class AbsenceRead(BaseModel):
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


class Health(BaseModel):
    status: str
    version: str
    database: str
    roles: list[str]
    details: dict[str, Any] = Field(default_factory=dict)
