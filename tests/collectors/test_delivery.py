"""Delivery guarantees against a real Mosquitto and PostgreSQL: kill and restart, scale-out, life safety first."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from simulators.district import generate
from simulators.live import Publisher
from tests.collectors.support import CollectorProcess, start_collector, stop_collector
from tests.conftest import MosquittoBroker, pg_state_dir
from tests.helpers import wait_for
from whistle.bus import TOPIC_PRIORITY, TOPIC_READINGS, MemoryBus
from whistle.mqtt import MqttEndpoint
from whistle.registry import import_registry, parse_registry
from whistle.serde import decode_reading
from whistle.store.db import Database
from whistle.store.embedded import EmbeddedPostgres
from whistle.timeutil import now_ms


@pytest.fixture
async def district(db: Database) -> dict[str, Any]:
    doc = generate(150, seed=3)
    await import_registry(db, parse_registry(doc))
    return doc


@pytest.fixture
async def publisher(mosquitto: MosquittoBroker) -> AsyncIterator[Publisher]:
    pub = Publisher(MqttEndpoint.parse(mosquitto.url), f"test-pub-{uuid.uuid4().hex[:8]}")
    await pub.start()
    yield pub
    await pub.stop(flush_timeout=20)


def meters(doc: dict[str, Any]) -> list[str]:
    return [d["id"] for d in doc["devices"] if d["type"] == "water"]


def reading_stream(doc: dict[str, Any], n: int) -> list[tuple[str, dict[str, Any]]]:
    """n single water readings, seq per meter, event times one second apart within the last hours."""
    ids = meters(doc)
    t0 = now_ms() - n * 1000
    return [
        (
            f"whistle/v1/water/{ids[i % len(ids)]}/data",
            {"ts": t0 + i * 1000, "seq": i // len(ids), "total_m3": 10 + i / 1000},
        )
        for i in range(n)
    ]


async def count(db: Database, sql: str = "SELECT count(*) FROM readings") -> int:
    async with db.connection() as conn:
        row = await (await conn.execute(sql)).fetchone()
    assert row is not None
    return int(row[0])


async def publish_paced(pub: Publisher, stream: list[tuple[str, dict[str, Any]]], per_tick: int = 200) -> None:
    for i, (topic, payload) in enumerate(stream):
        await pub.send(topic, payload)
        if i % per_tick == per_tick - 1:
            await asyncio.sleep(0.05)


async def test_a_collector_killed_mid_stream_and_restarted_stores_exactly_what_was_published(
    mosquitto: MosquittoBroker, db: Database, db_url: str, district: dict[str, Any], publisher: Publisher
) -> None:
    n = 6000
    stream = reading_stream(district, n)
    client_id = f"kill-{uuid.uuid4().hex[:8]}"
    first = await CollectorProcess.start(mosquitto.url, db_url, client_id)
    second = None
    try:
        sending = asyncio.create_task(publish_paced(publisher, stream))

        async def some_stored() -> bool:
            return await count(db) >= n // 6

        await wait_for(some_stored, timeout=30)
        first.kill()  # SIGKILL: no clean shutdown, whatever was in flight stays unacknowledged
        await first.reap()
        stored_at_kill = await count(db)
        await asyncio.wait_for(sending, 60)
        second = await CollectorProcess.start(mosquitto.url, db_url, client_id)

        async def all_stored() -> bool:
            return await count(db) >= n

        await wait_for(all_stored, timeout=60)
        await asyncio.sleep(0.5)  # anything redelivered late would show up now
        stats = await second.terminate()
    finally:
        await first.reap()
        if second is not None:
            await second.reap()
    assert stored_at_kill < n, "the kill should happen mid-stream"
    assert await count(db) == n
    assert await count(db, "SELECT count(*) FROM (SELECT DISTINCT device_id, seq FROM readings) d") == n
    # the restarted collector stored exactly the rest: what was in flight at the kill came again, once
    assert stats["readings"] == n - stored_at_kill


async def test_two_collectors_on_a_shared_subscription_split_one_stream(
    mosquitto: MosquittoBroker, db: Database, db_url: str, district: dict[str, Any], publisher: Publisher
) -> None:
    n = 3000
    group = f"g{uuid.uuid4().hex[:6]}"
    a = await CollectorProcess.start(mosquitto.url, db_url, f"{group}-a", share_group=group)
    b = await CollectorProcess.start(mosquitto.url, db_url, f"{group}-b", share_group=group)
    try:
        await publish_paced(publisher, reading_stream(district, n))

        async def all_stored() -> bool:
            return await count(db) >= n

        await wait_for(all_stored, timeout=60)
        await asyncio.sleep(0.5)
        sa, sb = await a.terminate(), await b.terminate()
    finally:
        await a.reap()
        await b.reap()
    assert await count(db) == n
    assert sa["messages"] > 0 and sb["messages"] > 0, (sa, sb)
    assert sa["messages"] + sb["messages"] == n  # split, not doubled
    assert sa["duplicates"] == sb["duplicates"] == 0
    assert sa["bus"] + sb["bus"] == n


async def test_a_fire_during_a_large_backfill_is_handed_on_without_waiting_for_it(
    mosquitto: MosquittoBroker, db: Database, district: dict[str, Any], publisher: Publisher
) -> None:
    ids = meters(district)
    per_batch, batches = 96, 600
    t0 = now_ms() - 2 * 86_400_000
    async with MemoryBus(partitions=4) as bus:
        running = await start_collector(mosquitto, db, bus, f"prio-{uuid.uuid4().hex[:8]}", batch_size=2000)
        try:
            for b in range(batches):
                meter = ids[b % len(ids)]
                seq0 = (b // len(ids)) * per_batch
                batch = [
                    {"ts": t0 + (seq0 + k) * 900_000 // 4, "seq": seq0 + k, "total_m3": 1 + k / 100}
                    for k in range(per_batch)
                ]
                await publisher.send(f"whistle/v1/water/{meter}/data", {"batch": batch})
            smoke = next(d["id"] for d in district["devices"] if d["type"] == "smoke")
            detector = Publisher(MqttEndpoint.parse(mosquitto.url), f"detector-{smoke}")  # its own connection
            await detector.start()
            try:
                published_at = now_ms()
                await detector.send(f"whistle/v1/smoke/{smoke}/event", {"ts": published_at, "seq": 1, "event": "alarm"})
            finally:
                await detector.stop()

            async def on_bus() -> list[Any]:
                return [r for log in bus.partitions(TOPIC_PRIORITY) for r in log]

            (fire,) = await wait_for(on_bus, timeout=10, interval=0.005)
            total = batches * per_batch

            async def drained() -> bool:
                return sum(bus.end_offsets(TOPIC_READINGS)) >= total

            await wait_for(drained, timeout=120)
        finally:
            await stop_collector(running)
        last_bulk = max(r.timestamp for log in bus.partitions(TOPIC_READINGS) for r in log)
    assert decode_reading(fire.value).device_id == smoke
    latency_ms = fire.timestamp - published_at
    # the fire overtook the backfill queued before it, and was handed on within a second
    assert fire.timestamp < last_bulk, "the fire waited for the backfill to drain"
    assert latency_ms < 1000, f"fire handed on after {latency_ms} ms"
    print(f"fire handed on {latency_ms} ms after publishing; backfill drained {last_bulk - published_at} ms after")
    assert await count(db, "SELECT count(*) FROM readings WHERE device_type = 'smoke'") == 1


async def test_nothing_accepted_is_lost_across_a_database_outage(
    mosquitto: MosquittoBroker, publisher: Publisher
) -> None:
    """The collector keeps the messages unacknowledged while PostgreSQL is down and stores them all after."""
    with pg_state_dir("outage") as state:
        await _outage(mosquitto, publisher, EmbeddedPostgres(state, database="outage"))


async def _outage(mosquitto: MosquittoBroker, publisher: Publisher, pg: EmbeddedPostgres) -> None:
    url = await asyncio.to_thread(pg.start)
    db = Database(url, max_size=2)
    await db.start()
    try:
        doc = generate(30, seed=5)
        await import_registry(db, parse_registry(doc))
        stream = reading_stream(doc, 1200)
        async with MemoryBus(partitions=2) as bus:
            running = await start_collector(mosquitto, db, bus, f"outage-{uuid.uuid4().hex[:8]}", batch_size=100)
            try:
                await publish_paced(publisher, stream[:600])

                async def half() -> bool:
                    return await count(db) >= 600

                await wait_for(half, timeout=30)
                await asyncio.to_thread(pg.stop)  # the database goes away mid-stream
                await publish_paced(publisher, stream[600:])

                async def failing() -> bool:
                    return running.collector.stats.write_failures > 0

                await wait_for(failing, timeout=30)
                await asyncio.to_thread(pg.start)  # and comes back

                async def all_stored() -> bool:
                    try:
                        return await count(db) >= 1200
                    except psycopg.OperationalError:
                        return False

                await wait_for(all_stored, timeout=60, interval=0.2)
                assert sum(bus.end_offsets(TOPIC_READINGS)) == 1200
            finally:
                await stop_collector(running)
        assert await count(db) == 1200
        assert await count(db, "SELECT count(*) FROM (SELECT DISTINCT device_id, seq FROM readings) d") == 1200
    finally:
        await db.stop()
        await asyncio.to_thread(pg.stop)
