from __future__ import annotations

import asyncio

import pytest

from whistle.bus import MemoryBus, TopicPartition, murmur2, partition_for

# Vectors from Kafka's own tests of Utils.murmur2 (clients/src/test/.../UtilsTest.java).
KAFKA_VECTORS = {
    "21": -973932308,
    "foobar": -790332482,
    "a-little-bit-long-string": -985981536,
    "a-little-bit-longer-string": -1486304829,
    "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    "abc": 479470107,
}


@pytest.mark.parametrize(("key", "expected"), sorted(KAFKA_VECTORS.items()))
def test_murmur2_matches_kafka(key: str, expected: int) -> None:
    assert murmur2(key.encode()) == expected


def test_partition_is_stable_and_in_range() -> None:
    parts = {partition_for(f"RJ-H{i:06d}".encode(), 8) for i in range(500)}
    assert parts == set(range(8))
    assert partition_for(b"RJ-B0001", 8) == partition_for(b"RJ-B0001", 8)


async def test_records_of_one_key_keep_their_order() -> None:
    async with MemoryBus(partitions=4) as bus:
        await bus.send_many("t", [(b"k1", str(i).encode()) for i in range(50)])
        async with bus.consumer("g", ["t"]) as c:
            got = await c.getmany(timeout_ms=0, max_records=1000)
    (tp,) = got
    assert [r.value for r in got[tp]] == [str(i).encode() for i in range(50)]
    assert [r.offset for r in got[tp]] == list(range(50))


async def test_group_members_split_partitions_and_resume_from_commit() -> None:
    async with MemoryBus(partitions=4) as bus:
        a = bus.consumer("g", ["t"])
        b = bus.consumer("g", ["t"])
        await a.start()
        await b.start()
        assert a.assignment().isdisjoint(b.assignment())
        assert len(a.assignment() | b.assignment()) == 4
        await bus.send_many("t", [(f"k{i}".encode(), b"v") for i in range(40)])
        got_a = await a.getmany(timeout_ms=0, max_records=1000)
        got_b = await b.getmany(timeout_ms=0, max_records=1000)
        assert sum(len(v) for v in got_a.values()) + sum(len(v) for v in got_b.values()) == 40
        # b commits all it read; a commits only the first record of each of its partitions and leaves:
        # b takes a's partitions over from a's committed offsets, so a's uncommitted records come again
        await b.commit({tp: recs[-1].offset + 1 for tp, recs in got_b.items()})
        await a.commit({tp: recs[0].offset + 1 for tp, recs in got_a.items()})
        await a.stop()
        assert len(b.assignment()) == 4
        again = await b.getmany(timeout_ms=0, max_records=1000)
        redelivered = sum(len(v) for v in again.values())
        assert redelivered == sum(len(v) - 1 for v in got_a.values())


async def test_separate_groups_each_see_everything() -> None:
    async with MemoryBus(partitions=2) as bus:
        await bus.send_many("t", [(b"a", b"1"), (b"b", b"2")])
        for group in ("g1", "g2"):
            async with bus.consumer(group, ["t"]) as c:
                got = await c.getmany(timeout_ms=0, max_records=10)
                assert sorted(r.value for recs in got.values() for r in recs) == [b"1", b"2"]


async def test_getmany_wakes_on_new_data() -> None:
    async with MemoryBus(partitions=1) as bus:
        c = bus.consumer("g", ["t"])
        await c.start()
        waiter = asyncio.create_task(c.getmany(timeout_ms=5000, max_records=10))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        await bus.send_many("t", [(b"k", b"v")])
        got = await asyncio.wait_for(waiter, 2)
        assert got == {TopicPartition("t", 0): [got[TopicPartition("t", 0)][0]]}
        assert got[TopicPartition("t", 0)][0].value == b"v"


async def test_consumer_lists_topics_in_priority_order() -> None:
    async with MemoryBus(partitions=1) as bus:
        await bus.send_many("bulk", [(b"k", b"b%d" % i) for i in range(10)])
        await bus.send_many("prio", [(b"k", b"p")])
        async with bus.consumer("g", ["prio", "bulk"]) as c:
            got = await c.getmany(timeout_ms=0, max_records=3)
        assert [r.value for r in got[TopicPartition("prio", 0)]] == [b"p"]
        assert len(got[TopicPartition("bulk", 0)]) == 2


async def test_send_on_stopped_bus_is_refused() -> None:
    bus = MemoryBus()
    with pytest.raises(RuntimeError):
        await bus.send_many("t", [(b"k", b"v")])
