"""Poison on the bus: a record that cannot be decoded or applied is dead-lettered and skipped, never a crash loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.helpers import small_registry, wait_for
from tests.rules.test_restart import Roles, fires, send, smoke
from whistle.bus import TOPIC_DETECTIONS, TOPIC_PRIORITY
from whistle.bus_pg import PgLogBus
from whistle.registry import import_registry, parse_registry
from whistle.store.db import Database


@pytest.fixture
async def bus(db: Database) -> AsyncIterator[PgLogBus]:
    await import_registry(db, parse_registry(small_registry()))
    async with PgLogBus(db, partitions=4) as b:
        yield b


async def dead(db: Database) -> list[tuple[Any, ...]]:
    async with db.connection() as conn:
        cur = await conn.execute('SELECT consumer, topic, "offset", error, value FROM bus_dead_letters ORDER BY id')
        return list(await cur.fetchall())


async def test_an_undecodable_reading_is_dead_lettered_and_the_next_fire_is_judged(bus: PgLogBus, db: Database) -> None:
    await bus.send_many(TOPIC_PRIORITY, [(b"RJ-B0001", b"\x00 not a reading")])
    await bus.send_many(TOPIC_PRIORITY, [(b"RJ-B0001", b'{"d": "SM-0001", "t": "smoke"}')])  # decodes, lacks fields
    roles = Roles(bus, db)
    await send(bus, [smoke(1, "alarm")])
    await wait_for(lambda: fires(db), timeout=30)
    got = await wait_for(lambda: dead(db), timeout=10)
    await roles.close()
    assert [(c, t, o) for c, t, o, _, _ in got] == [
        ("whistle-rules.whistle.priority", TOPIC_PRIORITY, 0),
        ("whistle-rules.whistle.priority", TOPIC_PRIORITY, 1),
    ]
    assert bytes(got[0][4]) == b"\x00 not a reading" and got[1][3].startswith("KeyError")
    assert roles.engine.lanes[TOPIC_PRIORITY].stats.poison == 2


async def test_a_detection_that_cannot_be_applied_is_dead_lettered_and_the_next_one_applied(
    bus: PgLogBus, db: Database
) -> None:
    await bus.send_many(TOPIC_DETECTIONS, [(b"x", b"not json")])
    bad = (
        b'{"kind": "smoke.fire", "severity": "critical", "subject_type": "building", "subject_id": "RJ-B0001",'
        b' "ts": 99999999999999999999, "action": "raise", "evidence": {}, "household_id": null,'
        b' "building_id": "RJ-B0001", "grid_id": "RJ-G1-M01", "source_id": "SM-0001:1"}'
    )  # a time PostgreSQL cannot hold
    await bus.send_many(TOPIC_DETECTIONS, [(b"RJ-B0001", bad)])
    roles = Roles(bus, db)
    await send(bus, [smoke(2, "alarm")])
    await wait_for(lambda: fires(db), timeout=30)
    got = await wait_for(lambda: dead(db), timeout=10)
    await roles.close()
    assert [(c, t) for c, t, *_ in got] == [("whistle-alerts", TOPIC_DETECTIONS)] * 2
    assert roles.worker.poison == 2
