"""The bus in PostgreSQL against a real PostgreSQL: order, groups, transactions, identity, hand-over, trimming."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from whistle.bus import MemoryBus, TopicPartition, partition_for
from whistle.bus_pg import PgLogBus, pack, unpack
from whistle.store.db import Database


@pytest.fixture
async def bus(db: Database) -> AsyncIterator[PgLogBus]:
    async with PgLogBus(db, partitions=4, standby_poll_s=0.2) as b:
        yield b


def test_records_pack_and_unpack() -> None:
    items = [(b"", b""), (b"k", b"v" * 70000), ("键".encode(), b"\x00\xff")]
    assert unpack(pack(items)) == items


async def test_records_of_one_key_keep_their_order_and_offsets(bus: PgLogBus) -> None:
    for i in range(0, 50, 10):
        await bus.send_many("t", [(b"k1", str(j).encode()) for j in range(i, i + 10)])
    async with bus.consumer("g", ["t"]) as c:
        got = await c.getmany(timeout_ms=0, max_records=1000)
    (tp,) = got
    assert tp.partition == partition_for(b"k1", 4)
    assert [r.value for r in got[tp]] == [str(i).encode() for i in range(50)]
    assert [r.offset for r in got[tp]] == list(range(50))
    assert await bus.bounds(tp) == (0, 50)


async def test_a_group_resumes_from_its_commit_and_a_new_group_sees_everything(bus: PgLogBus) -> None:
    await bus.send_many("t", [(f"k{i}".encode(), b"%d" % i) for i in range(40)])
    c = bus.consumer("g", ["t"])
    await c.start()
    got = await c.getmany(timeout_ms=0, max_records=15)
    assert sum(len(v) for v in got.values()) == 15
    await c.commit({tp: recs[-1].offset + 1 for tp, recs in got.items()})
    await c.stop()
    again = bus.consumer("g", ["t"])
    await again.start()
    rest = await again.getmany(timeout_ms=0, max_records=1000)
    await again.stop()
    seen = {r.value for recs in (*got.values(), *rest.values()) for r in recs}
    assert len(seen) == 40 and sum(len(v) for v in rest.values()) == 25
    async with bus.consumer("other", ["t"]) as fresh:
        everything = await fresh.getmany(timeout_ms=0, max_records=1000)
    assert sum(len(v) for v in everything.values()) == 40


async def test_an_append_is_part_of_the_writers_transaction(bus: PgLogBus, db: Database) -> None:
    with pytest.raises(RuntimeError, match="rolled back"):
        async with db.connection() as conn, conn.transaction():
            await bus.append(conn, "t", [(b"k", b"lost")])
            raise RuntimeError("rolled back")
    async with db.connection() as conn, conn.transaction():
        await bus.append(conn, "t", [(b"k", b"kept")])
    async with bus.consumer("g", ["t"]) as c:
        got = await c.getmany(timeout_ms=0, max_records=10)
    assert [(r.offset, r.value) for recs in got.values() for r in recs] == [(0, b"kept")]


async def test_concurrent_writers_give_gap_free_offsets_in_commit_order(bus: PgLogBus, db: Database) -> None:
    async def writer(w: int) -> None:
        for i in range(20):
            async with db.connection() as conn, conn.transaction():
                await bus.append(conn, "t", [(b"same-key", b"%d-%d" % (w, i))])

    await asyncio.gather(*(writer(w) for w in range(4)))
    tp = TopicPartition("t", partition_for(b"same-key", 4))
    async with bus.consumer("g", ["t"]) as c:
        got = await c.getmany(timeout_ms=0, max_records=1000)
    assert [r.offset for r in got[tp]] == list(range(80))
    for w in range(4):  # each writer's records in the order it wrote them
        mine = [r.value for r in got[tp] if r.value.startswith(b"%d-" % w)]
        assert mine == [b"%d-%d" % (w, i) for i in range(20)]


async def test_a_reader_wakes_on_a_commit_without_polling(bus: PgLogBus) -> None:
    c = bus.consumer("g", ["t"])
    await c.start()
    waiter = asyncio.create_task(c.getmany(timeout_ms=5000, max_records=10))
    await asyncio.sleep(0.2)
    assert not waiter.done()
    await bus.send_many("t", [(b"k", b"v")])
    got = await asyncio.wait_for(waiter, 3)
    assert [r.value for recs in got.values() for r in recs] == [b"v"]
    await c.stop()


async def test_one_member_owns_a_topic_and_a_standby_takes_over_when_it_leaves(bus: PgLogBus) -> None:
    await bus.send_many("t", [(f"k{i}".encode(), b"v") for i in range(10)])
    first, standby = bus.consumer("g", ["t"]), bus.consumer("g", ["t"])
    await first.start()
    await standby.start()
    assert len(first.assignment()) == 4 and standby.assignment() == frozenset()
    got = await first.getmany(timeout_ms=0, max_records=4)
    await first.commit({tp: recs[-1].offset + 1 for tp, recs in got.items()})
    await first.stop()
    async with asyncio.timeout(10):
        rest: dict[TopicPartition, list[object]] = {}
        while not rest:
            rest = await standby.getmany(timeout_ms=300, max_records=100)  # type: ignore[assignment]
    assert len(standby.assignment()) == 4
    assert sum(len(v) for v in rest.values()) == 6
    await standby.stop()


async def test_broadcast_reaches_every_partition_and_fingerprints_tell_logs_apart(bus: PgLogBus, db: Database) -> None:
    await bus.broadcast("t", b"W")
    tps = [TopicPartition("t", p) for p in range(4)]
    for tp in tps:
        assert await bus.bounds(tp) == (0, 1)
    mark = await bus.fingerprint(tps[0], 0)
    assert mark is not None and mark == await bus.fingerprint(tps[0], 0)
    assert mark != await bus.fingerprint(tps[1], 0)
    assert await bus.fingerprint(tps[0], 1) is None
    async with db.connection() as conn:  # the topic is recreated: another log, even with the same records
        await conn.execute("DELETE FROM bus_log WHERE topic = 't'")
        await conn.execute("DELETE FROM bus_topics WHERE topic = 't'")
    async with PgLogBus(db, partitions=4) as again:
        await again.broadcast("t", b"W")
        assert await again.bounds(tps[0]) == (0, 1)
        assert await again.fingerprint(tps[0], 0) not in (None, mark)


async def test_trim_keeps_what_any_registered_group_has_not_committed(bus: PgLogBus) -> None:
    a, b = bus.consumer("a", ["t"]), bus.consumer("b", ["t"])
    await a.start()
    await b.start()
    for i in range(10):
        await bus.send_many("t", [(b"k", b"%d" % i)])
    tp = TopicPartition("t", partition_for(b"k", 4))
    await a.commit({tp: 10})
    await b.commit({tp: 4})
    await bus.trim()
    assert await bus.bounds(tp) == (4, 10)
    await b.commit({tp: 10})
    await bus.trim()
    assert await bus.bounds(tp) == (10, 10)
    await a.stop()
    await b.stop()


async def test_the_memory_bus_is_trimmed_below_every_groups_commit() -> None:
    async with MemoryBus(partitions=1, trim_every=10) as bus:
        a, b = bus.consumer("a", ["t"]), bus.consumer("b", ["t"])
        await a.start()
        await b.start()
        await bus.send_many("t", [(b"k", b"%d" % i) for i in range(100)])
        tp = TopicPartition("t", 0)
        await a.commit({tp: 100})
        assert await bus.bounds(tp) == (0, 100)  # b has read nothing yet
        got = await b.getmany(timeout_ms=0, max_records=60)
        await b.commit({tp: got[tp][-1].offset + 1})
        assert await bus.bounds(tp) == (60, 100) and len(bus.partitions("t")[0]) == 40
        rest = await b.getmany(timeout_ms=0, max_records=100)
        assert [r.offset for r in rest[tp]] == list(range(60, 100))


async def test_a_new_memory_bus_is_another_log() -> None:
    async with MemoryBus(partitions=1) as one, MemoryBus(partitions=1) as two:
        await one.send_many("t", [(b"k", b"v")])
        await two.send_many("t", [(b"k", b"v")])
        tp = TopicPartition("t", 0)
        assert await one.fingerprint(tp, 0) != await two.fingerprint(tp, 0)
        assert await one.fingerprint(tp, 1) is None
