"""A rule worker started again on a log it has snapshots of, or on a log that is not the one they index.

Each test starts a new engine *and a new bus object*, as a restarted process does: reusing the bus
object of the first run would hide exactly the failures a restart meets (offsets of another log).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from alerts.service import AlertService, AlertsWorker
from rules.engine import RuleEngine
from tests.helpers import small_registry, wait_for
from tests.rules.support import T0, reading
from whistle.bus import TOPIC_PRIORITY, TOPIC_READINGS, Bus, MemoryBus, TopicPartition
from whistle.bus_pg import PgLogBus
from whistle.domain import Channel, DeviceType, Reading
from whistle.registry import import_registry, parse_registry
from whistle.serde import encode_reading
from whistle.store.db import Database
from whistle.timeutil import now_ms


def smoke(seq: int, event: str, device: str = "SM-0001") -> Reading:
    return reading(
        device,
        DeviceType.SMOKE,
        Channel.EVENT,
        T0 + seq * 60_000,
        {"event": event},
        seq=seq,
        building="RJ-B0001",
        grid="RJ-G1-M01",
    )


async def send(bus: Bus, readings: Sequence[Reading]) -> None:
    await bus.send_many(TOPIC_PRIORITY, [(r.site_key.encode(), encode_reading(r)) for r in readings])


async def fires(db: Database) -> list[tuple[Any, ...]]:
    async with db.connection() as conn:
        cur = await conn.execute("SELECT subject_id, count FROM alarms WHERE kind = 'smoke.fire' ORDER BY first_seen")
        return list(await cur.fetchall())


class Roles:
    """An engine and an alerts worker on one bus, as one started process has them."""

    def __init__(self, bus: Bus, db: Database) -> None:
        self.engine = RuleEngine(bus, db, snapshot_interval_s=0.05, daily_jobs=False)
        self.worker = AlertsWorker(bus, AlertService(db))
        self.stop = asyncio.Event()
        self.tasks = [
            asyncio.create_task(self.engine.run(self.stop)),
            asyncio.create_task(self.worker.run(self.stop)),
        ]

    async def close(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks)

    def kill(self) -> None:
        for t in self.tasks:
            t.cancel()


@pytest.fixture
async def registered(db: Database) -> AsyncIterator[Database]:
    await import_registry(db, parse_registry(small_registry()))
    yield db


async def test_a_fire_after_a_restart_on_a_new_in_process_bus_is_judged(registered: Database) -> None:
    db = registered
    async with MemoryBus(partitions=4) as first_bus:
        first = Roles(first_bus, db)
        await send(first_bus, [smoke(i, "test") for i in range(1, 301)])  # 300 self-tests
        await wait_for(lambda: _caught_up(first.engine, first_bus), timeout=30)
        await first.close()  # its snapshots hold offsets of this bus
    async with MemoryBus(partitions=4) as second_bus:  # the restarted process: a new, empty log
        second = Roles(second_bus, db)
        await send(second_bus, [smoke(301, "alarm")])
        found = await wait_for(lambda: fires(db), timeout=30)
        await second.close()
    assert found == [("RJ-B0001", 1)]
    assert sum(lane.stats.foreign for lane in second.engine.lanes.values()) == 1


async def test_what_was_accepted_before_a_crash_is_judged_after_it_on_the_durable_log(
    registered: Database,
) -> None:
    db = registered
    async with PgLogBus(db, partitions=4) as first_bus:
        first = Roles(first_bus, db)
        await send(first_bus, [smoke(i, "test") for i in range(1, 301)])

        async def snapshotted() -> bool:
            return await _snapshotted_at(db, 300)

        await wait_for(snapshotted, timeout=30)
        first.engine.snapshot_interval_s = 3600.0  # the crash lands before the next snapshot
        await send(first_bus, [smoke(301, "alarm")])  # accepted (committed to the log), maybe not judged
        first.kill()
        await asyncio.gather(*first.tasks, return_exceptions=True)
    async with PgLogBus(db, partitions=4) as second_bus:  # the restarted process: the same log, a new object
        second = Roles(second_bus, db)
        await send(second_bus, [smoke(302, "alarm", "SM-0002")])  # and a second detector after the restart
        await wait_for(lambda: _confirmed(db), timeout=30)
        await second.close()
    assert await fires(db) == [("RJ-B0001", 2)]  # one fire, both detectors, no second ticket
    lanes = second.engine.lanes.values()
    assert sum(lane.stats.restored for lane in lanes) >= 1 and sum(lane.stats.foreign for lane in lanes) == 0


async def _caught_up(engine: RuleEngine, bus: MemoryBus) -> bool:
    lane = engine.lanes[TOPIC_PRIORITY]
    ends = bus.end_offsets(TOPIC_PRIORITY)
    return (
        all(bus.committed(lane.group, TopicPartition(TOPIC_PRIORITY, p)) == end for p, end in enumerate(ends) if end)
        and sum(ends) > 0
    )


async def _snapshotted_at(db: Database, total: int) -> bool:
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT coalesce(sum(next_offset), 0) FROM rule_snapshots WHERE topic = %s", (TOPIC_PRIORITY,)
        )
        row = await cur.fetchone()
    return row is not None and int(row[0]) >= total


async def _confirmed(db: Database) -> bool:
    got = await fires(db)
    return bool(got) and got[0][1] >= 2


async def _offline(db: Database) -> list[tuple[Any, ...]]:
    async with db.connection() as conn:
        cur = await conn.execute("SELECT subject_id FROM alarms WHERE kind = 'device.offline'")
        return list(await cur.fetchall())


async def test_a_partition_restored_that_hears_nothing_more_still_finds_its_device_offline(
    registered: Database,
) -> None:
    # A meter reported until 58 minutes ago and then stopped (its 45 minutes ran out 13 minutes ago). The
    # service restarts before the quiet partition has followed the wall clock: the restored partition never
    # receives another record, so it must follow the wall clock from its assignment — before, it did so only
    # from its first record after the restart, and the dead meter was never called offline.
    db = registered
    last = now_ms() - 58 * 60_000
    meter = [
        reading(
            "WM-000001",
            DeviceType.WATER,
            Channel.DATA,
            last - i * 15 * 60_000,
            {"total_m3": 5.0 - i * 0.01},
            seq=100 - i,
            household="RJ-H000001",
            received_at=last - i * 15 * 60_000,
        )
        for i in reversed(range(4))
    ]
    async with PgLogBus(db, partitions=4) as first_bus:
        first = Roles(first_bus, db)
        await first_bus.send_many(TOPIC_READINGS, [(r.key.encode(), encode_reading(r, "collector")) for r in meter])

        async def snapshotted() -> bool:
            async with db.connection() as conn:
                cur = await conn.execute(
                    "SELECT coalesce(sum(next_offset), 0) FROM rule_snapshots WHERE topic = %s", (TOPIC_READINGS,)
                )
                row = await cur.fetchone()
            return row is not None and int(row[0]) >= len(meter)

        await wait_for(snapshotted, timeout=30, interval=0.05)
        await first.close()  # within the 5 s a quiet partition waits before it follows the wall clock
    assert await _offline(db) == []
    async with PgLogBus(db, partitions=4) as second_bus:  # restarted: the same log, nothing new on it
        second = Roles(second_bus, db)
        found = await wait_for(lambda: _offline(db), timeout=30)
        await second.close()
    assert found == [("WM-000001",)]
