"""The engine against a real PostgreSQL: snapshots, a worker killed mid-stream, restart and replay."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from alerts.service import AlertService, AlertsWorker
from rules.engine import RuleEngine
from tests.conftest import _with_db
from tests.helpers import small_registry, wait_for
from tests.rules.support import MIN, T0, reading
from whistle.bus import TOPIC_DETECTIONS, TOPIC_PRIORITY, TOPIC_READINGS, MemoryBus, TopicPartition
from whistle.domain import Channel, DeviceType, Reading
from whistle.protocol import PRIORITY_INPUTS
from whistle.registry import import_registry, parse_registry
from whistle.serde import encode_reading
from whistle.store.db import Database

HOUSEHOLDS = [f"RJ-H{i:06d}" for i in range(1, 21)]


def registry() -> dict[str, Any]:
    doc = small_registry()
    doc["households"] += [
        {"id": h, "building_id": "RJ-B0001" if i % 2 else "RJ-B0002", "registered_occupants": 2}
        for i, h in enumerate(HOUSEHOLDS[1:])
    ]
    return doc


def district_stream(hours: int = 10, seed: int = 11) -> list[Reading]:
    """Meters for 20 households (one leaking, one going silent), a charger, smoke and elevator incidents."""
    rng = random.Random(seed)
    out: list[Reading] = []
    totals = dict.fromkeys(HOUSEHOLDS, 10.0)
    for m in range(hours * 60):
        ts = T0 + m * MIN
        w = 5.0 + (200.0 if 90 <= m < 330 else 0.0)
        out.append(
            reading(
                "EB-1",
                DeviceType.EBIKE,
                Channel.DATA,
                ts,
                {"power_w": w},
                household=HOUSEHOLDS[3],
                building="RJ-B0001",
                grid="RJ-G1-M01",
            )
        )
        if m % 15 == 0:
            for i, h in enumerate(HOUSEHOLDS):
                if i == 7 and m > 180:
                    continue  # this meter goes silent
                totals[h] += 0.015 if i == 5 else rng.choice([0.0, 0.0, 0.0, 0.005, 0.02])
                b = "RJ-B0001" if i % 2 else "RJ-B0002"
                g = "RJ-G1-M01" if i % 2 else "RJ-G1-M02"
                out.append(
                    reading(
                        f"WM-{i:06d}",
                        DeviceType.WATER,
                        Channel.DATA,
                        ts,
                        {"total_m3": round(totals[h], 3)},
                        seq=m,
                        household=h,
                        building=b,
                        grid=g,
                    )
                )
        smoke = {
            60: ("SM-0001", "alarm"),
            61: ("SM-0002", "alarm"),
            95: ("SM-0001", "alarm_clear"),
            96: ("SM-0002", "alarm_clear"),
            200: ("SM-0003", "alarm"),
            201: ("SM-0003", "alarm_clear"),
        }
        if m in smoke:
            dev, event = smoke[m]
            b, g = ("RJ-B0002", "RJ-G1-M02") if dev == "SM-0003" else ("RJ-B0001", "RJ-G1-M01")
            out.append(
                reading(dev, DeviceType.SMOKE, Channel.EVENT, ts + 7_000, {"event": event}, seq=m, building=b, grid=g)
            )
        if m in (300, 330):
            event = "trapped" if m == 300 else "recovered"
            out.append(
                reading(
                    "EL-0002",
                    DeviceType.ELEVATOR,
                    Channel.EVENT,
                    ts,
                    {"event": event, "floor": 5},
                    seq=m,
                    building="RJ-B0002",
                    grid="RJ-G1-M02",
                )
            )
    return out


async def publish(bus: MemoryBus, readings: list[Reading]) -> None:
    for r in readings:
        if (r.device_type, r.channel) in PRIORITY_INPUTS:
            await bus.send_many(TOPIC_PRIORITY, [(r.site_key.encode(), encode_reading(r))])
        else:
            await bus.send_many(TOPIC_READINGS, [(r.key.encode(), encode_reading(r))])


@pytest.fixture
async def other_db(pg_admin_url: str) -> AsyncIterator[Database]:
    import uuid

    import psycopg
    from psycopg import sql

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    database = Database(_with_db(pg_admin_url, name), max_size=4)
    await database.start()
    yield database
    await database.stop()
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


async def alarms(db: Database) -> list[tuple[Any, ...]]:
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT kind, subject_id, status, count, first_seen, last_seen, severity, evidence::text FROM alarms"
            " ORDER BY kind, subject_id, first_seen"
        )
        return list(await cur.fetchall())


def total(bus: MemoryBus, topic: str) -> int:
    return sum(bus.end_offsets(topic))


async def run_until_done(engine: RuleEngine, bus: MemoryBus, worker: AlertsWorker, n: int, stop: asyncio.Event) -> None:
    async def caught_up() -> bool:
        return engine.evaluated >= n and worker.applied >= total(bus, TOPIC_DETECTIONS)

    await wait_for(caught_up, timeout=60)


async def reference(db: Database, readings: list[Reading]) -> list[tuple[Any, ...]]:
    await import_registry(db, parse_registry(registry()))
    async with MemoryBus(partitions=4) as bus:
        await publish(bus, readings)
        engine = RuleEngine(bus, db, snapshot_interval_s=0.05, max_records=64)
        worker = AlertsWorker(bus, AlertService(db))
        stop = asyncio.Event()
        tasks = [asyncio.create_task(engine.run(stop)), asyncio.create_task(worker.run(stop))]
        await run_until_done(engine, bus, worker, len(readings), stop)
        stop.set()
        await asyncio.gather(*tasks)
    return await alarms(db)


async def test_the_district_stream_raises_each_kind_of_instant_alarm(db: Database) -> None:
    got = await reference(db, district_stream())
    summary = {(kind, subject, status) for kind, subject, status, *_ in got}
    assert ("smoke.fire", "RJ-B0001", "cleared") in summary
    assert ("smoke.fire", "RJ-B0002", "cleared") in summary
    assert ("elevator.trapped", "EL-0002", "cleared") in summary
    assert ("ebike.indoor_charging", "EB-1", "cleared") in summary
    assert ("water.continuous_flow", HOUSEHOLDS[5], "active") in summary
    assert ("device.offline", "WM-000007", "active") in summary
    fire = next(a for a in got if a[0] == "smoke.fire" and a[1] == "RJ-B0001")
    assert fire[3] == 2 and '"confirmed": true' in fire[7]


async def test_a_worker_killed_mid_stream_and_restarted_ends_with_the_same_alarms(
    db: Database, other_db: Database
) -> None:
    readings = district_stream()
    expected = await reference(other_db, readings)
    await import_registry(db, parse_registry(registry()))
    quarter, half = len(readings) // 4, len(readings) // 2
    async with MemoryBus(partitions=4) as bus:
        worker = AlertsWorker(bus, AlertService(db))
        stop_worker = asyncio.Event()
        worker_task = asyncio.create_task(worker.run(stop_worker))

        first = RuleEngine(bus, db, snapshot_interval_s=0.05, max_records=64)
        first_task = asyncio.create_task(first.run(asyncio.Event()))
        await publish(bus, readings[:quarter])

        async def snapshotted() -> bool:
            lanes = first.lanes.values()
            return first.evaluated >= quarter and all(not lane.dirty for lane in lanes)

        await wait_for(snapshotted, timeout=30)
        first.snapshot_interval_s = 3600.0  # no snapshot after this point: the kill lands between two
        await publish(bus, readings[quarter:half])

        async def processed_half() -> bool:
            return first.evaluated >= half

        await wait_for(processed_half, timeout=30)
        first_task.cancel()  # killed: no final snapshot; its offsets are committed past the last snapshot
        with pytest.raises(asyncio.CancelledError):
            await first_task

        second = RuleEngine(bus, db, snapshot_interval_s=0.05, max_records=64)
        stop_second = asyncio.Event()
        second_task = asyncio.create_task(second.run(stop_second))
        await publish(bus, readings[half:])

        async def finished() -> bool:
            rules_done = all(
                bus.committed(f"whistle-rules.{topic}", TopicPartition(topic, p)) == end
                for topic in (TOPIC_PRIORITY, TOPIC_READINGS)
                for p, end in enumerate(bus.end_offsets(topic))
                if end
            )
            return rules_done and worker.applied >= total(bus, TOPIC_DETECTIONS)

        await wait_for(finished, timeout=60)
        stop_second.set()
        await second_task
        stop_worker.set()
        await worker_task
        assert sum(lane.stats.restored for lane in second.lanes.values()) > 0, "no snapshot was restored"
        replayed = first.evaluated + second.evaluated - len(readings)
        assert replayed > 0, "nothing was replayed: the kill did not land between a snapshot and a commit"
    assert await alarms(db) == expected
