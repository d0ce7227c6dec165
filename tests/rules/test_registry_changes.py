"""The registry takes effect at once: a change reaches the rules before any reading sent after it is judged."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rules.engine import LONE_ELDER_RULE, RuleEngine
from tests.helpers import small_registry, wait_for
from tests.rules.support import HOUR, MIN, T0, reading
from whistle.bus import TOPIC_READINGS, partition_for
from whistle.bus_pg import PgLogBus
from whistle.domain import Channel, DeviceType, Reading
from whistle.registry import import_registry, parse_registry
from whistle.serde import encode_reading
from whistle.store.db import Database
from whistle.store.writers import copy_readings

ELDER = "RJ-H000002"


def registry(tagged: bool) -> dict[str, Any]:
    doc = copy.deepcopy(small_registry())
    doc["households"].append(
        {"id": ELDER, "building_id": "RJ-B0001", "registered_occupants": 1, "tags": ["lone_elder"] if tagged else []}
    )
    doc["devices"] += [
        {"id": "WM-000002", "type": "water", "household_id": ELDER},
        {"id": "PM-000002", "type": "power", "household_id": ELDER},
    ]
    return doc


def meters(hours: int, start: int = T0) -> list[Reading]:
    out = []
    for i in range(hours * 4):
        ts = start + i * 15 * MIN
        for dev, dtype, field, total in (
            ("WM-000002", DeviceType.WATER, "total_m3", 10 + i * 0.004),
            ("PM-000002", DeviceType.POWER, "total_kwh", 100 + i * 0.05),
        ):
            out.append(
                reading(
                    dev, dtype, Channel.DATA, ts, {field: round(total, 3)}, seq=i, household=ELDER, building="RJ-B0001"
                )
            )
    return out


async def send(bus: PgLogBus, readings: list[Reading]) -> None:
    await bus.send_many(TOPIC_READINGS, [(r.key.encode(), encode_reading(r)) for r in readings])


@pytest.fixture
async def bus(db: Database) -> AsyncIterator[PgLogBus]:
    async with PgLogBus(db, partitions=4) as b:
        yield b


class Engine:
    def __init__(self, bus: PgLogBus, db: Database) -> None:
        # no periodic refresh during the test: only the announcements can bring the registry in
        self.engine = RuleEngine(bus, db, snapshot_interval_s=0.1, topology_refresh_s=3600, daily_jobs=False)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.engine.run(self.stop))

    def elder_state(self) -> Any:
        lane = self.engine.lanes[TOPIC_READINGS]
        part = lane.parts.get(partition_for(ELDER.encode(), 4))
        return None if part is None else part.states.get((LONE_ELDER_RULE, ELDER))

    async def close(self) -> None:
        self.stop.set()
        await self.task


async def test_readings_sent_right_after_a_tag_is_added_are_judged_with_it(bus: PgLogBus, db: Database) -> None:
    await import_registry(db, parse_registry(registry(tagged=False)), bus=bus)
    e = Engine(bus, db)
    try:
        await send(bus, meters(2))
        await wait_for(lambda: _evaluated(e.engine, 16), timeout=20)
        assert e.elder_state() is None  # not a lone elder yet: the rule keeps no state
        await import_registry(db, parse_registry(registry(tagged=True)), bus=bus)
        await send(bus, meters(2, start=T0 + 2 * HOUR))  # at once, no wait for any refresh
        await wait_for(lambda: _evaluated(e.engine, 32), timeout=20)
        st = e.elder_state()
        assert st is not None and st.w_ts >= T0 + 2 * HOUR
    finally:
        await e.close()


async def test_a_newly_tagged_elder_learns_the_routine_from_the_readings_already_stored(
    bus: PgLogBus, db: Database
) -> None:
    await import_registry(db, parse_registry(registry(tagged=False)), bus=bus)
    history = meters(48)  # two days already stored (an import of history, a backfill)
    async with db.connection() as conn:
        await copy_readings(conn, history)
    e = Engine(bus, db)
    try:
        await send(bus, meters(1, start=T0 + 48 * HOUR))  # the partition's clock reaches the present
        await wait_for(lambda: _evaluated(e.engine, 8), timeout=20)
        await import_registry(db, parse_registry(registry(tagged=True)), bus=bus)
        await send(bus, meters(1, start=T0 + 49 * HOUR))
        await wait_for(lambda: _evaluated(e.engine, 16), timeout=20)
        st = e.elder_state()
        assert st is not None
        # the routine holds the stored days: its water register reaches back into the history
        assert st.w_ts >= T0 + 49 * HOUR and st.first_q * 900_000 <= T0 + HOUR  # its signs of life start with them
    finally:
        await e.close()


async def test_a_reading_of_a_household_the_rules_never_heard_of_makes_them_reload(bus: PgLogBus, db: Database) -> None:
    await import_registry(db, parse_registry(small_registry()), bus=bus)
    e = Engine(bus, db)
    try:
        await wait_for(lambda: _loaded(e.engine), timeout=20)
        await asyncio.sleep(2.1)  # past the reload's rate limit
        await import_registry(db, parse_registry(registry(tagged=True)))  # behind the rules' back: no bus
        await send(bus, meters(1))
        await wait_for(lambda: _evaluated(e.engine, 8), timeout=20)
        assert e.elder_state() is not None
    finally:
        await e.close()


async def _evaluated(engine: RuleEngine, n: int) -> bool:
    return engine.lanes[TOPIC_READINGS].stats.evaluated >= n


async def _loaded(engine: RuleEngine) -> bool:
    return bool(engine.topology.households)
