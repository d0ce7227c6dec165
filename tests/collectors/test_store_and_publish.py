"""What the collector promises between the broker, the database and the bus, against real services."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable

import pytest

from collectors.service import Collector
from simulators.live import Publisher
from tests.collectors.support import start_collector, stop_collector
from tests.conftest import MosquittoBroker
from tests.helpers import small_registry, wait_for
from whistle.bus import TOPIC_READINGS, MemoryBus
from whistle.bus_pg import PgLogBus
from whistle.domain import Channel, DeviceType, Reading
from whistle.mqtt import MqttEndpoint
from whistle.registry import import_registry, parse_registry
from whistle.serde import decode_reading
from whistle.store.db import Database
from whistle.timeutil import now_ms


class FlakyBus(MemoryBus):
    """An in-process bus whose first `failures` sends fail (after the collector's commit, as a broker outage)."""

    def __init__(self, failures: int) -> None:
        super().__init__(partitions=4)
        self.failures = failures

    async def send_many(self, topic: str, items: Iterable[tuple[bytes, bytes]]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("the bus is away")
        await super().send_many(topic, items)


@pytest.fixture
async def publisher(mosquitto: MosquittoBroker) -> AsyncIterator[Publisher]:
    pub = Publisher(MqttEndpoint.parse(mosquitto.url), f"test-pub-{uuid.uuid4().hex[:8]}")
    await pub.start()
    yield pub
    await pub.stop()


async def scalar(db: Database, sql: str) -> object:
    async with db.connection() as conn:
        row = await (await conn.execute(sql)).fetchone()
    return row[0] if row else None


def bus_readings(bus: MemoryBus) -> list[Reading]:
    return [decode_reading(r.value) for log in bus.partitions(TOPIC_READINGS) for r in log]


async def test_a_bus_failure_after_the_commit_publishes_the_batch_again_not_nothing(
    mosquitto: MosquittoBroker, db: Database, publisher: Publisher
) -> None:
    await import_registry(db, parse_registry(small_registry()))
    async with FlakyBus(failures=2) as bus:
        running = await start_collector(mosquitto, db, bus, f"flaky-{uuid.uuid4().hex[:8]}")
        try:
            publisher.publish("whistle/v1/water/WM-000001/data", {"ts": now_ms(), "seq": 7, "total_m3": 1.5})
            got = await wait_for(lambda: _readings(bus), timeout=20)
        finally:
            await stop_collector(running)
    assert [(r.device_id, r.seq) for r in got] == [("WM-000001", 7)]
    assert await scalar(db, "SELECT count(*) FROM readings") == 1
    assert running.collector.stats.write_failures == 2


async def _readings(bus: MemoryBus) -> list[Reading]:
    return bus_readings(bus)


async def test_a_meter_that_reports_once_and_goes_quiet_shows_when_it_was_seen(
    mosquitto: MosquittoBroker, db: Database, publisher: Publisher
) -> None:
    await import_registry(db, parse_registry(small_registry()))
    async with MemoryBus(partitions=4) as bus:
        running = await start_collector(mosquitto, db, bus, f"state-{uuid.uuid4().hex[:8]}")
        try:
            ts = now_ms() - 60_000
            publisher.publish("whistle/v1/smoke/SM-0001/status", {"ts": ts, "battery_pct": 90})
            await wait_for(lambda: scalar(db, "SELECT count(*) FROM readings"), timeout=10)
            # right after a batch was written: the meter's only message, then silence
            publisher.publish("whistle/v1/water/WM-000001/status", {"ts": ts, "battery_pct": 71})
            seen = await wait_for(
                lambda: scalar(db, "SELECT battery_pct FROM device_state WHERE device_id = 'WM-000001'"), timeout=5
            )
        finally:
            await stop_collector(running)
    assert seen == 71


async def test_a_status_without_seq_delivered_twice_is_stored_once(
    mosquitto: MosquittoBroker, db: Database, publisher: Publisher
) -> None:
    await import_registry(db, parse_registry(small_registry()))
    async with MemoryBus(partitions=4) as bus:
        running = await start_collector(mosquitto, db, bus, f"dup-{uuid.uuid4().hex[:8]}")
        try:
            ts = now_ms() - 5_000
            payload = {"ts": ts, "battery_pct": 64, "rssi_dbm": -80}
            publisher.publish("whistle/v1/water/WM-000001/status", payload)
            await wait_for(lambda: scalar(db, "SELECT count(*) FROM readings"), timeout=10)
            publisher.publish("whistle/v1/water/WM-000001/status", dict(reversed(payload.items())))  # the same again
            publisher.publish("whistle/v1/water/WM-000001/status", {**payload, "battery_pct": 63})  # not the same
            await wait_for(lambda: _duplicates(running.collector), timeout=10)
            await wait_for(lambda: _stored(db, 2), timeout=10)
        finally:
            await stop_collector(running)
    assert await scalar(db, "SELECT count(*) FROM readings") == 2


async def _duplicates(c: Collector) -> bool:
    return c.stats.duplicates >= 1


async def _stored(db: Database, n: int) -> bool:
    return await scalar(db, "SELECT count(*) FROM readings") == n


async def test_on_the_durable_log_a_redelivered_batch_is_on_the_bus_once(db: Database) -> None:
    await import_registry(db, parse_registry(small_registry()))
    async with PgLogBus(db, partitions=4) as bus:
        from collectors.codecs import Limits
        from collectors.service import Batch
        from whistle.registry import DeviceDirectory

        c = Collector(lanes=[], db=db, bus=bus, directory=DeviceDirectory(db), limits=Limits())
        r = Reading("WM-000001", DeviceType.WATER, Channel.DATA, now_ms(), now_ms(), {"total_m3": 2.0}, 3, "RJ-H000001")
        await c.write(Batch(readings=[r], redelivered=[False]))
        await c.write(Batch(readings=[r], redelivered=[True]))  # the broker delivered it again
        assert sum(await bus.end_offsets_async(TOPIC_READINGS)) == 1
        assert await scalar(db, "SELECT count(*) FROM readings") == 1
        await asyncio.sleep(0)


async def test_readings_of_a_batch_message_reach_the_bus_marked_as_batched(
    mosquitto: MosquittoBroker, db: Database, publisher: Publisher
) -> None:
    await import_registry(db, parse_registry(small_registry()))
    async with MemoryBus(partitions=4) as bus:
        running = await start_collector(mosquitto, db, bus, f"batched-{uuid.uuid4().hex[:8]}")
        try:
            ts = now_ms() - 3_600_000
            batch = [{"ts": ts + i * 60_000, "seq": 10 + i, "total_m3": 2.0 + i} for i in range(3)]
            publisher.publish("whistle/v1/water/WM-000001/data", {"batch": batch})
            publisher.publish("whistle/v1/water/WM-000001/data", {"ts": ts + 600_000, "seq": 20, "total_m3": 9.0})
            got = await wait_for(lambda: _some(bus, 4), timeout=20)
        finally:
            await stop_collector(running)
    assert sorted((r.device_id, r.seq, r.batched) for r in got) == [
        ("WM-000001", 10, True),
        ("WM-000001", 11, True),
        ("WM-000001", 12, True),
        ("WM-000001", 20, False),
    ]


async def _some(bus: MemoryBus, n: int) -> list[Reading] | None:
    got = bus_readings(bus)
    return got if len(got) >= n else None
