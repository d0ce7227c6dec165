"""A collector's source marks on the bus (rules.processor, sources), against a real Mosquitto and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

from simulators.live import Publisher
from tests.collectors.support import start_collector, stop_collector
from tests.conftest import MosquittoBroker
from tests.helpers import small_registry, wait_for
from whistle.bus import TOPIC_PRIORITY, TOPIC_READINGS, MemoryBus
from whistle.mqtt import MqttEndpoint
from whistle.registry import import_registry, parse_registry
from whistle.serde import SourceMark, decode_control
from whistle.store.db import Database
from whistle.timeutil import now_ms

QUARTER = 900_000


def marks(bus: MemoryBus, topic: str) -> list[list[SourceMark]]:
    """Each partition's source marks, in order."""
    return [[m for r in log if isinstance(m := decode_control(r.value), SourceMark)] for log in bus.partitions(topic)]


async def test_a_collector_marks_every_partition_when_it_starts_while_busy_and_when_it_stops(
    mosquitto: MosquittoBroker, db: Database
) -> None:
    await import_registry(db, parse_registry(small_registry()))
    async with MemoryBus(partitions=4) as bus:
        running = await start_collector(
            mosquitto, db, bus, f"test-collector-{uuid.uuid4().hex[:8]}", source="collector-7"
        )
        for topic in (TOPIC_PRIORITY, TOPIC_READINGS):  # before any message: busy, nothing published yet
            assert [[(m.source, m.clock, m.idle) for m in p] for p in marks(bus, topic)] == [
                [("collector-7", 0, False)]
            ] * 4
        t0 = now_ms() - 40 * QUARTER
        last = t0 + 39 * QUARTER
        pub = Publisher(MqttEndpoint.parse(mosquitto.url), f"test-pub-{uuid.uuid4().hex[:8]}")
        await pub.start()
        try:
            for i in range(40):  # a backfill of ten hours, over about three seconds
                await pub.send("whistle/v1/water/WM-000001/data", {"ts": t0 + i * QUARTER, "seq": i, "total_m3": 1.0})
                await asyncio.sleep(0.075)
        finally:
            await pub.stop()

        async def marked_while_busy() -> bool:
            return all(any(m.clock == last for m in p) for p in marks(bus, TOPIC_READINGS))

        await wait_for(marked_while_busy, timeout=15)  # every partition, not only the one WM-000001 is on
        assert all(len(p) >= 3 for p in marks(bus, TOPIC_READINGS))
        await stop_collector(running)
        for topic in (TOPIC_PRIORITY, TOPIC_READINGS):
            ends = [p[-1] for p in marks(bus, topic)]
            assert {(m.source, m.clock, m.idle) for m in ends} == {("collector-7", last, True)}
