"""Rule snapshots in PostgreSQL: a round trip, and snapshots this code cannot read are ignored, not misread."""

from __future__ import annotations

from rules.engine import SNAPSHOT_FORMAT, SnapshotStore, dump_state
from rules.lone_elder import LoneElderState
from rules.processor import PartitionState
from whistle.bus import TopicPartition
from whistle.store.db import Database

TP = TopicPartition("whistle.readings", 3)


def partition() -> PartitionState:
    part = PartitionState(offset=1234)
    st = LoneElderState(last_active=42)
    st.hist = 0b1011
    part.states[("household.lone_elder_inactive", "RJ-H000001")] = st
    return part


async def test_a_snapshot_comes_back_as_it_was_saved(db: Database) -> None:
    store = SnapshotStore(db)
    part = partition()
    await store.save("g", [(TP, part, dump_state(part))])
    got = await store.load("g", TP)
    assert got is not None and got.offset == 1234
    st = got.states[("household.lone_elder_inactive", "RJ-H000001")]
    assert isinstance(st, LoneElderState) and st.last_active == 42 and st.hist == 0b1011


async def test_a_snapshot_of_another_format_or_unreadable_starts_empty(db: Database) -> None:
    store = SnapshotStore(db)
    part = partition()
    await store.save("g", [(TP, part, dump_state(part))])
    async with db.connection() as conn:
        await conn.execute("UPDATE rule_snapshots SET format = %s", (SNAPSHOT_FORMAT - 1,))
    assert await store.load("g", TP) is None  # an older layout of the state classes: not misread
    async with db.connection() as conn:
        await conn.execute("UPDATE rule_snapshots SET format = %s, state = %s", (SNAPSHOT_FORMAT, b"not zlib"))
    assert await store.load("g", TP) is None
