"""Alarm storms on a real PostgreSQL: the rule engine's device.offline detections of a building that goes
quiet become one incident ticket; an elevator power loss explains them; life safety never waits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from alerts.channels.base import Attempt, Notification
from alerts.channels.delivery import DeliveryPolicy, Dispatcher
from alerts.lifecycle import Change
from alerts.outbox import OutboxSender, PgSentLog
from alerts.service import AlertService
from alerts.storms import StormPolicy
from alerts.workers import EscalationWorker
from rules.catalog import BULK_RULES, PRIORITY_RULES
from rules.processor import PartitionState, Processor
from tests.helpers import small_registry
from whistle.domain import AlarmKind, Channel, Detection, DetectionAction, DeviceType, Reading
from whistle.registry import import_registry, parse_registry
from whistle.store.db import Database

T0 = 1_795_000_000_000  # 2026-11-18, 19:06:40 Beijing time
MIN = 60_000
HOUR = 60 * MIN


class Clock:
    def __init__(self, t: int) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


class Recorder:
    """A channel that reaches everyone and remembers what it was handed."""

    name = "live"

    def __init__(self) -> None:
        self.sent: list[Notification] = []

    async def send(self, message: Notification) -> Attempt:
        self.sent.append(message)
        return Attempt(self.name, message.id, ok=True, retryable=False, code="ok")


def storm_registry(meters: int = 200, *, gateway_every: int = 0) -> dict[str, Any]:
    """small_registry plus `meters` water and power meters in households of RJ-B0001, and one household
    in RJ-B0002 whose meter keeps the clock going. With `gateway_every`, every n-th meter of B0001 and
    the B0002 meter sit behind gateway GW-1."""
    reg = small_registry()
    flats = meters // 2
    reg["households"] += [
        {"id": f"RJ-H1{i:05d}", "building_id": "RJ-B0001", "unit": f"{i // 8 + 1}-{i % 8 + 1}01"} for i in range(flats)
    ]
    reg["households"].append({"id": "RJ-H200001", "building_id": "RJ-B0002", "unit": "1-101"})
    devices = []
    for i in range(flats):
        devices.append({"id": f"WM-1{i:05d}", "type": "water", "household_id": f"RJ-H1{i:05d}"})
        devices.append({"id": f"PM-1{i:05d}", "type": "power", "household_id": f"RJ-H1{i:05d}"})
    if gateway_every:
        for n, dev in enumerate(devices):
            if n % gateway_every == 0:
                dev["gateway_id"] = "GW-1"
    devices.append({"id": "WM-200001", "type": "water", "household_id": "RJ-H200001", "gateway_id": "GW-1"})
    reg["devices"] += devices
    return reg


def meter(device: str, ts: int, household: str, building: str, grid: str, total: float) -> Reading:
    dtype = DeviceType.WATER if device.startswith("WM") else DeviceType.POWER
    field = "total_m3" if dtype is DeviceType.WATER else "total_kwh"
    return Reading(device, dtype, Channel.DATA, ts, ts + 50, {field: total}, None, household, building, grid)


def b1_meters(n: int) -> list[tuple[str, str]]:
    return [(f"{p}-1{i:05d}", f"RJ-H1{i:05d}") for i in range(n // 2) for p in ("WM", "PM")]


def traffic(quiet: list[tuple[str, str]], *, stop_at: int, back_at: int | None, until: int) -> list[Reading]:
    """Every 15 min each meter reports, each on its own minute of the quarter; the `quiet` meters say
    nothing from `stop_at` (until `back_at`); WM-200001 in RJ-B0002 never stops."""
    out: list[Reading] = []
    t = T0
    step = 0
    while t < until:
        for n, (dev, hh) in enumerate(quiet):
            ts = t + (n % 15) * MIN
            silent = ts >= stop_at and (back_at is None or ts < back_at)
            if not silent and ts < until:
                out.append(meter(dev, ts, hh, "RJ-B0001", "RJ-G1-M01", step * 0.01))
        out.append(meter("WM-200001", t, "RJ-H200001", "RJ-B0002", "RJ-G1-M02", step * 0.01))
        t += 15 * MIN
        step += 1
    out.sort(key=lambda r: r.ts)
    return out


def offline_detections(readings: list[Reading]) -> list[Detection]:
    """What the rule engine's bulk lane concludes about these readings: device.offline raises and clears."""
    proc = Processor(BULK_RULES)
    part = PartitionState()
    out: list[Detection] = []
    for r in readings:
        proc.process(part, r, out)
    return [d for d in out if d.kind is AlarmKind.DEVICE_OFFLINE]


