"""The collector against a real Mosquitto and a real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from simulators.live import Publisher
from tests.collectors.support import Running, start_collector, stop_collector
from tests.conftest import MosquittoBroker
from tests.helpers import small_registry, wait_for
from whistle.bus import TOPIC_PRIORITY, TOPIC_READINGS, MemoryBus
from whistle.mqtt import MqttEndpoint
from whistle.registry import import_registry, parse_registry
from whistle.serde import decode_reading
from whistle.store.db import Database
from whistle.timeutil import now_ms


@pytest.fixture
async def publisher(mosquitto: MosquittoBroker) -> AsyncIterator[Publisher]:
    pub = Publisher(MqttEndpoint.parse(mosquitto.url), f"test-pub-{uuid.uuid4().hex[:8]}")
    await pub.start()
    yield pub
    await pub.stop()


@pytest.fixture
async def running(mosquitto: MosquittoBroker, db: Database) -> AsyncIterator[Running]:
    await import_registry(db, parse_registry(small_registry()))
    async with MemoryBus(partitions=4) as bus:
        r = await start_collector(mosquitto, db, bus, f"test-collector-{uuid.uuid4().hex[:8]}")
        yield r
        if not r.task.done():
            await stop_collector(r)


async def scalar(db: Database, sql: str) -> object:
    async with db.connection() as conn:
        row = await (await conn.execute(sql)).fetchone()
    return row[0] if row else None


async def test_malformed_payloads_are_dead_lettered_and_the_collector_keeps_going(
    running: Running, publisher: Publisher, db: Database
) -> None:
    publisher.publish("whistle/v1/smoke/SM-0001/event", b"{not json")
    publisher.publish("whistle/v1/smoke/SM-0001/event", {"ts": now_ms(), "event": "explode"})
    publisher.publish("whistle/v1/smoke/SM-9999/event", {"ts": now_ms(), "event": "alarm"})
    publisher.publish("whistle/v1/water/SM-0001/data", {"ts": now_ms(), "total_m3": 1})
    publisher.publish("whistle/v1/smoke/SM-0001/event", {"ts": now_ms(), "seq": 1, "event": "alarm"})

    async def settled() -> bool:
        return (
            await scalar(db, "SELECT count(*) FROM dead_letters") == 4
            and await scalar(db, "SELECT count(*) FROM readings") == 1
        )

    await wait_for(settled, timeout=15)
    async with db.connection() as conn:
        reasons = await (await conn.execute("SELECT reason, topic FROM dead_letters ORDER BY id")).fetchall()
        payload = await (await conn.execute("SELECT payload FROM dead_letters WHERE reason = 'not_json'")).fetchone()
    # the two lanes (priority: smoke events; bulk: the rest) write their dead letters in no set order between them
    assert sorted(reasons) == sorted(
        [
            ("not_json", "whistle/v1/smoke/SM-0001/event"),
            ("out_of_range", "whistle/v1/smoke/SM-0001/event"),
            ("unregistered_device", "whistle/v1/smoke/SM-9999/event"),
            ("type_mismatch", "whistle/v1/water/SM-0001/data"),
        ]
    )
    assert payload == (b"{not json",)
    assert not running.task.done()
    # the accepted smoke event is bound to its building and travels on the priority lane
    (records,) = [recs for recs in [running.bus.partitions(TOPIC_PRIORITY)[p] for p in range(4)] if recs]
    reading = decode_reading(records[0].value)
    assert (reading.device_id, reading.building_id, reading.grid_id, reading.seq) == (
        "SM-0001",
        "RJ-B0001",
        "RJ-G1-M01",
        1,
    )
    assert sum(running.bus.end_offsets(TOPIC_READINGS)) == 0
    stats = running.collector.stats
    assert stats.readings == 1 and sum(stats.dead_letters.values()) == 4


async def test_messages_published_while_the_collector_is_away_arrive_after_it_returns(
    running: Running, publisher: Publisher, mosquitto: MosquittoBroker, db: Database
) -> None:
    publisher.publish("whistle/v1/water/WM-000001/data", {"ts": now_ms(), "seq": 0, "total_m3": 1.0})
    await wait_for(lambda: scalar(db, "SELECT count(*) FROM readings"), timeout=10)
    await stop_collector(running)  # the persistent session stays at the broker
    for i in range(1, 101):
        publisher.publish("whistle/v1/water/WM-000001/data", {"ts": now_ms(), "seq": i, "total_m3": 1.0 + i / 1000})
    back = await start_collector(mosquitto, db, running.bus, running.client_id)
    try:

        async def all_there() -> bool:
            return await scalar(db, "SELECT count(*) FROM readings") == 101

        await wait_for(all_there, timeout=20)
        assert await scalar(db, "SELECT count(DISTINCT seq) FROM readings") == 101
    finally:
        await stop_collector(back)
