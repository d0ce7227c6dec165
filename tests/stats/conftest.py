"""A small street with polygons and one evening of tickets, built through the alert service on a real PostgreSQL.

The clock is the service's own (`AlertService(clock=...)`), moved by hand so every time is exact:

| ticket | alarm (building, grid) | assignee | what happened (seconds after it was created) |
|---|---|---|---|
| A | fire, RJ-B0001, M01, at T0 | W-09 | ack 60, arrive 600, resolved confirmed 1800: on time twice |
| B | fire, RJ-B0002, M02, at T0+100 | W-LEAD | ack 300 (late), arrive 1000 (late), resolved false_alarm 2000 |
| C | elevator.fault, RJ-B0002, at T0+200 | W-LEAD | nothing: its 900 s ack deadline passed, open (overdue) |
| D | device.offline SM-0003, RJ-B0002, at T0+300 | W-LEAD | nothing: a warning has no deadline |
| E | fire, RJ-B0001, at T0+2000 | W-09 | the alarm cleared itself at 60 s: exempt from both deadlines |

and NOW = T0+3200. A silence covers RJ-B0002 for elevator.ebike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import pytest

from alerts import silences
from alerts.service import AlertService
from api.app import create_app
from api.deps import ApiContext
from tests.helpers import screen_registry
from whistle.domain import DEFAULT_SEVERITY, AlarmKind, Detection, DetectionAction, Outcome, SubjectType
from whistle.registry import import_registry, parse_registry
from whistle.store.db import Database
from whistle.timeutil import to_datetime

T0 = 1_795_000_000_000  # 2026-11-18 19:06:40 Beijing time
S = 1000
NOW = T0 + 3200 * S
TOKEN = "stats-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Clock:
    def __init__(self, t: int) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


GRID_OF = {"RJ-B0001": "RJ-G1-M01", "RJ-B0002": "RJ-G1-M02"}


def detection(
    kind: AlarmKind,
    building: str,
    source: str,
    *,
    device: str | None = None,
    ts: int = T0,
    action: DetectionAction = DetectionAction.RAISE,
) -> Detection:
    """A detection as the rules make it: on the building, or on one of its devices."""
    subject = (SubjectType.DEVICE, device) if device else (SubjectType.BUILDING, building)
    return Detection(
        kind,
        DEFAULT_SEVERITY[kind],
        *subject,
        ts,
        action,
        {"why": "test"},
        None,
        building,
        GRID_OF[building],
        source_id=source,
    )


@dataclass
class Evening:
    db: Database
    service: AlertService
    clock: Clock
    tickets: dict[str, str]  # A..E -> ticket id
    silence_id: int

    @property
    def now(self) -> datetime:
        return to_datetime(self.clock.t)


@pytest.fixture
async def evening(db: Database) -> Evening:
    await import_registry(db, parse_registry(screen_registry()))
    clock = Clock(T0)
    service = AlertService(db, clock=clock, storm_policy=None)  # each offline alarm alone, dispatched at once
    ids: dict[str, str] = {}

    async def raise_(name: str, at: int, d: Detection) -> None:
        clock.t = at
        res = await service.apply(d)
        assert res.ticket_id is not None, name
        ids[name] = res.ticket_id

    async def act(name: str, at: int, action: str, outcome: Outcome | None = None) -> None:
        clock.t = at
        await service.transition(ids[name], action, actor="W", outcome=outcome)

    fire, fault, offline = AlarmKind.SMOKE_FIRE, AlarmKind.ELEVATOR_FAULT, AlarmKind.DEVICE_OFFLINE
    await raise_("A", T0, detection(fire, "RJ-B0001", "SM-0001:1"))
    await act("A", T0 + 60 * S, "ack")
    await raise_("B", T0 + 100 * S, detection(fire, "RJ-B0002", "SM-0003:1"))
    await raise_("C", T0 + 200 * S, detection(fault, "RJ-B0002", "EL-0002:1", device="EL-0002"))
    await raise_("D", T0 + 300 * S, detection(offline, "RJ-B0002", "SM-0003:2", device="SM-0003"))
    await act("B", T0 + 400 * S, "ack")
    await act("A", T0 + 600 * S, "arrive")
    await act("B", T0 + 1100 * S, "arrive")
    await act("A", T0 + 1800 * S, "resolve", Outcome.CONFIRMED)
    await raise_("E", T0 + 2000 * S, detection(fire, "RJ-B0001", "SM-0002:1", ts=T0 + 1900 * S))
    clock.t = T0 + 2060 * S  # E's detector falls quiet: the rule clears the alarm
    clear = detection(fire, "RJ-B0001", "SM-0002:2", ts=T0 + 1960 * S, action=DetectionAction.CLEAR)
    assert (await service.apply(clear)).ticket_id == ids["E"]
    await act("B", T0 + 2100 * S, "resolve", Outcome.FALSE_ALARM)
    silence = await silences.create_silence(
        db,
        scope_type="building",
        scope_id="RJ-B0002",
        kinds=["elevator.ebike"],
        starts_at=to_datetime(T0),
        ends_at=to_datetime(T0) + timedelta(days=1),
        reason="电梯改造",
        actor="admin",
    )
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO device_state (device_id, last_seen, online, battery_pct) VALUES "
            "('SM-0001', %(t)s, true, 15), ('SM-0002', %(t)s, true, 80), ('SM-0003', %(t)s, true, 60)",
            {"t": to_datetime(T0)},
        )
    clock.t = NOW
    return Evening(db, service, clock, ids, silence.id)


@pytest.fixture
async def client(evening: Evening) -> AsyncIterator[httpx.AsyncClient]:
    ctx = ApiContext(db=evening.db, alerts=evening.service, admin_token=TOKEN, roles=["api"])
    transport = httpx.ASGITransport(app=create_app(ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=AUTH) as c:
        yield c


PERIOD = {"since": to_datetime(T0 - 3600 * S).isoformat(), "until": to_datetime(T0 + 3600 * S).isoformat()}