async def rows(db: Database, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    async with db.connection() as conn:
        return await (await conn.execute(sql, args)).fetchall()


async def replay(services: list[AlertService], clock: Clock, detections: list[Detection]) -> None:
    """Apply detections as they come in event time, the escalation worker running every simulated minute;
    with several services (alerts processes), each detection goes to one of them, concurrently in pairs."""
    workers = [EscalationWorker(s) for s in services]
    pending = sorted(detections, key=lambda d: d.ts)
    i = 0
    while i < len(pending):
        clock.t = max(clock.t, pending[i].ts)
        batch = pending[i : i + len(services)]
        await asyncio.gather(*(s.apply(d) for s, d in zip(services, batch, strict=False)))
        i += len(batch)
        for w in workers:
            await w.service.release_held()
            await w.run_once()


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


async def deliver_all(db: Database, clock: Clock) -> Recorder:
    channel = Recorder()
    sender = OutboxSender(
        db,
        Dispatcher({"live": channel}, policy=DeliveryPolicy(quiet=None, rate=None), clock=clock),
        sent_log=PgSentLog(db, clock=clock),
        clock=clock,
        routes={"worker": ("live",), "contact": ("live",)},
    )
    for _ in range(50):  # bounded: each round claims up to a batch
        if await sender.run_once() == 0:
            break
    return channel


async def test_two_hundred_devices_of_one_building_going_quiet_are_one_incident_ticket(
    db: Database, clock: Clock
) -> None:
    await import_registry(db, parse_registry(storm_registry(200)))
    quiet = b1_meters(200)
    stop_at, back_at = T0 + 2 * HOUR, T0 + 5 * HOUR
    detections = offline_detections(traffic(quiet, stop_at=stop_at, back_at=back_at, until=T0 + 6 * HOUR))
    raises = [d for d in detections if d.action is DetectionAction.RAISE]
    assert len({d.subject_id for d in raises}) == 200  # the rules did see every meter go quiet
    assert max(d.ts for d in raises) - min(d.ts for d in raises) >= 14 * MIN  # over a quarter of an hour
    # two alerts processes share the detections, as two consumers of the detections topic would
    services = [AlertService(db, clock=clock, storm_policy=StormPolicy()) for _ in range(2)]
    await replay(services, clock, [d for d in raises])

    tickets = await rows(db, "SELECT id, kind, assignee_id, severity FROM tickets")
    assert [(k, a, s) for _, k, a, s in tickets] == [("device.mass_offline", "W-09", "major")]
    ticket_id = tickets[0][0]
    (incident,) = await rows(
        db,
        "SELECT id, subject_type, subject_id, count, (evidence->>'devices_offline')::int FROM alarms "
        "WHERE kind = 'device.mass_offline'",
    )
    assert incident[1:] == ("building", "RJ-B0001", 200, 200)
    members = await rows(
        db,
        "SELECT count(*), count(*) FILTER (WHERE a.incident_id = %s), count(*) FILTER (WHERE ta.ticket_id = %s), "
        "count(*) FILTER (WHERE a.held_until IS NOT NULL) FROM alarms a "
        "LEFT JOIN ticket_alarms ta ON ta.alarm_id = a.id WHERE a.kind = 'device.offline'",
        incident[0],
        ticket_id,
    )
    assert members == [(200, 200, 200, 0)]  # every offline alarm recorded, under the incident, none waiting
    queued = await rows(db, "SELECT ticket_id, recipient_id, body->>'kind' FROM notifications")
    assert queued == [(ticket_id, "W-09", "device.mass_offline")]
    sent = await deliver_all(db, clock)
    assert [(m.recipient.id, m.kind) for m in sent.sent] == [("W-09", AlarmKind.DEVICE_MASS_OFFLINE)]
    await services[0].transition(ticket_id, "ack", actor="W-09")
    await services[0].transition(ticket_id, "arrive", actor="W-09")

    # the power comes back: every device reports again, each offline alarm clears, and the incident with them
    clears = [d for d in detections if d.action is DetectionAction.CLEAR]
    assert len(clears) == 200
    await replay(services, clock, clears)
    assert await rows(db, "SELECT kind, status, evidence->>'cleared_by' FROM alarms WHERE id = %s", incident[0]) == [
        ("device.mass_offline", "cleared", "devices_back")
    ]
    assert await rows(db, "SELECT count(*) FROM alarms WHERE status <> 'cleared'") == [(0,)]
    assert await rows(db, "SELECT escalation_due_at FROM tickets") == [(None,)]  # nothing more to escalate
    assert await rows(db, "SELECT count(*) FROM notifications") == [(1,)]


async def test_a_lone_offline_device_waits_then_gets_its_own_ticket(db: Database, clock: Clock) -> None:
    await import_registry(db, parse_registry(storm_registry(20)))
    quiet = b1_meters(20)[:1]
    detections = offline_detections(traffic(quiet, stop_at=T0 + HOUR, back_at=None, until=T0 + 3 * HOUR))
    (raised,) = [d for d in detections if d.action is DetectionAction.RAISE]
    service = AlertService(db, clock=clock, storm_policy=StormPolicy(wait_s=120))
    clock.t = raised.ts
    applied = await service.apply(raised)
    assert applied.held and applied.ticket_id is None
    assert await service.release_held() == 0  # its wait is not over
    assert await rows(db, "SELECT count(*) FROM tickets") == [(0,)]
    clock.t = raised.ts + 121_000
    assert await EscalationWorker(service).run_once() == 0
    assert await service.release_held() == 1
    assert await rows(db, "SELECT kind, assignee_id FROM tickets") == [("device.offline", "W-09")]
    assert await rows(db, "SELECT recipient_id, body->>'kind' FROM notifications") == [("W-09", "device.offline")]
    assert await rows(db, "SELECT held_until FROM alarms") == [(None,)]


async def test_a_device_back_within_the_wait_makes_no_ticket(db: Database, clock: Clock) -> None:
    await import_registry(db, parse_registry(storm_registry(20)))
    service = AlertService(db, clock=clock, storm_policy=StormPolicy(wait_s=300))
    dev, hh = b1_meters(20)[0]
    quiet = [(dev, hh)]
    detections = offline_detections(
        traffic(quiet, stop_at=T0 + HOUR, back_at=T0 + HOUR + 50 * MIN, until=T0 + 3 * HOUR)
    )
    up, down = detections
    assert (up.action, down.action) == (DetectionAction.RAISE, DetectionAction.CLEAR)
    clock.t = up.ts
    await service.apply(up)
    clock.t = up.ts + 60_000  # the device reports again a minute into the wait
    assert (await service.apply(down)).change is Change.CLEAR
    clock.t = up.ts + 600_000
    assert await service.release_held() == 0
    assert await rows(db, "SELECT count(*) FROM tickets") == [(0,)]
    assert await rows(db, "SELECT count(*) FROM notifications") == [(0,)]
    assert await rows(db, "SELECT status, held_until FROM alarms") == [("cleared", None)]


async def test_an_elevator_power_loss_explains_the_offline_devices_of_its_building(db: Database, clock: Clock) -> None:
    reg = storm_registry(20)
    reg["devices"].append({"id": "EL-0001", "type": "elevator", "building_id": "RJ-B0001"})
    await import_registry(db, parse_registry(reg))
    service = AlertService(db, clock=clock, storm_policy=StormPolicy(min_devices=50))  # no storm threshold here
    power_loss = Reading(
        "EL-0001", DeviceType.ELEVATOR, Channel.EVENT, T0 + 70 * MIN, T0 + 70 * MIN, {"event": "power_loss"},
        None, None, "RJ-B0001", "RJ-G1-M01",
    )  # fmt: skip
    proc = Processor(PRIORITY_RULES)
    fault: list[Detection] = []
    proc.process(PartitionState(), power_loss, fault)
    assert [d.kind for d in fault] == [AlarmKind.ELEVATOR_FAULT]
    clock.t = power_loss.ts
    elevator_ticket = (await service.apply(fault[0])).ticket_id
    assert elevator_ticket is not None
    before = await rows(db, "SELECT count(*) FROM notifications")
    quiet = b1_meters(20)[:3]
    detections = offline_detections(traffic(quiet, stop_at=T0 + HOUR, back_at=None, until=T0 + 3 * HOUR))
    results = []
    for d in detections:
        clock.t = d.ts
        results.append(await service.apply(d))
    assert len(results) == 3 and all(r.grouped and r.ticket_id == elevator_ticket for r in results)
    assert await rows(db, "SELECT count(*) FROM tickets") == [(1,)]
    assert await rows(db, "SELECT count(*) FROM notifications") == before  # nothing sent for the offline devices
    grouped = await rows(
        db, "SELECT count(*) FROM ticket_events WHERE ticket_id = %s AND action = 'alarm_grouped'", elevator_ticket
    )
    assert grouped == [(3,)]


async def test_a_gateway_outage_across_buildings_is_one_gateway_incident(db: Database, clock: Clock) -> None:
    # every 4th meter of B0001 and the meter in B0002 are behind GW-1; only those go quiet
    await import_registry(db, parse_registry(storm_registry(40, gateway_every=4)))
    behind = [(dev, hh) for n, (dev, hh) in enumerate(b1_meters(40)) if n % 4 == 0]
    readings = [
        r
        for r in traffic(b1_meters(40), stop_at=T0 + 10 * HOUR, back_at=None, until=T0 + 3 * HOUR)
        if not (r.ts >= T0 + HOUR and (r.device_id in {d for d, _ in behind} or r.device_id == "WM-200001"))
    ]
    detections = [d for d in offline_detections(readings) if d.action is DetectionAction.RAISE]
    assert {d.subject_id for d in detections} == {d for d, _ in behind} | {"WM-200001"}
    service = AlertService(db, clock=clock, storm_policy=StormPolicy())
    await replay([service], clock, detections)
    assert await rows(db, "SELECT kind FROM tickets") == [("device.mass_offline",)]
    assert await rows(db, "SELECT subject_type, subject_id, count FROM alarms WHERE kind = 'device.mass_offline'") == [
        ("gateway", "GW-1", 11)
    ]
    assert await rows(db, "SELECT count(*) FROM notifications WHERE body->>'kind' = 'device.offline'") == [(0,)]


async def test_life_safety_in_a_storm_building_is_never_grouped_or_held(db: Database, clock: Clock) -> None:
    reg = storm_registry(40)
    reg["devices"].append({"id": "EL-0001", "type": "elevator", "building_id": "RJ-B0001"})
    await import_registry(db, parse_registry(reg))
    service = AlertService(db, clock=clock, storm_policy=StormPolicy())
    detections = offline_detections(traffic(b1_meters(40), stop_at=T0 + HOUR, back_at=None, until=T0 + 3 * HOUR))
    await replay([service], clock, [d for d in detections if d.action is DetectionAction.RAISE])
    assert await rows(db, "SELECT kind FROM tickets") == [("device.mass_offline",)]
    t = clock.t + MIN
    where = (None, None, "RJ-B0001", "RJ-G1-M01")
    events = [
        Reading("SM-0001", DeviceType.SMOKE, Channel.EVENT, t, t, {"event": "alarm"}, *where),
        Reading("EL-0001", DeviceType.ELEVATOR, Channel.EVENT, t, t, {"event": "trapped"}, *where),
    ]
    proc = Processor(PRIORITY_RULES)
    part = PartitionState()
    urgent: list[Detection] = []
    for r in events:
        proc.process(part, r, urgent)
    assert {d.kind for d in urgent} == {AlarmKind.SMOKE_FIRE, AlarmKind.ELEVATOR_TRAPPED}
    clock.t = t
    for d in urgent:
        applied = await service.apply(d)
        assert applied.change is Change.OPEN and not applied.held and not applied.grouped
        assert applied.incident_id is None and applied.ticket_id is not None and applied.queued >= 1
    kinds = await rows(db, "SELECT kind FROM tickets ORDER BY created_at, kind")
    assert sorted(k for (k,) in kinds) == ["device.mass_offline", "elevator.trapped", "smoke.fire"]
    sent = await deliver_all(db, clock)
    assert {m.kind for m in sent.sent} == {
        AlarmKind.DEVICE_MASS_OFFLINE,
        AlarmKind.SMOKE_FIRE,
        AlarmKind.ELEVATOR_TRAPPED,
    }
